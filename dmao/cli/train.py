"""``dmao train --config FILE --out RUN [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CTC model",
        description="Train from a YAML recipe; append section.key=value to override settings, "
        "e.g. train.max_steps=2000 model.d_model=144. Several GPUs/processes: "
        "torchrun --nproc_per_node N -m dmao.cli.main train ... (docs/distributed.md).",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML recipe (default: built-in)")
    p.add_argument("--out", type=Path, default=None, help="run folder (required to train)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (recipe, its base: chain and the overrides) as YAML, "
        "the way RUN/config.yaml records it, and exit without training",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import yaml

    from dmao.config import load_config
    from dmao.config.loading import config_to_dict
    from dmao.training.recipe import TrainingRecipe

    config = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        return 0
    if args.out is None:
        raise ValueError("--out: a run folder is required to train (e.g. --out exp/run1)")
    recipe = TrainingRecipe(config, args.out, resume=args.resume)
    try:
        recipe.setup()
        result = recipe.train()
    finally:
        recipe.cleanup()  # also closes the torchrun process group when setup fails
    if result and recipe.dist.is_main:  # under torchrun every rank returns the same result
        print(
            f"final dev WER {100 * result['wer']:.2f} % CER {100 * result['cer']:.2f} % "
            f"(run folder: {args.out})"
        )
    return 0
