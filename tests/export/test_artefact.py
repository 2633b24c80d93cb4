"""Export folder of a trained (DMAO, non-uniform) run: contents, exact reload without the run,
ONNX parity, refusal to overwrite, detection of changed files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from conftest import flip_last_byte
from lhotse.dataset.collation import collate_features

from dmao.data.features import fbank_extractor
from dmao.data.manifests import load_cuts
from dmao.decoding.run_loading import load_trained_model
from dmao.export import OnnxAcousticModel, export_run, load_exported
from dmao.training.checkpoint import load_checkpoint


def _test_batch(run):
    """Cached fbank of the run's test utterances: ``(B, T, 80)`` padded, ``(B,)`` lengths."""
    cuts = load_cuts(run.parent / "manifests", "test").sort_by_duration()
    features, lens = collate_features(cuts)
    return features, lens.to(torch.int64)


def test_export_folder_is_complete_and_self_describing(tiny_dmao_run, tiny_export):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    assert manifest["format"] == "dmao-export" and manifest["format_version"] == 1
    assert set(manifest["files"]) == {
        "model.safetensors",
        "model.json",
        "features.json",
        "model.onnx",
        "tokenizer/tokenizer.json",
    }
    for name in ("dmao", "torch", "safetensors", "onnx", "onnxruntime", "lhotse"):
        assert manifest["versions"][name], name
    checkpoint = tiny_dmao_run / "checkpoints" / "best.pt"
    assert manifest["source"] == {
        "run": tiny_dmao_run.name,  # the name and content hashes, no path (issue 18)
        "config_sha256": hashlib.sha256((tiny_dmao_run / "config.yaml").read_bytes()).hexdigest(),
        "checkpoint": "best.pt",
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "step": 60,
        "weights": "live",  # not the running average (dmao export --ema)
    }
    assert manifest["lm"] is None  # no n-gram LM unless given (dmao export --lm)
    assert manifest["prior"] is None  # no CTC prior unless asked (dmao export --prior-scale)
    assert manifest["onnx"]["max_abs_diff"] < 1e-4

    # The architecture is the one DMAO reached (non-uniform), as stored in the checkpoint.
    spec = json.loads((tiny_export / "model.json").read_text())
    state = load_checkpoint(tiny_dmao_run / "checkpoints" / "best.pt")
    assert spec["architecture"] == state["architecture"]
    widths = [tuple(layer.values()) for layer in spec["architecture"]["layers"]]
    assert widths != [(128, 32, 2, 128)] * 2  # the uniform d=32 widths were changed
    assert spec["name"] == "conformer_ctc" and spec["model_config"]["d_model"] == 32

    features = json.loads((tiny_export / "features.json").read_text())
    assert features["sampling_rate"] == 16000
    assert features["fbank"] == fbank_extractor(16000).config.to_dict()
    buffers = features["normalisation"]["buffers"]
    assert buffers == ["encoder.feature_norm.mean", "encoder.feature_norm.inv_std"]
    # The global normalisation statistics from training travel in the weights.
    loaded = load_exported(tiny_export)
    mean = loaded.model.get_buffer(buffers[0])
    assert torch.equal(mean, state["model"][buffers[0]]) and mean.abs().sum() > 0
    assert (tiny_export / "tokenizer" / "tokenizer.json").read_bytes() == (
        tiny_dmao_run / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def _strings(value):
    """Every string inside a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_export_holds_no_absolute_paths(tiny_dmao_run, tiny_export):
    """Nothing in an export says where it was made: no absolute path in any JSON file, and the
    ONNX graph without the exporter's per-node stack traces (which name the source files)."""
    json_files = sorted(tiny_export.rglob("*.json"))
    assert {p.name for p in json_files} >= {"manifest.json", "model.json", "features.json"}
    machine_paths = (str(tiny_dmao_run.parent), str(tiny_export.parent), os.getcwd(), "/tmp/")
    for path in json_files:
        for text in _strings(json.loads(path.read_text())):
            assert not text.startswith(("/", "~")) and ":\\" not in text, (path, text)
            assert not any(machine in text for machine in machine_paths), (path, text)
    graph = (tiny_export / "model.onnx").read_bytes()
    assert b"pkg.torch.onnx.stack_trace" not in graph
    assert not any(m.encode() in graph for m in (*machine_paths, str(Path(__file__).parents[2])))


def test_export_files_have_the_modes_of_a_plain_create(tiny_dmao_run, tmp_path):
    """0644 files and 0755 folders under umask 022, and whatever another umask gives: not the
    0600/0700 that safetensors and tempfile.mkdtemp pick for themselves."""
    for umask, file_mode, folder_mode in ((0o022, 0o644, 0o755), (0o027, 0o640, 0o750)):
        previous = os.umask(umask)
        try:
            out = export_run(tiny_dmao_run, tmp_path / f"export-{umask:o}", onnx=False)
        finally:
            os.umask(previous)
        modes = {
            p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in [out, *out.rglob("*")]
        }
        assert modes == {
            ".": folder_mode,
            "model.safetensors": file_mode,
            "model.json": file_mode,
            "features.json": file_mode,
            "manifest.json": file_mode,
            "tokenizer": folder_mode,
            "tokenizer/tokenizer.json": file_mode,
        }


def test_loaded_export_equals_the_run_model_without_the_run(tiny_dmao_run, tmp_path):
    """Export a copy of the run, delete the copy, load the export: bit-identical log-probs."""
    run_copy = tmp_path / "run"
    shutil.copytree(tiny_dmao_run, run_copy)
    export = export_run(run_copy, tmp_path / "export", onnx=False)
    shutil.rmtree(run_copy)
    loaded = load_exported(export)
    assert loaded.onnx_path is None

    model, _, tokenizer, _ = load_trained_model(tiny_dmao_run, "best", torch.device("cpu"))
    features, lens = _test_batch(tiny_dmao_run)
    with torch.no_grad():
        expected, expected_lens = model(features, lens)
        got, got_lens = loaded.model(features, lens)
    assert torch.equal(got_lens, expected_lens)
    assert torch.equal(got, expected)
    assert loaded.tokenizer.vocab_size == tokenizer.vocab_size
    assert loaded.decode_method == "greedy" and loaded.beam_size == 8


@pytest.mark.parametrize("num_utterances", [1, 3])
def test_onnx_equals_pytorch(tiny_dmao_run, tiny_export, num_utterances):
    """Two batch/time shapes: one utterance alone, and three padded to the longest."""
    loaded = load_exported(tiny_export)
    features, lens = _test_batch(tiny_dmao_run)
    features, lens = features[-num_utterances:], lens[-num_utterances:]
    features = features[:, : int(lens.max())]
    with torch.no_grad():
        expected, expected_lens = loaded.model(features, lens)
    got, got_lens = OnnxAcousticModel(loaded.onnx_path)(features, lens)
    assert got.shape == expected.shape
    assert torch.equal(got_lens, expected_lens)
    for b, n in enumerate(expected_lens.tolist()):
        assert torch.allclose(got[b, :n], expected[b, :n], atol=1e-4, rtol=0), b


def test_existing_export_is_kept_unless_forced(tiny_dmao_run, tmp_path):
    out = export_run(tiny_dmao_run, tmp_path / "export", onnx=False, checkpoint="last")
    before = (out / "manifest.json").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        export_run(tiny_dmao_run, out, onnx=False)
    assert (out / "manifest.json").read_text() == before
    export_run(tiny_dmao_run, out, onnx=False, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["source"]["checkpoint"] == "best.pt"
    assert not list(tmp_path.glob(".export.tmp-*"))  # no temporary folder left behind

    other = tmp_path / "not_an_export"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a dmao export"):
        export_run(tiny_dmao_run, other, onnx=False, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_load_rejects_changed_or_missing_files(tiny_export, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dmao export"):
        load_exported(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    flip_last_byte(copy / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors differs"):
        load_exported(copy)
    (copy / "features.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"features\.json is missing"):
        load_exported(copy)


def test_export_of_a_missing_run_or_checkpoint_fails_clearly(tiny_dmao_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dmao run folder"):
        export_run(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(Exception, match="checkpoint not found"):
        export_run(tiny_dmao_run, tmp_path / "out", checkpoint="step-99999999.pt")
    assert not (tmp_path / "out").exists()
