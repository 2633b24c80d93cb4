"""``dmao decode RUN --split test [--method greedy|beam]``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode a corpus split with a trained run and score it")
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--split", nargs="+", default=None, help="corpus parts (default: test parts)")
    p.add_argument("--method", choices=("greedy", "beam"), default=None)
    p.add_argument("--beam-size", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="best (default), last, or a file")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from dmao.config import config_from_dict
    from dmao.decoding.decode_run import decode_split
    from dmao.evaluation.wer import format_results_table

    cfg_path = args.run / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{args.run} is not a dmao run folder (no config.yaml)")
    with open(cfg_path) as f:
        config = config_from_dict(yaml.safe_load(f), source=str(cfg_path))
    rows = []
    for split in args.split or config.data.test_parts:
        result = decode_split(
            args.run,
            split,
            method=args.method,
            beam_size=args.beam_size,
            checkpoint=args.checkpoint,
            device=args.device,
        )
        print(f"{split} ({result.method}, {result.checkpoint}): {result.score.summary()}")
        print(f"  hypotheses: {result.hypotheses_path}  RTF {result.real_time_factor:.4f}")
        rows.append(result.score.table_row(f"{args.run.name} ({result.method})", split))
    print()
    print(format_results_table(rows))
    return 0
