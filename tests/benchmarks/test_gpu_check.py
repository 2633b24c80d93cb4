"""benchmarks/gpu_check.py: its CPU path (--dry-run) runs the whole check at toy size, so the GPU
check is known to work before a GPU is available."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_trains_baseline_and_dmao_and_reports(tmp_path, capsys):
    gpu_check = _load()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--hours", "0.01"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["precision"] == "bf16" and report["steps"] == 4
    base, dmao = report["runs"]["baseline"], report["runs"]["dmao"]
    assert base["steps"] == dmao["steps"] == 4
    assert base["dmao_events"] == 0 and dmao["dmao_events"] == 1
    assert base["event_transient_s"] == 0  # no event, nothing left out
    assert dmao["event_transient_s"] == dmao["event_transient_s"]  # a number (not NaN)
    for run in (base, dmao):
        assert run["steady_steps_per_s"] > 0 and run["steady_audio_s_per_s"] > 0
        assert run["peak_gpu_memory_gib"] is None  # CPU
        assert run["dev_wer"] >= 0.0
    out = capsys.readouterr().out
    assert "| steps/s | audio s/s | peak GiB |" in out
    row = next(line for line in out.splitlines() if line.startswith("| ") and "bf16" in line)
    assert len(row.strip("|").split("|")) == 11


def test_refuses_without_cuda_unless_dry_run(tmp_path):
    gpu_check = _load()
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
