"""Measuring training speed: FLOPs, MFU, ops per step, memory and loader throughput.

``dmao bench`` (:mod:`dmao.cli.bench`) runs :func:`run_benchmark`; docs/performance.md explains
what each number means and BENCHMARKS.md has the measurements. This package only reads and calls
the training code (:mod:`dmao.training`), so a benchmark measures what ``dmao train`` runs.
"""

from dmao.perf.bench import BenchOptions, BenchResult, run_benchmark
from dmao.perf.counters import OpCounter, PeakMemory
from dmao.perf.flops import FLOP_CORRECTIONS, FlopCount, count_flops
from dmao.perf.loader import LoaderResult, loader_throughput
from dmao.perf.peaks import GPU_PEAK_TFLOPS, gpu_peak_flops

__all__ = [
    "FLOP_CORRECTIONS",
    "GPU_PEAK_TFLOPS",
    "BenchOptions",
    "BenchResult",
    "FlopCount",
    "LoaderResult",
    "OpCounter",
    "PeakMemory",
    "count_flops",
    "gpu_peak_flops",
    "loader_throughput",
    "run_benchmark",
]
