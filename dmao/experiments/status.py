"""Where a long comparison stands: every planned run, its progress, and the training time left.

A comparison of many seeds and systems runs for days on a small machine and resumes across
sessions (``dmao compare`` re-run with the same arguments). ``dmao compare ... --status`` reads the
run folders and answers, without training anything, what a researcher asks each morning: which
runs are done, where each interrupted one resumes, which wait for another run (controls and
retrains need a DMAO run's final architecture), and roughly how many hours are left.

Progress is what a resume keeps: the newest step checkpoint, not the last logged step. The
estimate multiplies the steps left by the median seconds per step of the finished runs (the
only measured rate; none finished, no estimate) and divides by the number of runs trained at a
time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from dmao.experiments.jobs import finished_summary
from dmao.training.checkpoint import list_step_checkpoints

__all__ = ["PlannedRun", "RunStatus", "format_status", "run_status"]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison's plan: ``OUT/<system>/seed<k>`` trained to ``steps``."""

    label: str  # "system/seed<k>"
    run_dir: Path
    steps: int  # the optimizer step it ends at
    after: str | None = None  # the label of the run whose final architecture it trains
    start: tuple[str, int] | None = None  # (shared prefix, its step) it will start from


@dataclass(frozen=True)
class RunStatus:
    """How far one planned run is."""

    run: PlannedRun
    step: int  # what a resume starts from: the end when done, else the newest step checkpoint
    done: bool
    train_seconds: float | None  # of a finished run (train_summary.json), else None
    archived: bool = False  # done as far as its record in the archive says (not yet in OUT)

    @property
    def state(self) -> str:
        if self.done:
            notes = [f"{self.train_seconds / 60:.0f} min"] if self.train_seconds else []
            notes += ["archived"] if self.archived else []
            return f"done ({', '.join(notes)})" if notes else "done"
        if self.step:
            return f"resumes at step {self.step:,}"
        if self.run.after:
            return f"waits for {self.run.after}"
        if self.run.start:
            return f"starts from {self.run.start[0]} at step {self.run.start[1]:,}"
        return "not started"


def run_status(run: PlannedRun, archive: Path | None = None) -> RunStatus:
    """Read ``run.run_dir`` (which may not exist yet) and say how far the run is; with
    ``archive`` (``dmao compare --archive``), a run whose record is kept there is done."""
    summary = finished_summary(run.run_dir, run.steps)
    archived = False
    if summary is None and archive is not None:
        summary = finished_summary(archive / run.label, run.steps)
        archived = summary is not None
    if summary is not None:
        seconds = float(summary.get("train_seconds", 0.0))
        return RunStatus(run, run.steps, True, seconds, archived=archived)
    checkpoints = list_step_checkpoints(run.run_dir / "checkpoints")
    step = checkpoints[-1][0] if checkpoints else 0
    return RunStatus(run, min(step, run.steps), False, None)


def format_status(statuses: list[RunStatus], jobs: int = 1) -> str:
    """A plain-text table of ``statuses``, then the runs and steps left and the time estimate."""
    width = max([len("run"), *(len(s.run.label) for s in statuses)])
    lines = [f"{'run':<{width}}  {'steps':>15}  state"]
    for s in statuses:
        progress = f"{s.step:,}/{s.run.steps:,}"
        lines.append(f"{s.run.label:<{width}}  {progress:>15}  {s.state}")
    left = [s for s in statuses if not s.done]
    steps_left = sum(s.run.steps - max(s.step, s.run.start[1] if s.run.start else 0) for s in left)
    rates = [s.train_seconds / s.run.steps for s in statuses if s.done and s.train_seconds]
    summary = f"{len(statuses) - len(left)} of {len(statuses)} runs done"
    if left:
        summary += f"; {len(left)} to go, {steps_left:,} steps"
        if rates:
            rate = statistics.median(rates)
            hours = steps_left * rate / 3600
            at_once = max(1, min(jobs, len(left)))
            summary += (
                f", ≈ {hours:.1f} h of training at {rate:.2f} s/step (median of {len(rates)} "
                f"finished run{'s' if len(rates) > 1 else ''})"
            )
            if at_once > 1:
                summary += f", ≈ {hours / at_once:.1f} h with {at_once} at a time"
        else:
            summary += " (no run finished yet: no measured rate to estimate the time from)"
    return "\n".join([*lines, "", summary])
