"""``dmao info --config FILE [key=value ...] [--json]`` — parameter count per module and layer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter count per module type and layer")
    p.add_argument("--config", type=Path, default=None, help="YAML recipe (default: built-in)")
    p.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="output units incl. blank (default: tokenizer.vocab_size + 1)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.config import load_config
    from dmao.models.accounting import count_parameters, format_report
    from dmao.training.model_setup import build_model_from_config

    config = load_config(args.config, args.overrides)
    vocab = args.vocab_size or config.tokenizer.vocab_size + 1
    model = build_model_from_config(config.model, vocab)
    report = count_parameters(model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(format_report(report))
    return 0
