from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.models.accounting import count_parameters, format_report
from dmao.models.architecture import EncoderArchitecture, LayerWidths
from dmao.models.conformer import ConformerCTC
from dmao.models.registry import build_model


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


# METHOD.md §6: the paper's E-Branchformer-CTC sizes (cgMLP hidden 6·d, 12 blocks) with the
# Conformer presets' frontend and a phoneme output layer (vocab 80, as in test_model_registry).
EBRANCHFORMER_PAPER_PARAMS = {
    "ebranchformer_ctc_d256": 25.7e6,
    "ebranchformer_ctc_d384": 56.9e6,
    "ebranchformer_ctc_d512": 100.2e6,
}


@pytest.mark.parametrize("name", sorted(EBRANCHFORMER_PAPER_PARAMS))
def test_ebranchformer_presets_match_the_paper(name):
    with torch.device("meta"):  # shapes only
        model = build_model(name, vocab_size=80)
    report = count_parameters(model)
    assert report.total == pytest.approx(EBRANCHFORMER_PAPER_PARAMS[name], rel=0.02)
    d, k = model.d_model, 31
    # The block parts by formula: two FFNs (4d hidden), MHSA, cgMLP (3d gated channels) and the
    # fixed merge (depthwise over 2d channels + Linear(2d, d)) — each with its own pre-LayerNorm.
    ffn = 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    mhsa = 2 * d + 3 * (d * d + d) + (d * d + d)
    cgmlp = 2 * d + (d * 6 * d + 6 * d) + 2 * 3 * d + 3 * d * (k + 1) + (3 * d * d + d)
    merge = 2 * d * (k + 1) + (2 * d * d + d)
    layer = report.by_layer[0]
    assert (layer["ff1"], layer["ff2"], layer["mhsa"]) == (ffn, ffn, mhsa)
    assert (layer["cgmlp"], layer["merge"], layer["block_norm"]) == (cgmlp, merge, 2 * d)
    assert report.adaptable == 12 * (2 * ffn + mhsa + cgmlp)


@pytest.mark.parametrize("d", [256, 384, 512])
def test_transformer_presets_by_formula(d):
    with torch.device("meta"):
        model = build_model(f"transformer_ctc_d{d}", vocab_size=80)
    report = count_parameters(model)
    frontend = report.by_kind["frontend"]
    block = (2 * d + 4 * (d * d + d)) + (2 * d + 8 * d * d + 5 * d)  # MHSA + FFN (4d hidden)
    assert report.total == frontend + 12 * block + 2 * d + (80 * d + 80)  # + final LN + output
    assert report.by_kind["encoder_norm"] == 2 * d and "block_norm" not in report.by_kind
    assert format_report(report).splitlines()[0].split() == ["layer", "mhsa", "ff", "total"]
