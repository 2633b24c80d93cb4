from __future__ import annotations

import json

import pytest
import yaml

from dmao.models.architecture import MODULE_KINDS, EncoderArchitecture, LayerWidths


def test_uniform_matches_paper_defaults():
    arch = EncoderArchitecture.uniform(num_layers=12, d_model=384)
    assert arch.num_layers == 12
    assert all(layer == LayerWidths(ff1=1536, conv=384, mhsa=6, ff2=1536) for layer in arch.layers)
    assert EncoderArchitecture.uniform(2, 256, ff_multiplier=2, head_dim=32).layers[0] == (
        LayerWidths(512, 256, 8, 512)
    )
    assert EncoderArchitecture.uniform(1, 100, num_heads=3).layers[0].mhsa == 3


def test_uniform_rejects_indivisible_d_model():
    with pytest.raises(ValueError, match="d_model=100 is not a multiple of head_dim=64"):
        EncoderArchitecture.uniform(2, 100)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        EncoderArchitecture.uniform(0, 256)


def test_dict_round_trip_through_json_and_yaml():
    arch = EncoderArchitecture(
        [LayerWidths(1024, 256, 4, 0), LayerWidths(2048, 512, 0, 512), LayerWidths(0, 0, 0, 0)]
    )
    data = arch.to_dict()
    assert data["layers"][0] == {"ff1": 1024, "conv": 256, "mhsa": 4, "ff2": 0}
    assert EncoderArchitecture.from_dict(json.loads(json.dumps(data))) == arch
    assert EncoderArchitecture.from_dict(yaml.safe_load(yaml.safe_dump(data))) == arch
    assert arch.widths("conv") == [256, 512, 0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be {'layers'"),
        ({"layers": []}, "non-empty list"),
        ({"layers": [{"ff1": 1, "conv": 1, "mhsa": 1}]}, r"layers\[0\].*missing \['ff2'\]"),
        (
            {"layers": [{"ff1": 1, "conv": 1, "mhsa": 1, "ff2": 1, "ffn3": 2}]},
            r"unknown \['ffn3'\]",
        ),
        (
            {
                "layers": [
                    LayerWidths(1, 1, 1, 1).to_dict(),
                    {"ff1": 1, "conv": -2, "mhsa": 1, "ff2": 1},
                ]
            },
            r"layers\[1\]: LayerWidths.conv must be a non-negative int, got -2",
        ),
        (
            {"layers": [{"ff1": 1.5, "conv": 1, "mhsa": 1, "ff2": 1}]},
            r"LayerWidths.ff1 must be a non-negative int, got 1.5",
        ),
        ({"layers": [{"ff1": True, "conv": 1, "mhsa": 1, "ff2": 1}]}, "got True"),
        ({"layers": ["ff1"]}, r"layers\[0\] must be a mapping"),
    ],
)
def test_from_dict_errors_name_the_entry(data, message):
    with pytest.raises(ValueError, match=message):
        EncoderArchitecture.from_dict(data)


def test_constructor_validation():
    with pytest.raises(ValueError, match="non-empty list"):
        EncoderArchitecture([])
    with pytest.raises(ValueError, match=r"layers\[0\] must be a LayerWidths"):
        EncoderArchitecture([{"ff1": 1, "conv": 1, "mhsa": 1, "ff2": 1}])
    with pytest.raises(ValueError, match="unknown module kind"):
        EncoderArchitecture.uniform(1, 64).widths("ffn")


def test_table_has_one_row_per_kind_and_one_column_per_layer():
    arch = EncoderArchitecture([LayerWidths(1024, 256, 4, 1024), LayerWidths(512, 384, 0, 0)])
    lines = str(arch).splitlines()
    assert lines[0].split() == ["layer", "1", "2"]
    assert [line.split() for line in lines[1:]] == [
        ["ff1", "1024", "512"],
        ["conv", "256", "384"],
        ["mhsa", "4", "0"],
        ["ff2", "1024", "0"],
    ]
    assert tuple(line.split()[0] for line in lines[1:]) == MODULE_KINDS
