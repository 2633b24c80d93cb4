"""benchmarks/smoke_modes.py at toy size: every listed mode trains through its event and the
table reports the losses around it."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from conftest import tiny_train_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import smoke_modes


def test_smoke_modes_table(tiny_corpus, tmp_path):
    out = tmp_path / "smoke"
    modes = "fresh,perturb,fresh-cosine3"
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "m"),
        "dmao.score_every_steps=2",
    ]
    code = smoke_modes.main(
        ["--out", str(out), "--config", "", "--steps", "20", "--event-fraction", "0.5",
         "--after", "4", "--window", "2", "--modes", modes, *overrides]
    )  # fmt: skip
    assert code == 0
    with open(out / "smoke.csv") as f:
        rows = list(csv.DictReader(f))
    by_mode = {r["mode"]: r for r in rows}
    assert list(by_mode) == ["fresh", "perturb", "fresh-cosine3"]
    assert int(by_mode["fresh-cosine3"]["events"]) == 3
    assert all(int(r["event_step"]) == 10 for r in rows)
    assert int(by_mode["perturb"]["params_delta"]) == 0
    assert all(float(r["loss_after"]) > 0 for r in rows)
    assert "loss, 4 steps after" in (out / "smoke.md").read_text()
