"""Smoke run of every DMAO event mode on the small recipe: does training go on after the event?

For each mode, trains the small recipe's model (``dmao/configs/synthetic/small.yaml``) with the
mode's overrides up to ``--after`` steps past its event and reports the training loss of the
``--window`` steps just before the event and of the ``--window`` steps ending ``--after`` steps
after it, with the event's wall time. Same seed and data order for every mode, so the losses
before the event are identical wherever the mode does not act before it (GradMax's hooks do not
change the maths).

    python benchmarks/smoke_modes.py --out exp/smoke [--steps 400] [--modes fresh,split,...]

Writes ``OUT/smoke.md`` (the table for RESULTS.md) and ``OUT/smoke.csv``; finished runs are reused.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from pathlib import Path

from dmao.training.metrics import read_metrics

MODES: dict[str, list[str]] = {
    "copy": ["dmao.growth_init=copy"],  # the paper's exact copies
    "fresh": ["dmao.growth_init=fresh"],
    "split": ["dmao.growth_init=split"],  # α = 0.6
    "gradmax": ["dmao.growth_init=gradmax"],
    "fresh-second": ["dmao.growth_init=fresh", "dmao.duplicate_moments=second"],
    "fresh-rewarmup-new": ["dmao.growth_init=fresh", "dmao.rewarmup_steps=50"],
    "fresh-rewarmup-all": [
        "dmao.growth_init=fresh",
        "dmao.rewarmup_steps=50",
        "dmao.rewarmup_scope=all",
    ],
    "fresh-cosine3": ["dmao.growth_init=fresh", "dmao.num_events=3", "dmao.event_spacing=cosine"],
    "reference": ["dmao.growth_init=reference"],
    "perturb": ["dmao.growth_init=reference", "dmao.perturb_only=true"],
    "random": ["dmao.growth_init=fresh", "dmao.metric=random"],
}


def _window_loss(records: list[dict], first: int, last: int) -> float:
    """Token-weighted mean training loss of the logged steps in ``(first, last]`` (logged every
    step here)."""
    sel = [r for r in records if first < r["step"] <= last]
    if not sel:
        raise ValueError(f"no training loss logged in steps ({first}, {last}]")
    return statistics.fmean(r["loss"] for r in sel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="dmao/configs/synthetic/small.yaml")
    parser.add_argument("--steps", type=int, default=400, help="train.max_steps of the schedule")
    parser.add_argument("--event-fraction", type=float, default=0.4)
    parser.add_argument("--after", type=int, default=50, help="steps trained after the event")
    parser.add_argument("--window", type=int, default=10, help="steps averaged per loss")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated mode names")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra key=value for every run")
    args = parser.parse_args(argv)
    event = round(args.event_fraction * args.steps)
    rows = []
    for mode in [m for m in args.modes.split(",") if m]:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        run = args.out / mode
        last_event = event  # with several events the last one is at the event fraction
        overrides = [
            "dmao.enabled=true", f"dmao.last_event_fraction={args.event_fraction}",
            f"train.max_steps={args.steps}", f"train.stop_at_step={last_event + args.after}",
            "train.log_every_steps=1", f"train.valid_every_steps={args.steps}",
            f"train.checkpoint_every_steps={args.steps}", "train.progress_bar=false",
            f"train.num_threads={args.threads}", *MODES[mode], *args.overrides,
        ]  # fmt: skip
        if not (run / "train_summary.json").is_file():
            subprocess.run(
                [sys.executable, "-m", "dmao.cli.main", "train",
                 *(["--config", args.config] if args.config else []),
                 "--out", str(run), *overrides],
                check=True,
            )  # fmt: skip
        events = read_metrics(run, "dmao_event")
        train = read_metrics(run, "train")
        last = events[-1]["step"]
        rows.append(
            {
                "mode": mode,
                "events": len(events),
                "event_step": last,
                "loss_before": round(_window_loss(train, last - args.window, last), 4),
                "loss_after": round(
                    _window_loss(train, last + args.after - args.window, last + args.after), 4
                ),
                "event_seconds": round(sum(e.get("seconds", 0.0) for e in events), 3),
                "params_delta": events[-1]["params_after"] - events[0]["params_before"],
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "smoke.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"| mode | events | last event at | loss, {args.window} steps before | "
        f"loss, {args.after} steps after | event time (s) | Δ adaptable params |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['events']} | {r['event_step']} | {r['loss_before']:.3f} | "
            f"{r['loss_after']:.3f} | {r['event_seconds']:.3f} | {r['params_delta']:+,} |"
        )
    (args.out / "smoke.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
