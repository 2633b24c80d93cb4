"""``dmao report RUN [RUN ...]`` — the per-layer architecture a run reached, its events, and
figures; with several runs (seeds of one recipe), where they put the budget on average and whether
they agree (README, "DMAO: letting the model reallocate its parameters")."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="per-layer widths and DMAO events of a run, with figures; with several runs, their "
        "mean allocation and agreement",
    )
    p.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="run folder written by `dmao train` (or a record archived by `dmao compare`); "
        "several: runs of one recipe, e.g. its seeds",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="figure folder (default: RUN/report; several runs: report/ beside them)",
    )
    p.add_argument(
        "--twins",
        action="store_true",
        help="also count duplicated units that are still identical copies (loads the model; "
        "one run only)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="ARCH",
        help="architecture JSON of the same model (e.g. dmao/configs/synthetic/architectures/"
        "authors.json): how closely the runs' changes follow its changes",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=10_000,
        help="shuffles of the permutation tests (default 10000)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.training.model_setup import load_architecture

    if args.permutations < 1:
        raise ValueError(f"--permutations must be at least 1, got {args.permutations}")
    reference = None
    if args.reference is not None:
        if not args.reference.exists():
            raise FileNotFoundError(
                f"--reference: {args.reference} does not exist (expected an architecture JSON or "
                "YAML file, or a run folder)"
            )
        try:
            reference = load_architecture(args.reference)
        except ValueError as err:
            raise ValueError(f"--reference {args.reference}: {err}") from None
    if len(args.runs) == 1:
        return _one_run(args, reference)
    if args.twins:
        raise ValueError("--twins reports one run; give a single RUN")
    from dmao.reporting.seeds import AllocationSummary, save_summary_figure

    summary = AllocationSummary.from_runs(args.runs)
    print(f"components per layer over {len(args.runs)} runs, mean ± std (layer 1 = bottom):\n")
    print(summary.table())
    print("\nshare of the adaptable parameters per module kind:\n")
    print(summary.shares_table())
    print()
    print(summary.agreement(args.permutations).line("agreement between the runs (pairwise)"))
    if reference is not None:
        print(summary.similarity(reference, args.permutations).line(f"like {args.reference}"))
    out = args.out or Path(os.path.commonpath([p.resolve() for p in args.runs])) / "report"
    print(f"figure: {save_summary_figure(summary, out)}")
    return 0


def _one_run(args: argparse.Namespace, reference: object) -> int:
    from dmao.reporting import build_report, save_figures

    run_dir = args.runs[0]
    report = build_report(run_dir)
    print(f"components per layer of {run_dir} (layer 1 = bottom):\n")
    print(report.table())
    print()
    print(report.events_summary())
    if reference is not None:
        from dmao.reporting.seeds import AllocationSummary

        summary = AllocationSummary([report])
        print(summary.similarity(reference, args.permutations).line(f"like {args.reference}"))
    if args.twins:
        from dmao.reporting.twins import twin_table

        print()
        print(twin_table(run_dir))
    for path in save_figures(report, args.out or run_dir / "report"):
        print(f"figure: {path}")
    return 0
