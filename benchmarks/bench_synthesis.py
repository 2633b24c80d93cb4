"""Throughput of the synthetic corpus: utterances and audio seconds per wall-clock second.

    python benchmarks/bench_synthesis.py --hours 0.2 --num-jobs 2

Times one end-to-end ``prepare_synthetic`` call into a fresh temporary folder (planning, worker
start-up, synthesis, resampling, noise, FLAC writing, transcripts), so the numbers are what a user
waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from dmao.data.synthetic import prepare_synthetic, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.2, help="corpus size in hours")
    parser.add_argument("--num-jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--always-use-workers",
        action="store_true",
        help=f"start --num-jobs workers even below {render.MIN_JOBS_FOR_WORKERS} utterances "
        "(by default small corpora are synthesised in-process, which is faster)",
    )
    args = parser.parse_args()
    if args.always_use_workers:
        render.MIN_JOBS_FOR_WORKERS = 0

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp) / "corpus"
        start = time.perf_counter()
        prepare_synthetic(out_dir, hours=args.hours, seed=args.seed, num_jobs=args.num_jobs)
        wall_seconds = time.perf_counter() - start
        marker = json.loads((out_dir / ".complete").read_text())

    utterances = sum(split["utterances"] for split in marker["stats"].values())
    audio_seconds = marker["total_seconds"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    in_process = args.num_jobs <= 1 or utterances < render.MIN_JOBS_FOR_WORKERS
    how = "this process" if in_process else f"{args.num_jobs} worker processes"
    print(f"hours={args.hours} num_jobs={args.num_jobs} seed={args.seed}: synthesised in {how}")
    print(
        f"utterances: {utterances}, audio: {audio_seconds / 3600:.3f} h, wall: {wall_seconds:.2f} s"
    )
    print(
        f"throughput: {utterances / wall_seconds:.1f} utterances/s, "
        f"{audio_seconds / wall_seconds:.0f} audio seconds per wall second"
    )


if __name__ == "__main__":
    main()
