"""`dmao compare --status`: reading run folders, and the time estimate from finished runs."""

from __future__ import annotations

import json

from dmao.experiments.status import PlannedRun, RunStatus, format_status, run_status
from dmao.training.checkpoint import step_checkpoint_path


def test_run_status_reads_the_summary_and_the_newest_step_checkpoint(tmp_path):
    run = PlannedRun("baseline/seed0", tmp_path / "baseline" / "seed0", steps=600)
    assert run_status(run) == RunStatus(run, 0, False, None)  # no folder yet
    (run.run_dir / "checkpoints").mkdir(parents=True)
    for step in (300, 450):
        step_checkpoint_path(run.run_dir / "checkpoints", step).write_bytes(b"")
    assert run_status(run).state == "resumes at step 450"
    # A summary of fewer steps is a stopped run (train.stop_at_step), not a finished one.
    summary = run.run_dir / "train_summary.json"
    summary.write_text(json.dumps({"steps": 450, "train_seconds": 900.0}))
    assert not run_status(run).done
    summary.write_text(json.dumps({"steps": 600, "train_seconds": 1200.0}))
    assert run_status(run) == RunStatus(run, 600, True, 1200.0)
    assert run_status(run).state == "done (20 min)"


def test_the_estimate_is_the_steps_left_at_the_median_rate_of_finished_runs(tmp_path):
    def status(label, steps, step, seconds=None, after=None):
        run = PlannedRun(label, tmp_path / label, steps, after)
        return RunStatus(run, step, seconds is not None, seconds)

    statuses = [
        status("baseline/seed0", 1000, 1000, 3600.0),
        status("dmao/seed0", 1000, 1000, 7200.0),
        status("baseline/seed1", 1000, 1000, 10800.0),  # the median is 7.2 s/step
        status("dmao/seed1", 1000, 500),
        status("control/seed1", 1000, 0, after="dmao/seed1"),
    ]
    text = format_status(statuses, jobs=2)
    rows = [line.split() for line in text.splitlines()]
    assert rows[0] == ["run", "steps", "state"]
    assert rows[1] == ["baseline/seed0", "1,000/1,000", "done", "(60", "min)"]
    assert rows[4] == ["dmao/seed1", "500/1,000", "resumes", "at", "step", "500"]
    assert rows[5] == ["control/seed1", "0/1,000", "waits", "for", "dmao/seed1"]
    # The steps column is right-aligned under its header.
    lines = text.splitlines()
    ends = {lines[i].index(rows[i][1]) + len(rows[i][1]) for i in range(6)}
    assert len(ends) == 1
    assert text.endswith(
        "3 of 5 runs done; 2 to go, 1,500 steps, ≈ 3.0 h of training at 7.20 s/step (median of 3 "
        "finished runs), ≈ 1.5 h with 2 at a time"
    )
