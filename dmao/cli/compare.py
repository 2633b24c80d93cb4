"""``dmao compare`` — baseline vs DMAO (vs control) over seeds, at the same budget."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train and score baseline vs DMAO over several seeds",
        description="Runs OUT/<system>/seed<k>; re-running skips finished runs and resumes "
        "interrupted ones. Overrides apply to every system; put them before the options or "
        "after `--` (after --seeds they would be read as seeds).",
    )
    p.add_argument("--config", type=Path, default=None, help="baseline recipe")
    p.add_argument(
        "--dmao-config",
        type=Path,
        default=None,
        help="DMAO recipe (default: --config with DMAO on)",
    )
    p.add_argument("--out", type=Path, required=True, help="comparison folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--control", action="store_true", help="also retrain each DMAO architecture from scratch"
    )
    p.add_argument(
        "--search-retrain",
        action="store_true",
        help="also search-then-retrain at equal budget: the DMAO recipe until its last event, "
        "then the found architecture from scratch for the remaining steps (system 'search')",
    )
    p.add_argument(
        "--control-from",
        default="dmao",
        metavar="SYSTEM",
        help="the DMAO system (dmao or a variant) whose final architectures the controls train",
    )
    p.add_argument(
        "--search-from",
        default="dmao",
        metavar="SYSTEM",
        help="the DMAO system (dmao or a variant) whose recipe the search phase trains",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value[,key=value...]",
        help="an ablation system: the DMAO recipe plus these overrides, trained as OUT/NAME "
        "(repeatable), e.g. late:dmao.last_event_fraction=0.4",
    )
    p.add_argument(
        "--share-prefix",
        action="store_true",
        help="DMAO systems that differ only in settings read at events (growth, re-warm-up, "
        "reference mode, fractions, ...) train their common steps before the first event once "
        "per seed (OUT/prefix-SYSTEM-STEP/seedK); each then continues from that checkpoint exactly "
        "as if it had trained them itself",
    )
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each finished run's record (config, summary, metrics, architecture, dev/test "
        "decodes; no checkpoints) in DIR/<system>/seed<k>, and restore it from there when OUT "
        "lacks the run, e.g. on a new machine: the run counts as done and is scored from its "
        "record (a few hundred kB per run, small enough to commit)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many runs at the same time (separate processes; on one GPU several "
        "small runs share it, with several GPUs run i uses cuda:(i mod N); on the CPU each "
        "gets cores/jobs threads)",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="train nothing: list every run of this comparison (done, where it resumes, what it "
        "waits for) and estimate the training time left from the finished runs",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise SystemExit(f"dmao compare: --jobs must be >= 1, got {args.jobs}")
    from dmao.experiments import comparison_status, parse_variant, run_comparison
    from dmao.experiments.status import format_status

    options = {
        "seeds": args.seeds,
        "control": args.control,
        "overrides": args.overrides,
        "variants": [parse_variant(v) for v in args.variant],
        "search_retrain": args.search_retrain,
        "control_from": args.control_from,
        "search_from": args.search_from,
        "share_prefix": args.share_prefix,
        "archive": args.archive,
    }
    if args.status:
        statuses = comparison_status(args.config, args.dmao_config, args.out, **options)
        print(format_status(statuses, jobs=args.jobs))
        return 0
    result = run_comparison(args.config, args.dmao_config, args.out, jobs=args.jobs, **options)
    print(result.table)
    print()
    for path in result.files:
        print(f"written: {path}")
    return 0
