"""``dmao transcribe --model DIR FILE...`` — prints ``FILE<TAB>text`` per file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files with an exported model")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="audio files, any format")
    p.add_argument("--model", type=Path, required=True, help="folder written by `dmao export`")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--method", choices=("greedy", "beam"), default=None, help="default: the run's")
    p.add_argument("--beam-size", type=int, default=None, help="default: the run's")
    p.add_argument("--device", default="cpu", help="torch backend device (cpu, cuda, ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Transcribe every file; unreadable ones are reported on stderr and make the exit code 1."""
    from dmao.export import Transcriber, load_exported

    exported = load_exported(args.model, device=args.device)
    transcriber = Transcriber(
        exported,
        backend=args.backend,
        method=args.method or exported.decode_method,
        beam_size=args.beam_size or exported.beam_size,
    )
    failed = 0
    for result in transcriber.transcribe_files(args.files):
        if isinstance(result, BaseException):
            failed += 1
            print(f"dmao transcribe: error: {result}", file=sys.stderr)
        else:
            print(f"{result.path}\t{result.text}", flush=True)
    return 1 if failed else 0
