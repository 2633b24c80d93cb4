"""Interleaved timing for the speed benchmarks (imported by the ``bench_*.py`` scripts beside it).

The development machine is shared and noisy (a training run may hold both cores), so absolute
times drift by tens of percent within minutes. Systems are therefore never timed one after the
other: :func:`interleaved` runs one step of every system per round (A, B, A, B, ...) and the
reports are per-round ratios to the first system, whose median cancels most of the drift.

Two clocks are kept: wall time and the process's CPU time (``time.process_time``). With one
intra-op thread the CPU time counts only the work of the step itself, not the time the process
waited while other processes had the cores, so its ratios are far steadier on a loaded machine;
with several threads it also counts their spinning and is not a step time (use the wall ratios).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

__all__ = ["RoundTimes", "format_summary", "interleaved", "thread_note"]


class RoundTimes:
    """Seconds per step of each system, one entry per round (``times[name][round]``).

    ``clock`` selects what the statistics read: ``"wall"`` (``times``) or ``"cpu"`` (process CPU
    seconds, ``cpu_times``).
    """

    def __init__(self, names: Sequence[str], clock: str = "wall") -> None:
        self.names = list(names)
        self.wall_times: dict[str, list[float]] = {name: [] for name in names}
        self.cpu_times: dict[str, list[float]] = {name: [] for name in names}
        self.clock = clock

    @property
    def times(self) -> dict[str, list[float]]:
        return self.cpu_times if self.clock == "cpu" else self.wall_times

    def with_clock(self, clock: str) -> RoundTimes:
        """The same measurements read with another clock."""
        other = RoundTimes(self.names, clock)
        other.wall_times, other.cpu_times = self.wall_times, self.cpu_times
        return other

    def median(self, name: str) -> float:
        """Median seconds per step of ``name``."""
        return statistics.median(self.times[name])

    def ratios(self, name: str, reference: str) -> list[float]:
        """Per-round ``time(name) / time(reference)``: both ran back to back in the same round."""
        return [a / b for a, b in zip(self.times[name], self.times[reference], strict=True)]

    def median_ratio(self, name: str, reference: str) -> float:
        """Median over rounds of the per-round ratio ``name / reference``."""
        return statistics.median(self.ratios(name, reference))

    def ratio_range(self, name: str, reference: str) -> tuple[float, float]:
        """Lower and upper quartile of the per-round ratios (a spread, not a confidence bound)."""
        ratios = self.ratios(name, reference)
        if len(ratios) < 4:
            return min(ratios), max(ratios)
        q = statistics.quantiles(ratios, n=4)
        return q[0], q[2]


def interleaved(
    systems: dict[str, Callable[[], object]], rounds: int, warmup: int = 1, verbose: bool = True
) -> RoundTimes:
    """Time ``rounds`` steps of every system, interleaved, after ``warmup`` untimed rounds.

    The order within a round alternates (A B, then B A, ...) so that neither system always runs
    right after the other's cache-cold or allocator-heavy phase.
    """
    names = list(systems)
    result = RoundTimes(names)
    for r in range(warmup + rounds):
        order = names if r % 2 == 0 else names[::-1]
        row, cpu_row = {}, {}
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            systems[name]()
            row[name] = time.perf_counter() - start
            cpu_row[name] = time.process_time() - cpu_start
        if r >= warmup:
            for name in names:
                result.wall_times[name].append(row[name])
                result.cpu_times[name].append(cpu_row[name])
        if verbose:
            tag = "warm-up" if r < warmup else f"round {r - warmup + 1}/{rounds}"
            cells = ", ".join(
                f"{n} {row[n] * 1000:.0f} ms (CPU {cpu_row[n] * 1000:.0f})" for n in names
            )
            print(f"  {tag}: {cells}", flush=True)
    return result


def format_summary(times: RoundTimes, reference: str) -> str:
    """Per system and clock: median ms per step and median per-round ratio to ``reference``."""
    lines = []
    for clock in ("wall", "cpu"):
        t = times.with_clock(clock)
        for name in t.names:
            line = f"  {clock:<4} {name:<24} median {t.median(name) * 1000:8.1f} ms/step"
            if name != reference:
                lo, hi = t.ratio_range(name, reference)
                line += (
                    f"   ratio to {reference}: {t.median_ratio(name, reference):.3f}"
                    f" (quartiles {lo:.3f}-{hi:.3f}, {len(t.times[name])} rounds)"
                )
            lines.append(line)
    return "\n".join(lines)


def thread_note() -> str:
    """The torch version and intra-op thread count, for the head of every report."""
    return f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}"
