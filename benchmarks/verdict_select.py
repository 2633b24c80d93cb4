"""The verdict's selection rule (docs/protocol.md, stage 1), applied to a ``dmao compare`` CSV.

    python benchmarks/verdict_select.py exp/selection/results.csv [--names]

Among the six in-training variants (``dmao``, ``copy``, ``split``, ``gradmax``, ``rewarmup``,
``gradual``), the two with the lowest mean paired dev ΔWER (system − baseline, same seed) go
forward, ties broken by the lower mean paired dev ΔCER: A (best) and B. Only dev rows are read.
Every variant needs every seed the baseline has (seeds 0, 1, 2 in the protocol): a missing run
stops the script with one line naming it, since a mean over fewer seeds is not the rule.

Prints the ranking as a Markdown table and ``A = …, B = …``; with ``--names`` only ``A B`` (for
benchmarks/verdict_stage2.sh).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from verdict_tables import paired, read

IN_TRAINING = ("dmao", "copy", "split", "gradmax", "rewarmup", "gradual")


@dataclass(frozen=True)
class Ranked:
    """A variant's mean paired dev differences to the baseline (fractions, not %)."""

    system: str
    wer_delta: float
    cer_delta: float
    wer_deltas: tuple[float, ...]
    seeds_better: int


Rows = dict[tuple[str, str, int], tuple[float, float]]  # (system, split, seed) → (wer, cer)


def read_dev(path: Path) -> Rows:
    """The dev rows of a ``dmao compare`` results.csv, keyed like :func:`verdict_tables.read`."""
    return {key: value for key, value in read(path).items() if key[1] == "dev"}


def rank(rows: Rows, source: str = "CSV") -> list[Ranked]:
    """The in-training variants, best first, by the protocol's rule."""
    seeds = sorted(k for s, split, k in rows if s == "baseline" and split == "dev")
    if not seeds:
        raise ValueError(f"{source}: no dev row of the baseline")
    missing = [f"{s}/seed{k}" for s in IN_TRAINING for k in seeds if (s, "dev", k) not in rows]
    if missing:
        raise ValueError(
            f"{source}: no dev result for {', '.join(missing)}; the rule needs every variant "
            f"on every baseline seed ({seeds})"
        )
    ranked = []
    for system in IN_TRAINING:
        p = paired(rows, system, "dev")  # over every baseline seed: none is missing
        ranked.append(
            Ranked(system, p.mean, statistics.fmean(p.cer_deltas), p.deltas, p.seeds_better)
        )
    # Means equal up to float rounding are ties (WERs are error counts over the same words).
    return sorted(ranked, key=lambda r: (round(r.wer_delta, 9), round(r.cer_delta, 9)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="results.csv of the stage-1 comparison")
    parser.add_argument("--names", action="store_true", help="print only 'A B'")
    args = parser.parse_args(argv)
    try:
        ranked = rank(read_dev(args.csv), str(args.csv))
    except (OSError, KeyError, ValueError) as err:
        print(f"verdict_select: {err}", file=sys.stderr)
        return 2
    a, b = ranked[0].system, ranked[1].system
    if args.names:
        print(a, b)
        return 0
    print("| rank | system | mean paired dev ΔWER (points) | mean paired dev ΔCER (points) "
          "| per seed ΔWER | seeds better |")  # fmt: skip
    print("|---:|---|---:|---:|---|---:|")
    for i, r in enumerate(ranked, 1):
        per_seed = " / ".join(f"{100 * d:+.2f}" for d in r.wer_deltas)
        print(
            f"| {i} | {r.system} | {100 * r.wer_delta:+.2f} | {100 * r.cer_delta:+.2f} "
            f"| {per_seed} | {r.seeds_better} of {len(r.wer_deltas)} |"
        )
    print(f"\nA = {a}, B = {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
