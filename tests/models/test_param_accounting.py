from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.models.accounting import count_parameters, format_report
from dmao.models.architecture import EncoderArchitecture, LayerWidths
from dmao.models.conformer import ConformerCTC


def _model() -> ConformerCTC:
    arch = EncoderArchitecture([LayerWidths(128, 32, 2, 0), LayerWidths(0, 96, 0, 320)])
    return ConformerCTC(
        vocab_size=12, num_features=20, d_model=64, num_layers=2, head_dim=32, architecture=arch
    )


def test_parts_add_up_and_match_the_module_formulas():
    model = _model()
    report = count_parameters(model)
    assert report.total == sum(p.numel() for p in model.parameters())
    assert sum(report.by_kind.values()) == report.total
    d = 64
    ln = 2 * d
    blocks = model.encoder.blocks
    # ff1 of layer 1: 128 units + LayerNorm + linear2 bias; absent in layer 2.
    assert report.by_layer[0]["ff1"] == 128 * blocks[0].ff1.params_per_unit + ln + d
    assert report.by_layer[1]["ff1"] == 0
    assert report.by_layer[1]["conv"] == 96 * blocks[1].conv.params_per_unit + ln + d
    assert report.by_layer[0]["mhsa"] == 2 * blocks[0].mhsa.params_per_unit + ln + d
    assert report.by_kind["block_norm"] == 2 * ln
    assert report.by_kind["output"] == d * 12 + 12
    assert report.adaptable == sum(report.by_kind[k] for k in ("ff1", "conv", "mhsa", "ff2"))


def test_unaccounted_parameter_is_named():
    model = _model()
    model.extra_scale = nn.Parameter(torch.ones(3))
    with pytest.raises(AssertionError, match="extra_scale"):
        count_parameters(model)


def test_encoder_only_and_wrong_type():
    model = _model()
    report = count_parameters(model.encoder)
    assert report.by_kind["output"] == 0
    assert report.total == sum(p.numel() for p in model.encoder.parameters())
    with pytest.raises(TypeError, match="expects a ConformerCTC or ConformerEncoder"):
        count_parameters(nn.Linear(2, 2))


def test_format_report():
    text = format_report(count_parameters(_model()))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "ff1", "conv", "mhsa", "ff2", "block_norm", "total"]
    assert lines[1].split()[0] == "1" and lines[2].split()[0] == "2"
    assert any(line.startswith("total") for line in lines)
    assert "adaptable" in text
