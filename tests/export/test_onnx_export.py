"""ONNX export of the acoustic model: a non-uniform model with a skipped (width-0) module runs in
ONNX Runtime like in PyTorch for any batch size and length down to the 4-frame minimum."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from dmao.config.schema import ModelConfig
from dmao.export import OnnxAcousticModel, export_onnx
from dmao.export.artefact import build_from_spec, model_spec
from dmao.models.architecture import EncoderArchitecture, LayerWidths
from dmao.models.registry import build_model
from dmao.training.model_setup import build_model_from_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    # Widths as DMAO leaves them: unequal per layer, one convolution removed entirely.
    architecture = EncoderArchitecture([LayerWidths(64, 0, 1, 128), LayerWidths(16, 48, 3, 96)])
    model = build_model(
        "conformer_ctc",
        vocab_size=29,
        d_model=32,
        num_layers=2,
        head_dim=16,
        conv_kernel_size=7,
        frontend_channels=(4, 4, 4, 4),
        architecture=architecture,
    )
    model.encoder.feature_norm.set_statistics(torch.full((80,), -4.0), torch.full((80,), 3.0))
    model.train()  # export must switch to eval (no dropout) on its own copy
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    info = export_onnx(model, path, num_features=80)
    return model, path, info


def test_export_reports_its_check(exported):
    model, path, info = exported
    assert model.training  # the caller's model is untouched
    assert info["file"] == "model.onnx" and info["opset"] == 18
    assert 0.0 <= info["max_abs_diff"] < 1e-4
    assert path.stat().st_size > 10_000
    assert not path.with_name("model.onnx.data").exists()  # weights inline: one file


@pytest.mark.parametrize("lengths", [[4], [9, 4], [250, 17, 120, 64]])
def test_onnx_runtime_equals_pytorch(exported, lengths):
    model, path, _ = exported
    model = model.eval()
    generator = torch.Generator().manual_seed(len(lengths))
    lens = torch.tensor(lengths, dtype=torch.int64)
    features = torch.randn(len(lengths), max(lengths), 80, generator=generator) * 3 - 4
    with torch.no_grad():
        expected, expected_lens = model(features, lens)
    got, got_lens = OnnxAcousticModel(path, num_threads=1)(features, lens)
    model.train()
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.equal(got_lens, expected_lens)
    for b, n in enumerate(expected_lens.tolist()):
        assert torch.allclose(got[b, :n], expected[b, :n], atol=1e-4, rtol=0), b


def test_runner_errors(exported, tmp_path):
    _, path, _ = exported
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxAcousticModel(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxAcousticModel(tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="at least 4 feature frames"):
        OnnxAcousticModel(path)(torch.zeros(1, 3, 80), torch.tensor([3]))


@pytest.mark.parametrize("family", ["ebranchformer_ctc", "transformer_ctc"])
def test_every_model_family_rebuilds_from_its_spec_and_exports(family, tmp_path):
    """The other registered families (the Conformer is covered above and in test_artefact):
    model.json's spec rebuilds the same model (strict weight load, identical outputs), and the
    ONNX export passes its ONNX Runtime check."""
    config = ModelConfig(
        name=family,
        d_model=32,
        num_layers=2,
        head_dim=16,
        cgmlp_multiplier=2,
        conv_kernel_size=7,
        dropout=0.0,
        frontend_channels=[4, 4, 4, 4],
    )
    torch.manual_seed(1)
    model = build_model_from_config(config, vocab_size=20).eval()
    spec = json.loads(json.dumps(model_spec(model, config, 20)))  # as written to model.json
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.eval()
    features, lens = torch.randn(2, 30, 80), torch.tensor([30, 21])
    with torch.no_grad():
        assert torch.equal(rebuilt(features, lens)[0], model(features, lens)[0])
    info = export_onnx(model, tmp_path / "model.onnx", num_features=80)
    assert info["max_abs_diff"] < 1e-4


def test_exporter_logs_only_when_asked(tmp_path, caplog):
    """torch.onnx.export logs each onnxscript/onnx_ir pass at INFO (~70 lines for this model):
    silent by default, all there with ``verbose`` (``dmao -v export``)."""
    model = build_model("transformer_ctc", vocab_size=11, d_model=16, num_layers=1, head_dim=8)
    caplog.set_level(logging.INFO)

    def exporter_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith(("onnx", "torch"))]

    export_onnx(model, tmp_path / "quiet.onnx", num_features=80, check=False)
    assert exporter_records() == []
    export_onnx(model, tmp_path / "verbose.onnx", num_features=80, check=False, verbose=True)
    assert len(exporter_records()) > 10
    for name in ("quiet.onnx", "verbose.onnx"):
        assert b"pkg.torch.onnx.stack_trace" not in (tmp_path / name).read_bytes()
