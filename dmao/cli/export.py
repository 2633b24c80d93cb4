"""``dmao export RUN --out DIR [--checkpoint best|last|PATH] [--avg N] [--int8]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmao.cli.checkpoint_args import add_checkpoint_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trained model as a self-contained folder (safetensors + ONNX)"
    )
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--out", type=Path, required=True, help="export folder to create")
    add_checkpoint_arguments(p)
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx: int8 weights (ONNX Runtime dynamic quantisation), "
        "~3.5x smaller and faster on CPU; `dmao transcribe --backend onnx-int8`",
    )
    p.add_argument("--force", action="store_true", help="replace an existing export at --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.export import export_run, load_exported

    if args.avg is not None and args.avg < 1:
        raise ValueError(f"--avg must be at least 1, got {args.avg}")
    start = time.perf_counter()
    checkpoint = args.checkpoint or "best"
    if args.avg is not None:  # as `dmao decode --avg`: ends at --checkpoint, by default the last
        from dmao.training.averaging import averaged_checkpoint

        checkpoint = str(averaged_checkpoint(args.run, args.avg, args.checkpoint or "last"))
    out = export_run(
        args.run,
        args.out,
        checkpoint=checkpoint,
        onnx=not args.no_onnx,
        int8=args.int8,
        overwrite=args.force,
        verbose=args.verbose,  # the ONNX exporter's own log lines only with `dmao -v export`
    )
    seconds = time.perf_counter() - start
    manifest = load_exported(out).manifest
    source = manifest["source"]
    print(
        f"exported {args.run} ({source['checkpoint']}, step {source['step']}) to {out} "
        f"in {seconds:.1f} s"
    )
    for name, entry in manifest["files"].items():
        print(f"  {name:<28} {entry['bytes']:>12,} bytes")
    if manifest["onnx"] is not None:
        print(f"  ONNX vs PyTorch: max |Δ log-prob| {manifest['onnx']['max_abs_diff']:.2e}")
    if manifest.get("onnx_int8") is not None:
        int8 = manifest["onnx_int8"]
        print(
            f"  int8 vs float32 ONNX: {int8['quantized_products']} matrix products in int8, "
            f"max |Δ log-prob| {int8['max_abs_diff']:.2e} on random input (the WER cost on real "
            "audio: benchmarks/bench_export.py)"
        )
    return 0
