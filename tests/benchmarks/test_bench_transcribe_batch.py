"""benchmarks/bench_transcribe_batch.py at toy size: the tiny test run's export, its test files
one at a time and in passes; the table, the JSON and the agreement it reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_transcribe_batch


def test_batched_and_one_at_a_time_are_timed_and_agree(
    tiny_dmao_run, tiny_export, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "batch.json"
    argv = ["bench_transcribe_batch.py", "--run", str(tiny_dmao_run), "--export", str(tiny_export)]
    argv += ["--utterances", "6", "--batch-seconds", "20", "--backends", "torch", "onnx"]
    argv += ["--repeats", "2", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_transcribe_batch.main()
    table = capsys.readouterr().out
    assert "| torch | 0 (one at a time) |" in table and "| onnx | 20 |" in table
    result = json.loads(out.read_text())
    assert [(r["backend"], r["batch_seconds"]) for r in result["rows"]] == [
        ("torch", 0.0), ("torch", 20.0), ("onnx", 0.0), ("onnx", 20.0)
    ]  # fmt: skip
    for row in result["rows"]:
        assert len(row["all_rtf"]) == 2 and row["median_rtf"] > 0
        assert row["identical"] == 6  # the model masks padding: the same transcripts
    for backend in ("torch", "onnx"):
        passes = result["files_per_pass"][backend]
        assert passes and sum(passes) >= 5  # 20 s of padded audio holds several test files
        assert result["max_abs_logprob_diff"][backend] < 1e-4
