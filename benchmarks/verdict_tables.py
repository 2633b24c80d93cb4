"""The verdict's final table and decision (docs/protocol.md, "Metric and what counts as a win").

    python benchmarks/verdict_tables.py results/final/results.csv

For every system but the baseline, over the seeds it shares with the baseline:

- the primary metric, the paired test ΔWER (system − baseline, same seed): mean ± sample std,
  its standard error SE = std / √n, and the verdict: **win** if mean ≤ −2 SE and mean < 0,
  **loss** if mean ≥ +2 SE and mean > 0, else **level**;
- beside it: the relative test WER change of the means, the seeds better, the paired test ΔCER
  and the paired dev ΔWER;
- the decision: for the best WER at a fixed budget, the win with the lowest mean paired test
  ΔWER; none → the baseline. The paper's claim (up to ~6 % relative) counts as reproduced only
  for a win whose relative test WER reduction of the means is ≥ 6 %.

Written (and tested on made-up tables) before the final runs were read, so the numbers are not
chosen after the fact. Prints Markdown.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

PAPER_CLAIM = 0.06  # relative WER reduction the paper reports (up to ~6 %)


@dataclass(frozen=True)
class Paired:
    """Paired differences of one system to the baseline on one split (fractions, not %)."""

    deltas: tuple[float, ...]
    cer_deltas: tuple[float, ...]
    relative: float  # (baseline mean − system mean) / baseline mean: > 0 = better

    @property
    def mean(self) -> float:
        return statistics.fmean(self.deltas)

    @property
    def std(self) -> float:
        return statistics.stdev(self.deltas) if len(self.deltas) > 1 else math.nan

    @property
    def seeds_better(self) -> int:
        return sum(d < 0 for d in self.deltas)

    @property
    def se(self) -> float:
        return self.std / math.sqrt(len(self.deltas))

    @property
    def verdict(self) -> str:
        if len(self.deltas) < 2:
            return "level"  # no spread, no claim
        if self.mean < 0 and self.mean <= -2 * self.se:
            return "win"
        if self.mean > 0 and self.mean >= 2 * self.se:
            return "loss"
        return "level"


def read(path: Path) -> dict[tuple[str, str, int], tuple[float, float]]:
    """``{(system, split, seed): (wer, cer)}`` from a ``dmao compare`` results.csv."""
    with open(path, newline="") as f:
        return {
            (r["system"], r["split"], int(r["seed"])): (float(r["wer"]), float(r["cer"]))
            for r in csv.DictReader(f)
        }


def paired(rows: dict, system: str, split: str) -> Paired | None:
    """``system`` against the baseline on ``split`` over their common seeds (None: none)."""
    seeds = sorted(
        k for s, sp, k in rows if s == system and sp == split and ("baseline", split, k) in rows
    )
    if not seeds:
        return None
    ours = [rows[(system, split, k)] for k in seeds]
    base = [rows[("baseline", split, k)] for k in seeds]
    base_mean = statistics.fmean(b[0] for b in base)
    return Paired(
        deltas=tuple(o[0] - b[0] for o, b in zip(ours, base, strict=True)),
        cer_deltas=tuple(o[1] - b[1] for o, b in zip(ours, base, strict=True)),
        relative=(base_mean - statistics.fmean(o[0] for o in ours)) / base_mean,
    )


def _pm(values: tuple[float, ...]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} ± {100 * statistics.stdev(values):.2f}"


def tables(rows: dict) -> tuple[str, str]:
    """(the final table, the decision) in Markdown."""
    systems = [s for s in dict.fromkeys(s for s, _, _ in rows) if s != "baseline"]
    lines = [
        "| system | seeds | test ΔWER (points, mean ± std) | SE | verdict | rel. test WER "
        "| seeds better | test ΔCER | dev ΔWER |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    results: dict[str, Paired] = {}
    for system in systems:
        test, dev = paired(rows, system, "test"), paired(rows, system, "dev")
        if test is None:
            continue
        results[system] = test
        se = "–" if math.isnan(test.se) else f"{100 * test.se:.2f}"
        lines.append(
            f"| {system} | {len(test.deltas)} | {_pm(test.deltas)} | {se} | **{test.verdict}** "
            f"| {100 * test.relative:+.1f} % | {test.seeds_better}/"
            f"{len(test.deltas)} | {_pm(test.cer_deltas)} | "
            f"{_pm(dev.deltas) if dev else '–'} |"
        )
    wins = sorted((p.mean, s) for s, p in results.items() if p.verdict == "win")
    if wins:
        best = wins[0][1]
        p = results[best]
        decision = (
            f"For the best WER at a fixed budget, run **{best}**: paired test ΔWER "
            f"{100 * p.mean:+.2f} ± {100 * p.std:.2f} points (SE {100 * p.se:.2f}), "
            f"{100 * p.relative:.1f} % relative; the paper's claim (≥ 6 % relative) is "
            f"{'reproduced' if p.relative >= PAPER_CLAIM else 'not reproduced'}."
        )
    else:
        decision = (
            "For the best WER at a fixed budget, run **the baseline**: no system is a win "
            "(mean paired test ΔWER ≤ −2 SE); the paper's claim (≥ 6 % relative) is not "
            "reproduced."
        )
    losses = [s for s, p in results.items() if p.verdict == "loss"]
    if losses:
        decision += f" Worse than the baseline (loss): {', '.join(losses)}."
    return "\n".join(lines), decision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = read(args.csv)
    except (OSError, KeyError, ValueError) as err:
        print(f"verdict_tables: {args.csv}: {err}", file=sys.stderr)
        return 2
    if not any(s == "baseline" for s, _, _ in rows):
        print(f"verdict_tables: {args.csv}: no baseline rows", file=sys.stderr)
        return 2
    table, decision = tables(rows)
    print(table)
    print()
    print(decision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
