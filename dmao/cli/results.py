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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.evaluation.results_table import find_results, format_csv, format_markdown

    rows = find_results(args.folders, split=args.split)
    if not rows:
        where = ", ".join(map(str, args.folders))
        raise FileNotFoundError(
            f"no decode results (result.json) below {where}"
            + (f" for split {args.split!r}" if args.split else "")
            + "; decode a run first: dmao decode RUN --split SPLIT"
        )
    print(format_csv(rows).rstrip("\n") if args.csv else format_markdown(rows))
    return 0
