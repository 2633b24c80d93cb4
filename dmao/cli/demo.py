"""``dmao demo`` — the main job on the built-in corpus, no data of your own needed.

Synthesises the offline corpus when absent, trains the shipped small Conformer-CTC recipe on CPU,
decodes the test split and prints a WER table. Re-running resumes an interrupted run and skips a
finished one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["register", "shipped_config"]


def shipped_config(name: str) -> Path:
    """Path of a YAML recipe shipped inside the package, e.g. ``synthetic/demo.yaml``."""
    from importlib import resources

    path = Path(str(resources.files("dmao") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {name!r} (looked at {path})")
    return path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate on the built-in corpus (CPU, ~15 min)")
    p.add_argument("--out", type=Path, default=Path("exp/demo"), help="run folder")
    p.add_argument("--config", type=Path, default=None, help="default: synthetic/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.config import load_config
    from dmao.decoding.decode_run import decode_split
    from dmao.evaluation.wer import format_results_table
    from dmao.training.checkpoint import latest_checkpoint, load_checkpoint
    from dmao.training.recipe import TrainingRecipe

    config = load_config(args.config or shipped_config("synthetic/demo.yaml"), args.overrides)
    start = time.time()
    last = latest_checkpoint(args.out / "checkpoints")
    done = last is not None and load_checkpoint(last)["step"] >= config.train.max_steps
    if done:
        print(f"{args.out} is already trained; decoding only")
    else:
        recipe = TrainingRecipe(config, args.out, resume=last is not None)
        recipe.setup()
        try:
            recipe.train()
        finally:
            recipe.cleanup()
    rows = []
    for split in config.data.test_parts + config.data.dev_parts:
        result = decode_split(args.out, split)
        rows.append(result.score.table_row(f"conformer-ctc ({result.method})", split))
    minutes = (time.time() - start) / 60
    print()
    print(format_results_table(rows))
    print(
        f"\nrun folder: {args.out} ({minutes:.1f} min); TensorBoard: "
        f"tensorboard --logdir {args.out / 'tensorboard'}"
    )
    return 0
