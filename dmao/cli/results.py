"""``dmao results DIR...`` — every scored decode below the folders, as one Markdown table."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="tabulate every scored decode (result.json) below some folders",
        description="Reads the result.json that `dmao decode` writes for each decode and prints "
        "one table, sorted by split and WER: run, split, decoder, checkpoint, WER, CER, errors. "
        "Nothing is recomputed.",
    )
    p.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="runs or experiments")
    p.add_argument("--split", default=None, help="only this split")
    p.add_argument("--csv", action="store_true", help="CSV instead of Markdown")
    p.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="DECODE",
        help="a decode folder (or its result.json) to compare every decode of the same "
        "utterances with: ΔWER, its 95 %% interval and P(better) by the paired bootstrap "
        "(dmao significance)",
    )
    p.add_argument(
        "--resamples", type=int, default=2000, help="--against: bootstrap resamples per decode"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.evaluation.results_table import (
        against_reference,
        find_results,
        format_csv,
        format_markdown,
    )

    rows = find_results(args.folders, split=args.split)
    if not rows:
        where = ", ".join(map(str, args.folders))
        raise FileNotFoundError(
            f"no decode results (result.json) below {where}"
            + (f" for split {args.split!r}" if args.split else "")
            + "; decode a run first: dmao decode RUN --split SPLIT"
        )
    if args.against is not None:
        if args.resamples < 100:
            raise ValueError(f"--resamples: expected at least 100, got {args.resamples}")
        rows = against_reference(rows, args.against, resamples=args.resamples)
    print(format_csv(rows).rstrip("\n") if args.csv else format_markdown(rows))
    return 0
