"""``dmao report RUN`` — the per-layer architecture a run reached, its events, and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-layer widths and DMAO events of a run, with figures")
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--out", type=Path, default=None, help="figure folder (default: RUN/report)")
    p.add_argument(
        "--twins",
        action="store_true",
        help="also count duplicated units that are still identical copies (loads the model)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.reporting import build_report, save_figures

    report = build_report(args.run)
    print(f"components per layer of {args.run} (layer 1 = bottom):\n")
    print(report.table())
    print()
    print(report.events_summary())
    if args.twins:
        from dmao.reporting.twins import twin_table

        print()
        print(twin_table(args.run))
    for path in save_figures(report, args.out or args.run / "report"):
        print(f"figure: {path}")
    return 0
