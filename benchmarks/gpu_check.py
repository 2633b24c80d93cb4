"""GPU readiness check: the d = 384, 12-layer Conformer recipe trained with and without DMAO.

    python benchmarks/gpu_check.py [--out exp/gpu_check] [--steps 300] [--hours 2]
                                   [--precision bf16] [--dry-run] [key=value ...]

1. Synthesises the built-in corpus (``--hours`` of espeak-ng speech) and its fbank features with
   one job per CPU core, timed.
2. Trains ``model.name=conformer_ctc_d384`` (12 blocks, d = 384, characters) for ``--steps``
   optimizer steps twice in this process: the baseline, and DMAO with one reallocation event at
   half of the steps moving 15 % of the adaptable parameters (METHOD.md §5).
3. Reports per run: steady-state steps/s and audio seconds per second (from the metric
   timestamps after the first ``--warmup-steps`` steps: start-up, cuDNN autotuning and the
   allocator's first growth are excluded), the same over the whole loop, peak GPU memory
   (``torch.cuda.max_memory_allocated``), dev WER at the end and the parameter count; writes them
   to ``OUT/gpu_check.json`` (after each run, so an interrupted check keeps what it measured)
   and prints a Markdown row for BENCHMARKS.md.

``--dry-run`` runs the same code on the CPU with a tiny corpus (0.02 h), a tiny model and 4
steps, so the check is known to work before a GPU is available (tested in CI). Extra
``key=value`` arguments override the recipe (e.g. ``data.max_batch_seconds=400``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dmao.config import load_config
from dmao.data.pipeline import load_parts
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe

# The d = 384 recipe at GPU batch sizes. 300 s of audio per step keeps an H100 busy (measured
# budget: see docs/distributed.md); characters avoid training a BPE model in a timed check.
GPU_OVERRIDES = [
    "model.name=conformer_ctc_d384",
    "model.d_model=384",
    "model.num_layers=12",
    "model.head_dim=64",
    "model.conv_kernel_size=31",
    "model.frontend_channels=[32, 64, 64, 32]",
    "tokenizer.kind=char",
    "data.max_batch_seconds=300",
    "data.num_buckets=10",
    "data.num_workers=4",
    "train.max_valid_utterances=200",
]

# The same code path at toy size on the CPU (--dry-run).
DRY_RUN_OVERRIDES = [
    "model.name=conformer_ctc_d384",
    "model.d_model=32",
    "model.num_layers=2",
    "model.head_dim=16",
    "model.conv_kernel_size=7",
    "model.frontend_channels=[4, 4, 4, 4]",
    "tokenizer.kind=char",
    "data.max_batch_seconds=8",
    "data.num_buckets=2",
    "data.num_workers=0",
    "train.max_valid_utterances=8",
    "train.device=cpu",
    "train.num_threads=1",
]

# One event at half of the steps moving 15 % of the adaptable parameters.
DMAO_OVERRIDES = [
    "dmao.enabled=true",
    "dmao.num_events=1",
    "dmao.last_event_fraction=0.5",
    "dmao.total_fraction=0.15",
    "dmao.granularity=4",
]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("exp/gpu_check"), help="work folder")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=20, help="steps left out of steady rates")
    p.add_argument("--hours", type=float, default=2.0, help="hours of synthetic speech")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--dry-run", action="store_true", help="tiny CPU version of the check")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    args = p.parse_args(argv)
    if args.dry_run:
        args.steps, args.warmup_steps, args.hours = 4, 1, min(args.hours, 0.02)
    return args


def _rates(run: Path, warmup_steps: int, settle_steps: int = 30) -> dict[str, float]:
    """Steady-state steps/s and audio s/s from the train records (one per ``log_every_steps``),
    and the one-off cost of a DMAO event.

    The windows ending within ``settle_steps`` after an event are left out of the steady rates:
    the first steps with new layer widths are slow on a GPU (new kernel shapes: on an H200 the
    10 steps after the event took ~11 s instead of ~1 s). ``event_transient_s`` is their time
    beyond what the steady rate predicts (0 without an event).
    """
    records = read_metrics(run, "train")
    events = [r["step"] for r in read_metrics(run, "dmao_event")]
    after = [r for r in records if r["step"] >= warmup_steps]
    if len(after) < 2:
        after = records
    if len(after) < 2:
        nan = float("nan")
        return {"steady_steps_per_s": nan, "steady_audio_s_per_s": nan, "event_transient_s": nan}
    # Each record's audio_s_per_s covers the window since the previous record.
    windows = list(itertools.pairwise(after))

    def settling(b: dict[str, Any]) -> bool:
        return any(e < b["step"] <= e + settle_steps for e in events)

    steady = [(a, b) for a, b in windows if not settling(b)] or windows
    seconds = max(sum(b["time"] - a["time"] for a, b in steady), 1e-9)
    steps = sum(b["step"] - a["step"] for a, b in steady)
    audio = sum(b["audio_s_per_s"] * (b["time"] - a["time"]) for a, b in steady)
    transient = sum(
        (b["time"] - a["time"]) - (b["step"] - a["step"]) * seconds / max(steps, 1)
        for a, b in windows
        if settling(b)
    )
    return {
        "steady_steps_per_s": steps / seconds,
        "steady_audio_s_per_s": audio / seconds,
        "event_transient_s": transient,
    }


def run_one(name: str, overrides: list[str], out: Path, warmup_steps: int) -> dict[str, Any]:
    """Train one run in this process; its throughput, memory and result."""
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time (the corpus is kept)
    config = load_config(None, overrides)
    cuda = config.train.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    recipe = TrainingRecipe(config, run_dir)
    start = time.perf_counter()
    recipe.setup()
    setup_s = time.perf_counter() - start
    try:
        valid = recipe.train()
    finally:
        recipe.cleanup()
    summary = json.loads((run_dir / "train_summary.json").read_text())
    result = {
        "setup_seconds": round(setup_s, 1),
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
        "steps_per_s": summary["steps"] / max(summary["train_seconds"], 1e-9),
        "audio_s_per_s": summary["audio_seconds"] / max(summary["train_seconds"], 1e-9),
        **_rates(run_dir, warmup_steps),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "parameters": summary["parameters"],
        "dmao_events": summary["dmao_events"],
        "dev_wer": valid.get("wer"),
        "device": str(recipe.device),
    }
    del recipe
    gc.collect()
    return result


def markdown_row(report: dict[str, Any]) -> str:
    """``| device | precision | steps | base steps/s | base audio s/s | base GiB | DMAO ... |
    DMAO event transient s | total s |``."""

    def cells(r: dict[str, Any]) -> list[str]:
        mem = r["peak_gpu_memory_gib"]
        return [
            f"{r['steady_steps_per_s']:.2f}",
            f"{r['steady_audio_s_per_s']:.0f}",
            "–" if mem is None else f"{mem:.1f}",
        ]

    runs = report["runs"]
    row = [report["device_name"], report["precision"], str(report["steps"])]
    for name in ("baseline", "dmao"):
        if name in runs:
            row += cells(runs[name])
    if "dmao" in runs:
        row.append(f"{runs['dmao']['event_transient_s']:.1f}")
    row.append(f"{report['total_seconds']:.0f}")
    return "| " + " | ".join(row) + " |"


MARKDOWN_HEADER = (
    "| device | precision | steps | steps/s | audio s/s | peak GiB | DMAO steps/s "
    "| DMAO audio s/s | DMAO peak GiB | DMAO event s | total s |\n|" + "---|" * 11
)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    base = DRY_RUN_OVERRIDES if args.dry_run else GPU_OVERRIDES
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; use --dry-run for the CPU path", file=sys.stderr)
        return 2
    common = [
        "data.corpus=synthetic",
        f"data.corpus_dir={args.out / 'corpus'}",
        f"data.manifest_dir={args.out / 'manifests'}",
        f"data.synthetic_hours={args.hours}",
        *base,
        f"train.precision={args.precision}",
        f"train.max_steps={args.steps}",
        f"train.valid_every_steps={args.steps}",
        f"train.checkpoint_every_steps={args.steps}",
        f"train.log_every_steps={1 if args.dry_run else 10}",
        "dmao.score_every_steps=10",
        "train.progress_bar=false",
        *args.overrides,
    ]
    config = load_config(None, common)
    start = time.perf_counter()
    # Synthesis and features with every core, before the timed runs (the recipe reuses them).
    load_parts(config.data, [*config.data.train_parts, *config.data.dev_parts],
               num_jobs=max(1, min(os.cpu_count() or 1, 16)))  # fmt: skip
    corpus_s = time.perf_counter() - start
    cuda = torch.cuda.is_available() and config.train.device != "cpu"
    report: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "precision": args.precision,
        "steps": args.steps,
        "hours": args.hours,
        "corpus_seconds": round(corpus_s, 1),
        "overrides": common,
        "runs": {},
    }
    path = args.out / "gpu_check.json"
    for name, extra in (("baseline", []), ("dmao", DMAO_OVERRIDES)):
        report["runs"][name] = run_one(name, common + extra, args.out, args.warmup_steps)
        report["total_seconds"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(report, indent=1))
    print(MARKDOWN_HEADER)
    print(markdown_row(report))
    print(f"gpu_check: {path} ({report['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
