"""The verdict's convergence condition (docs/protocol.md): dev WER moves < 1 point in the last 10 %.

    python benchmarks/verdict_convergence.py --gate RUN --steps 6000
    python benchmarks/verdict_convergence.py results/final/results.csv --steps 6000 \
        [--systems baseline ...] [--runs results/final/runs]

``--gate RUN``: the check ``benchmarks/verdict_stage2.sh`` makes on its first run, from the dev
WERs the run validated at steps ``steps − steps // 10`` and ``steps`` (its ``metrics.jsonl``);
prints the curve and exits 3 if the WER moved by 1 point or more (2 if a step was not validated);
what follows a failure is the protocol's to say (docs/protocol.md, Amendment 1).

With a ``dmao compare`` results.csv: the same movement for every run of the named systems (the
``run_dir`` column), as the Markdown table RESULTS.md shows beside the final numbers. ``--runs
DIR`` reads each run from ``DIR/<system>/seed<k>`` instead: the records ``dmao compare
--archive`` keeps (with their ``metrics.jsonl``), so the committed CSV and records give the table
on any machine, after the run folders are gone.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from dmao.training.metrics import read_metrics

THRESHOLD = 1.0  # WER points


def last_tenth_start(steps: int) -> int:
    """The first step of the last 10 % of a ``steps``-step run."""
    return steps - steps // 10


@dataclass(frozen=True)
class Movement:
    """Dev WER (in %) of one run over its last 10 % of steps, both ends validated."""

    curve: tuple[tuple[int, float], ...]  # (step, dev WER %), first and last step included

    @property
    def moved(self) -> float:
        return self.curve[-1][1] - self.curve[0][1]

    @property
    def converged(self) -> bool:
        return abs(self.moved) < THRESHOLD


def movement(run: Path, steps: int) -> Movement:
    """The run's dev WER over its last 10 % of ``steps``; ValueError naming the run if either end
    was not validated."""
    wer = {r["step"]: 100 * r["wer"] for r in read_metrics(run, "valid")}
    start = last_tenth_start(steps)
    if start not in wer or steps not in wer:
        raise ValueError(
            f"{run}: no dev WER at steps {start} and {steps} (validated at {sorted(wer)})"
        )
    return Movement(tuple((s, w) for s, w in sorted(wer.items()) if start <= s <= steps))


def gate(run: Path, steps: int) -> int:
    """Print the gate's line; 0 if it passed, 3 if not."""
    m = movement(run, steps)
    shown = ", ".join(f"{s}: {w:.2f}" for s, w in m.curve)
    print(f"convergence gate, {run}: dev WER {shown}; moved {m.moved:+.2f} points in the last 10 %")
    if not m.converged:
        print(f"FAILED: moved {THRESHOLD:g} point or more (docs/protocol.md says what follows)")
        return 3
    print("passed")
    return 0


def table(csv_path: Path, steps: int, systems: list[str], runs_dir: Path | None = None) -> str:
    """Markdown: one row per run of ``systems`` in a results.csv, with its last-10 % movement
    (each run read from its ``run_dir``, or from ``runs_dir/<system>/seed<k>``)."""
    with open(csv_path, newline="") as f:
        runs = {
            (r["system"], int(r["seed"])): (
                Path(r["run_dir"])
                if runs_dir is None
                else runs_dir / r["system"] / f"seed{r['seed']}"
            )
            for r in csv.DictReader(f)
        }
    lines = [
        f"| system | seed | dev WER at step {last_tenth_start(steps):,} | at {steps:,} "
        f"| moved (points) | < {THRESHOLD:g} point |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for (system, seed), run in sorted(runs.items()):
        if system not in systems:
            continue
        m = movement(run, steps)
        lines.append(
            f"| {system} | {seed} | {m.curve[0][1]:.2f} | {m.curve[-1][1]:.2f} | {m.moved:+.2f} "
            f"| {'yes' if m.converged else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, nargs="?", help="results.csv of a dmao compare")
    parser.add_argument("--gate", type=Path, metavar="RUN", help="check one run; exit 3: failed")
    parser.add_argument("--steps", type=int, required=True, help="the recipe's train.max_steps")
    parser.add_argument("--systems", nargs="+", default=["baseline"], help="rows of the table")
    parser.add_argument(
        "--runs", type=Path, default=None, help="read runs from DIR/SYSTEM/seedK (an --archive)"
    )
    args = parser.parse_args(argv)
    if (args.gate is None) == (args.csv is None):
        parser.error("give either --gate RUN or a results.csv")
    try:
        if args.gate is not None:
            return gate(args.gate, args.steps)
        print(table(args.csv, args.steps, args.systems, args.runs))
    except (OSError, KeyError, ValueError) as err:
        print(f"verdict_convergence: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
