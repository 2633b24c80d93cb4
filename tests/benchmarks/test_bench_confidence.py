"""benchmarks/bench_confidence.py at toy size: every measure on the tiny test run's greedy words."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_confidence


def test_every_measure_scores_the_same_words(tiny_dmao_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "confidence.json"
    argv = ["bench_confidence.py", "--run", str(tiny_dmao_run), "--utterances", "8"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    bench_confidence.main()
    table = capsys.readouterr().out
    assert table.count("(best on dev)") == 1  # greedy only: no --lm
    result = json.loads(out.read_text())
    for split in ("dev", "test"):
        rows = result[f"{split}/greedy"]["measures"]
        assert [r["measure"] for r in rows] == [m.label for m in bench_confidence.measures()]
        assert len(rows) == 15 and len({r["num_words"] for r in rows}) == 1
        assert len({r["num_wrong"] for r in rows}) == 1  # same words, same labels
        for row in rows:
            assert row["auc_roc"] is None or 0.0 <= row["auc_roc"] <= 1.0
            assert f"| greedy | {row['measure']}" in table
