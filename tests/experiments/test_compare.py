"""`dmao compare` end to end on the tiny real corpus: baseline, DMAO and control, then re-run."""

from __future__ import annotations

import csv

from conftest import tiny_train_overrides

from dmao.experiments import run_comparison


def test_compare_trains_scores_and_skips_finished_runs(tiny_corpus, tmp_path):
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=8",
        "train.valid_every_steps=4",
        "train.checkpoint_every_steps=4",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    ]
    out = tmp_path / "cmp"
    result = run_comparison(None, None, out, seeds=[0], control=True, overrides=overrides)
    systems = {(r.system, r.split) for r in result.runs}
    assert systems == {(s, p) for s in ("baseline", "dmao", "control") for p in ("dev", "test")}
    params = {r.system: r.parameters for r in result.runs}
    # Same budget: DMAO ends within one component (at most a few hundred parameters here).
    assert abs(params["dmao"] - params["baseline"]) < 0.02 * params["baseline"]
    assert params["control"] == params["dmao"]  # the found architecture, retrained
    assert "rel. WER" in result.table and "control" in result.table
    names = {p.name for p in result.files}
    assert {"results.md", "results.csv", "valid_wer.png", "architecture_heatmap.png"} <= names
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 6

    # Re-running reuses every finished run: no checkpoint is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("step-*.pt")}
    again = run_comparison(None, None, out, seeds=[0], control=True, overrides=overrides)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("step-*.pt")} == stamps
    assert [(r.system, r.wer) for r in again.runs] == [(r.system, r.wer) for r in result.runs]
