"""``dmao`` — the command-line entry point. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dmao import __version__
from dmao.cli import (
    bench,
    compare,
    decode,
    demo,
    export,
    info,
    lm,
    prepare,
    report,
    results,
    score,
    significance,
    train,
    transcribe,
    tune,
    validate,
)
from dmao.training.checkpoint import CheckpointError

__all__ = ["main"]

_COMMANDS = (
    prepare,
    validate,
    train,
    decode,
    tune,
    results,
    score,
    significance,
    info,
    report,
    compare,
    demo,
    export,
    transcribe,
    lm,
    bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmao",
        description="Dynamic Model Architecture Optimization for CTC speech recognition.",
    )
    parser.add_argument("--version", action="version", version=f"dmao {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`dmao ... | head`): no traceback; stdout is pointed at
        # /dev/null so that the interpreter's final flush does not fail again (Python's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (
        FileNotFoundError,
        FileExistsError,
        ValueError,
        CheckpointError,
        ModuleNotFoundError,
    ) as err:
        # Bad input, or an optional package missing: one clear line, no traceback (-v: the
        # traceback).
        if args.verbose:
            raise
        print(f"dmao {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
