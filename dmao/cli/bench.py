"""``dmao bench --config RECIPE [key=value ...] --steps N [--device cpu|cuda] [--json]`` —
training speed of a recipe: steps/s, audio s/s, FLOPs per step, MFU, padding, ops, memory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["format_table", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure training speed and MFU of a recipe",
        description="Train N steps of the recipe's model on its data (after warm-up steps) with "
        "the training code of `dmao train` and report steps/s, audio s/s, model FLOPs per step, "
        "the device's peak, MFU, padding efficiency, ATen ops per step and peak memory "
        "(docs/performance.md, 'dmao bench'). On a shared CPU run it with OMP_NUM_THREADS=1 "
        "train.num_threads=1 under nice.",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML recipe (default: built-in)")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps (default 20)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=None,
        help="train.device (default: the recipe's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="scratch run folder to keep (default: a temporary one)",
    )
    p.add_argument(
        "--matmul-size",
        type=int,
        default=2048,
        help="CPU peak: n of the n x n matmul timed after every step (default 2048)",
    )
    p.add_argument("--matmul-repeats", type=int, default=3, help="CPU peak: matmuls per step")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak to divide by instead of the measured (CPU) or table (GPU) one",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="dynamic",
        default=None,
        choices=["none", "dynamic", "static", "cudagraphs"],
        help="train.compile for the benchmark (bare --compile: dynamic; static and cudagraphs "
        "need data.pad_to_bucket=true); default: the recipe's",
    )
    p.add_argument(
        "--loader",
        action="store_true",
        help="also measure the data loader alone (cuts/s, audio s/s) per worker count",
    )
    p.add_argument(
        "--loader-workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="worker counts for --loader (default 0 1 2)",
    )
    p.add_argument("--loader-batches", type=int, default=30, help="timed batches per --loader run")
    p.add_argument(
        "--transient-steps",
        type=int,
        default=30,
        help="steps after a DMAO event counted into its post-event transient (default 30)",
    )
    p.add_argument(
        "--profile-after-event",
        type=int,
        default=0,
        metavar="N",
        help="torch.profiler over the N steps after the first DMAO event; the top operators by "
        "self time are reported (post_event_profile)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.config import load_config
    from dmao.perf import BenchOptions, run_benchmark

    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    if args.compile is not None:
        overrides.append(f"train.compile={args.compile}")
    options = BenchOptions(
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        matmul_size=args.matmul_size,
        matmul_repeats=args.matmul_repeats,
        peak_tflops=args.peak_tflops,
        loader_workers=tuple(args.loader_workers) if args.loader else (),
        loader_batches=args.loader_batches,
        transient_steps=args.transient_steps,
        profile_after_event=args.profile_after_event,
    )
    options.check()  # before the (slow) setup
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"--config {args.config}: no such file")
    config = load_config(args.config, overrides)
    result = run_benchmark(
        config, options, args.out, log=lambda message: print(message, file=sys.stderr)
    )
    report = result.to_dict()
    report["config"] = str(args.config) if args.config else None
    report["overrides"] = overrides
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_table(report: dict[str, Any]) -> str:
    """The human-readable report of ``dmao bench`` (a two-column table, then the loader's)."""
    mfu = report["mfu"]
    cpu_mfu = report.get("mfu_cpu_clock")
    rows = [
        ("device", f"{report['device_name']} ({report['device']}), {report['threads']} thread(s)"),
        ("precision", f"{report['precision']} (peak column {report['peak_precision']})"),
        ("model", f"{report['parameters']:,} parameters, compile={report['compile']} "
         f"({report['compiled_graphs']} graph(s) compiled, "
         f"{report['compiled_graphs_timed']} while timed)"),
        ("steps", f"{report['steps']} timed after {report['warmup_steps']} warm-up"),
        ("steps/s", f"{report['steps_per_s']:.3f}"),
        ("audio s/s", f"{report['audio_s_per_s']:.1f}"),
        ("FLOPs per step", _si(report["flops_per_step"], "FLOP")),
        ("achieved", _si(report["flops_per_step"] * report["steps_per_s"], "FLOP/s")),
        ("peak", f"{_si(report['peak_flops'], 'FLOP/s')} ({report['peak_source']})"),
        ("MFU", "–" if mfu is None else f"{mfu:.3f}"
         + ("" if cpu_mfu is None else f" (CPU clock {cpu_mfu:.3f})")),
        ("padding efficiency", f"{report['padding_efficiency']:.3f} real / padded frames, "
         f"{report['distinct_shapes']} batch shape(s), pad_to_bucket={report['pad_to_bucket']}"),
        ("ATen ops per step", "– (not countable with --compile)" if report["ops_per_step"]
         is None else f"{report['ops_per_step']:,}"),
        ("peak memory", f"{report['peak_memory_bytes'] / 2**20:,.0f} MiB "
         f"({report['memory_method']})"),
    ]  # fmt: skip
    if report.get("dmao_event_steps"):
        transient = report["post_event_transient_s"]
        rows.append((
            "DMAO events",
            f"after timed step(s) {report['dmao_event_steps']}; post-event transient "
            f"{transient:.2f} s, {report['steps_per_s_without_transient']:.3f} steps/s without it",
        ))  # fmt: skip
    if report["dmao_enabled"]:
        rows.append(
            (
                "DMAO",
                f"{report['dmao_score_steps']} scoring steps, "
                f"{report['dmao_events']} event(s) in the window",
            )
        )
    if report["bad_steps"]:
        rows.append(("skipped steps", f"{report['bad_steps']} (non-finite)"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'what':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    if report.get("loader"):
        lines += ["", "| loader workers | startup s | cuts/s | audio s/s | ÷ training audio s/s |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in report["loader"]:
            lines.append(
                f"| {r['workers']} | {r['startup_s']:.2f} | {r['cuts_per_s']:.1f} | "
                f"{r['audio_s_per_s']:.1f} | {r['ratio_to_training']:.2f} |"
            )
    return "\n".join(lines)
