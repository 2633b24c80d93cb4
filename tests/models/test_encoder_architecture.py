from __future__ import annotations

import copy
import json
import pickle

import pytest
import yaml

from dmao.models.architecture import (
    BLOCK_KINDS,
    CONFORMER_KINDS,
    EBRANCHFORMER_KINDS,
    MODULE_KINDS,
    TRANSFORMER_KINDS,
    EncoderArchitecture,
    LayerWidths,
    register_block_kinds,
)


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


# -- block types other than the Conformer ------------------------------------------------------


def test_keyword_widths_select_the_block_type_and_keep_its_order():
    eb = LayerWidths(ff2=1536, cgmlp=1152, mhsa=6, ff1=1536)
    assert eb.kinds == EBRANCHFORMER_KINDS
    assert list(eb.to_dict()) == ["ff1", "mhsa", "cgmlp", "ff2"]
    assert eb.cgmlp == 1152 and eb["mhsa"] == 6
    tr = LayerWidths(mhsa=4, ff=1024)
    assert tr.kinds == TRANSFORMER_KINDS and tr == LayerWidths(4, 1024, kinds=TRANSFORMER_KINDS)
    # The same numbers under other kinds are another architecture.
    assert LayerWidths(1, 2, 3, 4) != LayerWidths(1, 2, 3, 4, kinds=EBRANCHFORMER_KINDS)
    with pytest.raises(AttributeError, match="no module kind 'conv'"):
        _ = eb.conv
    with pytest.raises(AttributeError, match="immutable"):
        eb.ff1 = 3
    with pytest.raises(ValueError, match="missing \\['ff2'\\], unknown \\[\\]"):
        LayerWidths(ff1=1, mhsa=1, cgmlp=1)
    with pytest.raises(ValueError, match="takes 2 widths"):
        LayerWidths(1, 2, 3, kinds=TRANSFORMER_KINDS)


def test_other_block_types_round_trip_through_their_dict_form():
    arch = EncoderArchitecture.repeat(3, LayerWidths(ff1=64, mhsa=2, cgmlp=96, ff2=0))
    data = json.loads(json.dumps(arch.to_dict()))
    assert data["layers"][0] == {"ff1": 64, "mhsa": 2, "cgmlp": 96, "ff2": 0}
    restored = EncoderArchitecture.from_dict(data)
    assert restored == arch and restored.kinds == EBRANCHFORMER_KINDS
    assert restored.widths("cgmlp") == [96, 96, 96]
    assert str(restored).splitlines()[3].split() == ["cgmlp", "96", "96", "96"]
    # Keys in another order (a hand-written YAML file) still give the block order.
    shuffled = {"layers": [{"ff": 8, "mhsa": 1}]}
    assert EncoderArchitecture.from_dict(shuffled).kinds == TRANSFORMER_KINDS
    assert copy.deepcopy(arch) == arch and pickle.loads(pickle.dumps(arch)) == arch


def test_mixed_block_types_are_refused():
    conformer, transformer = LayerWidths(1, 1, 1, 1), LayerWidths(mhsa=1, ff=1)
    with pytest.raises(ValueError, match=r"layers\[1\] has kinds \['mhsa', 'ff'\]"):
        EncoderArchitecture([conformer, transformer])
    data = {"layers": [conformer.to_dict(), transformer.to_dict()]}
    with pytest.raises(ValueError, match=r"layers\[1\] must have exactly the keys \['ff1'"):
        EncoderArchitecture.from_dict(data)
    with pytest.raises(ValueError, match=r"layers\[0\] must have exactly.*block types: conformer"):
        EncoderArchitecture.from_dict({"layers": [{"attention": 4}]})


def test_register_block_kinds():
    register_block_kinds("conformer", CONFORMER_KINDS)  # the same again: a no-op
    with pytest.raises(ValueError, match="same kinds as 'transformer'"):
        register_block_kinds("reversed_transformer", ("ff", "mhsa"))
    with pytest.raises(ValueError, match="already registered"):
        register_block_kinds("transformer", ("mhsa",))
    with pytest.raises(ValueError, match="distinct strings"):
        register_block_kinds("twice", ("a", "a"))
    assert "reversed_transformer" not in BLOCK_KINDS
