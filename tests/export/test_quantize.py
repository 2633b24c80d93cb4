"""``dmao export --int8``: model.int8.onnx holds int8 weights, runs like model.onnx up to the
quantisation error, is checked against the manifest, and is refused where it cannot exist."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from conftest import flip_last_byte
from onnx import numpy_helper

from dmao.data.manifests import load_cuts
from dmao.export import Transcriber, export_run, load_audio, load_exported
from dmao.export.quantize import quantize_onnx

RATE = 16000


@pytest.fixture(scope="module")
def int8_export(tiny_dmao_run, tmp_path_factory):
    return export_run(tiny_dmao_run, tmp_path_factory.mktemp("int8") / "model", int8=True)


def _op_counts(path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_int8_graph_has_int8_weights_and_is_recorded(int8_export):
    manifest = json.loads((int8_export / "manifest.json").read_text())
    assert "model.int8.onnx" in manifest["files"] and "model.onnx" in manifest["files"]
    info = manifest["onnx_int8"]
    fp32, int8 = _op_counts(int8_export / "model.onnx"), _op_counts(int8_export / "model.int8.onnx")
    # Every product with a constant weight became MatMulInteger; activation products stayed.
    assert info["quantized_products"] == int8["MatMulInteger"] > 0
    assert int8.get("MatMul", 0) == info["float_products"] == fp32["MatMul"] - int8["MatMulInteger"]
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(int8_export / "model.int8.onnx")).graph.initializer
    ]
    int8_entries = sum(w.size for w in weights if w.dtype == np.int8)
    assert int8_entries > 0.5 * sum(w.size for w in weights)  # most stored numbers are int8
    # Quantised, so not equal to the float graph; but close (log-probabilities, random input).
    assert 0.0 < info["max_abs_diff"] < 1.0


def test_int8_backend_transcribes_like_the_float_graph(int8_export, tiny_dmao_run):
    exported = load_exported(int8_export)
    float_backend = Transcriber(exported, backend="onnx", num_threads=1)
    int8_backend = Transcriber(exported, backend="onnx-int8", num_threads=1)
    assert int8_backend._onnx.path.name == "model.int8.onnx"
    cuts = load_cuts(tiny_dmao_run.parent / "manifests", "test")
    worst, frames, agree = 0.0, 0, 0
    for cut in cuts:
        features = float_backend.features(load_audio(cut.recording.sources[0].source, RATE))
        expected, got = float_backend.log_probs(features), int8_backend.log_probs(features)
        assert got.shape == expected.shape and torch.isfinite(got).all()
        worst = max(worst, float((got - expected).abs().max()))
        frames += got.shape[0]
        agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
    assert 0.0 < worst < 1.0
    assert agree >= 0.9 * frames, (agree, frames)  # the best label of (nearly) every frame kept


def test_changed_or_missing_int8_graph_is_refused(int8_export, tiny_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(int8_export, copy)
    flip_last_byte(copy / "model.int8.onnx")
    exported = load_exported(copy)  # the ONNX files are checked when a backend uses them
    with pytest.raises(ValueError, match=r"model\.int8\.onnx differs from the manifest"):
        Transcriber(exported, backend="onnx-int8")
    with pytest.raises(FileNotFoundError, match=r"no model\.int8\.onnx; export again with --int8"):
        Transcriber(load_exported(tiny_export), backend="onnx-int8")


def test_int8_needs_the_onnx_graph(tiny_dmao_run, tmp_path):
    with pytest.raises(ValueError, match="int8 needs onnx"):
        export_run(tiny_dmao_run, tmp_path / "out", onnx=False, int8=True)
    assert not (tmp_path / "out").exists()


def test_a_graph_without_weight_products_is_refused(tmp_path):
    # Only an activation product: nothing to quantise, which is an error, not a silent copy.
    a = onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [1, 4, 4])
    b = onnx.helper.make_tensor_value_info("feature_lens", onnx.TensorProto.INT64, [1])
    y = onnx.helper.make_tensor_value_info("log_probs", onnx.TensorProto.FLOAT, [1, 4, 4])
    z = onnx.helper.make_tensor_value_info("out_lens", onnx.TensorProto.INT64, [1])
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["features", "features"], ["log_probs"]),
            onnx.helper.make_node("Identity", ["feature_lens"], ["out_lens"]),
        ],
        "g",
        [a, b],
        [y, z],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    onnx.save(model, tmp_path / "plain.onnx")
    with pytest.raises(RuntimeError, match="no matrix product was quantised"):
        quantize_onnx(tmp_path / "plain.onnx", tmp_path / "int8.onnx", num_features=4)
