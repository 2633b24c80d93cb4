"""Test-set noise beside seed noise for the verdict (exploratory; docs/protocol.md).

    python benchmarks/verdict_bootstrap.py results/final/runs [--baseline baseline] \
        [--decode test-greedy] [--resamples 2000]

For every system of the archived records (``dmao compare --archive``: ``RUNS/<system>/seed<k>``)
and every seed it shares with the baseline, the paired bootstrap of the two decodes of that seed
(:mod:`dmao.evaluation.significance`, Bisani & Ney 2004): the system's ΔWER against the baseline
with its 95 % test-set interval and the share of resamples on which the system is better. Then
one row per system: the mean Δ, the standard deviation of Δ over seeds (what another training
seed changes), the mean half-width of the per-seed intervals (what another test set of this size
would change) and how many seeds are significantly better or worse on their own.

This is not part of the pre-registered decision (``benchmarks/verdict_tables.py`` makes it from
the spread over seeds); it says how much a single-seed, single-test-set comparison — the usual
one in papers — could be trusted on this corpus. Systems whose name ends in ``-phase`` or starts
with ``prefix-`` (helper runs of ``dmao compare``) are left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from dmao.evaluation.significance import BootstrapComparison, compare_decodes, read_paired_decodes
from dmao.experiments.sharing import PREFIX


@dataclass(frozen=True)
class SeedPair:
    """One seed of a system against the baseline's run of the same seed (WER, in points)."""

    seed: int
    wer: BootstrapComparison


def _seeds(system_dir: Path) -> dict[int, Path]:
    out = {}
    for run in system_dir.glob("seed*"):
        suffix = run.name.removeprefix("seed")
        if run.is_dir() and suffix.isdigit():
            out[int(suffix)] = run
    return out


def helper_run(system: str) -> bool:
    """A run `dmao compare` trains for other systems (a search phase, a shared prefix)."""
    return system.endswith("-phase") or system.startswith(PREFIX)


def pair_seeds(
    runs: Path, system: str, *, baseline: str, decode: str, resamples: int
) -> list[SeedPair]:
    """The paired bootstrap of every seed ``system`` shares with ``baseline`` (seed order).

    Raises:
        FileNotFoundError: a record without the decode folder (named).
    """
    base_seeds, seeds = _seeds(runs / baseline), _seeds(runs / system)
    pairs = []
    for seed in sorted(set(base_seeds) & set(seeds)):
        decodes = read_paired_decodes(base_seeds[seed] / "decode" / decode,
                                      seeds[seed] / "decode" / decode)  # fmt: skip
        wer = compare_decodes(decodes, resamples=resamples, seed=seed)["WER"]
        pairs.append(SeedPair(seed, wer))
    return pairs


def _half_width(c: BootstrapComparison) -> float:
    return (c.delta.high - c.delta.low) / 2


def format_tables(results: dict[str, list[SeedPair]], *, baseline: str, decode: str) -> str:
    """The summary table (one row per system), then the per-seed rows."""
    lines = [
        f"Paired test-set bootstrap of `{decode}` against `{baseline}`, seed by seed "
        "(exploratory; ΔWER in points, system − baseline; 95 % percentile intervals).",
        "",
        "| system | seeds | mean ΔWER | std over seeds | mean test-set ± | seeds better (sig.) "
        "| seeds worse (sig.) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for system, pairs in results.items():
        deltas = [p.wer.delta.value for p in pairs]
        std = f"{statistics.stdev(deltas):.2f}" if len(deltas) > 1 else "–"
        better = sum(p.wer.delta.high < 0 for p in pairs)
        worse = sum(p.wer.delta.low > 0 for p in pairs)
        lines.append(
            f"| {system} | {len(pairs)} | {statistics.mean(deltas):+.2f} | {std} | "
            f"{statistics.mean(_half_width(p.wer) for p in pairs):.2f} | {better} | {worse} |"
        )
    lines += [
        "",
        "| system | seed | ΔWER | 95 % interval | P(better) |",
        "|---|---:|---:|---:|---:|",
    ]
    for system, pairs in results.items():
        for p in pairs:
            d = p.wer.delta
            lines.append(
                f"| {system} | {p.seed} | {d.value:+.2f} | [{d.low:+.2f}, {d.high:+.2f}] | "
                f"{100 * p.wer.prob_b_better:.1f} % |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the records folder: RUNS/<system>/seed<k>")
    parser.add_argument("--baseline", default="baseline", help="the system the others face")
    parser.add_argument("--decode", default="test-greedy", help="decode folder of each record")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    if not (args.runs / args.baseline).is_dir():
        print(f"verdict_bootstrap.py: no {args.baseline} records in {args.runs}", file=sys.stderr)
        return 2
    systems = sorted(
        d.name for d in args.runs.iterdir()
        if d.is_dir() and d.name != args.baseline and not helper_run(d.name)
    )  # fmt: skip
    results = {}
    for system in systems:
        try:
            pairs = pair_seeds(args.runs, system, baseline=args.baseline, decode=args.decode,
                               resamples=args.resamples)  # fmt: skip
        except (FileNotFoundError, ValueError) as err:
            print(f"verdict_bootstrap.py: {system}: {err}", file=sys.stderr)
            return 2
        if pairs:
            results[system] = pairs
    if not results:
        message = f"no system shares a seed with {args.baseline}"
        print(f"verdict_bootstrap.py: {message}", file=sys.stderr)
        return 2
    print(format_tables(results, baseline=args.baseline, decode=args.decode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
