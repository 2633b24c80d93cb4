"""``dmao bench``'s measurement: N training steps of a recipe, their speed, FLOPs and MFU.

What is measured (docs/performance.md, "dmao bench"):

1. ``recipe.setup()`` of :class:`~dmao.training.recipe.TrainingRecipe` in a scratch run folder
   (the recipe's data, cached features, tokeniser, model, optimizer, DMAO allocator).
2. ``warmup_steps`` untimed steps (allocator growth, kernel selection, compilation); the last of
   them runs under :class:`~dmao.perf.counters.OpCounter`: ATen ops per step.
3. ``steps`` timed steps (:class:`~dmao.perf.driver.StepDriver`, data loading included). Before
   the first of them, and after a DMAO event, the FLOPs of one micro-batch are counted on a copy
   of the model (:func:`~dmao.perf.flops.count_flops`, untimed, random state restored); every
   step's FLOPs are that count scaled to its batch shapes (:meth:`FlopCount.scaled_to`).
4. The peak: on CPU a matrix product in the step's precision, timed right after every step
   (excluded from the step times); MFU is the median over steps of (step FLOP/s ÷ matmul
   FLOP/s), on the wall clock and on the process CPU clock. On CUDA the dense peak of the card
   from :data:`~dmao.perf.peaks.GPU_PEAK_TFLOPS`; MFU is the window's FLOPs ÷ its wall time ÷
   peak.
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dmao.config import ExperimentConfig
from dmao.perf.counters import OpCounter, PeakMemory, current_rss_bytes, release_free_memory
from dmao.perf.driver import Batch, StepDriver
from dmao.perf.flops import FlopCount, count_flops
from dmao.perf.loader import LoaderResult, loader_throughput
from dmao.perf.peaks import gpu_peak_flops, make_matmul, peak_precision, time_matmul
from dmao.training.compilation import compiled_graphs
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe

__all__ = ["BenchOptions", "BenchResult", "run_benchmark"]


@dataclass
class BenchOptions:
    """How ``dmao bench`` measures."""

    steps: int = 20
    """Timed optimizer steps."""
    warmup_steps: int = 3
    """Untimed steps first (>= 1: ops are counted on the last of them)."""
    matmul_size: int = 2048
    """CPU peak: an ``n × n @ n × n`` product after every step (2048: ~85 ms at 200 GFLOP/s)."""
    matmul_repeats: int = 3
    """CPU peak: products per step; their median time is that step's peak."""
    peak_tflops: float | None = None
    """Use this peak instead of the matmul (CPU) or the table (CUDA)."""
    loader_workers: tuple[int, ...] = ()
    """Also measure the training data loader with each of these worker counts (item 6)."""
    loader_batches: int = 30
    """Timed batches per loader measurement."""
    transient_steps: int = 30
    """Steps after a DMAO event counted into its transient (``post_event_transient_s``)."""
    profile_after_event: int = 0
    """Profile (``torch.profiler``, CPU and CUDA) this many steps after the first DMAO event of
    the timed window; the top operators by self time are reported (``post_event_profile``)."""

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.warmup_steps < 1:
            raise ValueError(
                f"--warmup-steps must be >= 1 (ops are counted on the last warm-up step), got "
                f"{self.warmup_steps}"
            )
        if self.matmul_size < 1 or self.matmul_repeats < 1:
            raise ValueError("--matmul-size and --matmul-repeats must be >= 1")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ValueError(f"--peak-tflops must be > 0, got {self.peak_tflops}")
        if any(w < 0 for w in self.loader_workers) or self.loader_batches < 1:
            raise ValueError("--loader-workers must be >= 0 and --loader-batches >= 1")


@dataclass
class BenchResult:
    """The numbers of one ``dmao bench`` run (``to_dict`` is its ``--json`` object)."""

    mfu: float | None
    steps_per_s: float
    audio_s_per_s: float
    flops_per_step: float
    peak_flops: float | None
    padding_efficiency: float
    ops_per_step: int | None
    """None with ``train.compile`` (see :class:`~dmao.perf.counters.OpCounter`)."""
    peak_memory_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)
    loader: list[LoaderResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The eight required keys first, then the details."""
        out = {
            "mfu": self.mfu,
            "steps_per_s": self.steps_per_s,
            "audio_s_per_s": self.audio_s_per_s,
            "flops_per_step": self.flops_per_step,
            "peak_flops": self.peak_flops,
            "padding_efficiency": self.padding_efficiency,
            "ops_per_step": self.ops_per_step,
            "peak_memory_bytes": self.peak_memory_bytes,
            **self.extra,
        }
        if self.loader:
            out["loader"] = [r.to_dict() for r in self.loader]
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _shape(batch: Batch) -> tuple[int, int]:
    """``(B, T)`` of a batch's padded features."""
    features = batch["features"]
    return int(features.shape[0]), int(features.shape[1])


class _Clocks:
    """A lap timer on two clocks: wall and process-CPU time."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        """Seconds since the last lap (or construction), on both clocks."""
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def _count(driver: StepDriver, batch: Batch) -> FlopCount:
    """FLOPs of one forward + backward of ``batch`` on a copy of the model (without its hooks),
    with the random state restored: the training state stays as it was."""
    recipe = driver.recipe
    device = recipe.device
    model = copy.deepcopy(recipe.model)
    for module in model.modules():  # hooks (GradMax's statistics) belong to the real model
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
        module._backward_hooks.clear()
    B, T = _shape(batch)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return count_flops(lambda: driver.forward_backward_copy(model, batch), B, T)


def run_benchmark(
    config: ExperimentConfig,
    options: BenchOptions,
    run_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Set up the recipe ``config`` and measure ``options.steps`` training steps (module
    docstring). ``run_dir``: the scratch run folder (default: a temporary one, removed after)."""
    options.check()
    log = log or (lambda message: None)
    scratch = run_dir is None
    run_path = Path(tempfile.mkdtemp(prefix="dmao-bench-")) if scratch else Path(run_dir)
    release_free_memory()  # else memory freed earlier in this process can hide the steps
    baseline_rss = current_rss_bytes()
    recipe = TrainingRecipe(config, run_path)
    try:
        recipe.setup()
        return _measure(recipe, options, baseline_rss, log)
    finally:
        recipe.cleanup()
        if scratch:
            shutil.rmtree(run_path, ignore_errors=True)


@dataclass
class _Window:
    """What the timed steps recorded (per-step lists are one entry per step)."""

    step_flops: list[float] = field(default_factory=list)
    step_wall: list[float] = field(default_factory=list)
    """CPU: each step's wall seconds (batch fetch included); CUDA: its launch time only."""
    step_cpu: list[float] = field(default_factory=list)
    mm_wall: list[float] = field(default_factory=list)
    """CPU: the matmul's median wall seconds right after each step."""
    mm_cpu: list[float] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)
    real_frames: int = 0
    padded_frames: int = 0
    shapes: set[tuple[int, int]] = field(default_factory=set)
    """Distinct ``(B, T)`` of the timed batches."""
    event_steps: list[int] = field(default_factory=list)
    """Indices (into ``step_wall``) of the steps that ended with a DMAO event."""
    profile: list[dict[str, Any]] = field(default_factory=list)
    """``profile_after_event``: the top operators of the profiled steps."""
    audio_seconds: float = 0.0
    wall: float = 0.0
    """Seconds of the whole window without FLOP counting and matmuls (CUDA: synchronised)."""
    cpu: float = 0.0


STATIC_WARMUP_LIMIT = 500


def _warm_up(driver: StepDriver, options: BenchOptions) -> tuple[OpCounter, int]:
    """The untimed steps; the last one's ATen ops are counted (not with ``train.compile``: under
    an active dispatch mode torch.compile runs the step eagerly).

    With static shapes (``data.pad_to_bucket``) and a compiled forward, the warm-up goes on until
    every bucket's shape has been trained on (at most ``STATIC_WARMUP_LIMIT`` more steps), so that
    the timed window holds no compilation. Returns the op counter and the warm-up steps taken.
    """
    ops = OpCounter()
    shapes = getattr(driver.recipe.sampler, "shapes", None)
    unseen = set(shapes.shapes()) if shapes is not None and driver.compiled else set()
    i = 0
    while i < options.warmup_steps or (unseen and i < options.warmup_steps + STATIC_WARMUP_LIMIT):
        micro = driver.next_micro()
        unseen -= {_shape(b) for b in micro}
        if i < options.warmup_steps - 1 or driver.compiled:
            driver.step(micro)
        else:
            with ops:
                driver.step(micro)
        i += 1
    return ops, i


def _timed_steps(
    driver: StepDriver,
    options: BenchOptions,
    matmul: Callable[[], None] | None,
    memory: PeakMemory,
) -> _Window:
    """``options.steps`` timed steps; FLOPs counted on the first batch and after each event;
    on CPU the matmul after every step. Counting and matmuls are left out of the clocks."""
    device = driver.recipe.device
    w = _Window()
    count: FlopCount | None = None
    skipped_wall = skipped_cpu = 0.0
    _sync(device)
    window = _Clocks()
    profiler = _EventProfiler(device, options.profile_after_event)
    for _ in range(options.steps):
        profiler.before_step()
        clocks = _Clocks()
        micro = driver.next_micro()
        fetch = clocks.lap()
        skipped = (0.0, 0.0)
        if count is None:  # first timed step, or new shapes after a DMAO event
            _sync(device)
            clocks.lap()
            with memory.excluded():
                count = _count(driver, micro[0])
            w.counts.append(count.to_dict())
            _sync(device)
            skipped = clocks.lap()
        result = driver.step(micro)
        run = clocks.lap()
        w.step_wall.append(fetch[0] + run[0])
        w.step_cpu.append(fetch[1] + run[1])
        w.step_flops.append(sum(count.scaled_to(*_shape(b)) for b in micro))
        for b in micro:
            B, T = _shape(b)
            w.shapes.add((B, T))
            w.padded_frames += B * T
            w.real_frames += int(b["feature_lens"].sum())
        w.audio_seconds += result.audio_seconds
        if result.event:
            count = None
            w.event_steps.append(len(w.step_wall) - 1)
            profiler.arm()
        if matmul is not None and device.type == "cpu":
            wall, cpu = time_matmul(matmul, options.matmul_repeats)
            w.mm_wall.append(wall)
            w.mm_cpu.append(cpu)
            lap = clocks.lap()
            skipped = (skipped[0] + lap[0], skipped[1] + lap[1])
        skipped_wall += skipped[0]
        skipped_cpu += skipped[1]
    _sync(device)
    total = window.lap()
    w.wall, w.cpu = total[0] - skipped_wall, total[1] - skipped_cpu
    w.profile = profiler.finish()
    return w


class _EventProfiler:
    """``torch.profiler`` over the ``steps`` steps after the first DMAO event (armed by it)."""

    def __init__(self, device: torch.device, steps: int) -> None:
        self.device, self.steps = device, steps
        self.left = 0
        self.armed = False
        self.prof: Any = None

    def arm(self) -> None:
        if self.steps > 0 and self.prof is None and not self.armed:
            self.armed, self.left = True, self.steps

    def before_step(self) -> None:
        if self.armed and self.prof is None:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            self.prof = profile(activities=activities)
            self.prof.__enter__()
        elif self.prof is not None and self.left > 0:
            self.left -= 1
            if self.left == 0:
                self._stop()

    def _stop(self) -> None:
        _sync(self.device)
        self.prof.__exit__(None, None, None)
        self.armed = False

    def finish(self, top: int = 20) -> list[dict[str, Any]]:
        """The top operators by self time (device time on CUDA) of the profiled steps."""
        if self.prof is None:
            return []
        if self.armed:
            self._stop()
        cuda = self.device.type == "cuda"
        rows = []
        for e in self.prof.key_averages():
            rows.append({
                "name": e.key,
                "calls": e.count,
                "self_cpu_s": e.self_cpu_time_total / 1e6,
                "self_device_s": (getattr(e, "self_device_time_total", 0) or 0) / 1e6,
            })  # fmt: skip
        rows.sort(key=lambda r: r["self_device_s" if cuda else "self_cpu_s"], reverse=True)
        return rows[:top]


def _transient(w: _Window, steps: int) -> tuple[float | None, float | None]:
    """Seconds the ``steps`` steps after each DMAO event took beyond the median step before the
    first event, summed over events; and the steps/s of the window without those steps."""
    if not w.event_steps:
        return None, None
    before = w.step_wall[: w.event_steps[0] + 1]
    typical = statistics.median(before) if before else statistics.median(w.step_wall)
    after: set[int] = set()
    for e in w.event_steps:
        after.update(range(e + 1, min(e + 1 + steps, len(w.step_wall))))
    extra = sum(w.step_wall[i] - typical for i in after)
    rest = [t for i, t in enumerate(w.step_wall) if i not in after]
    return extra, len(rest) / max(sum(rest), 1e-12)


def _measure(
    recipe: TrainingRecipe, options: BenchOptions, baseline_rss: int, log: Callable[[str], None]
) -> BenchResult:
    device, cfg = recipe.device, recipe.config
    driver = StepDriver(recipe)
    graphs_before = compiled_graphs()
    start = time.perf_counter()
    ops, warmup_steps = _warm_up(driver, options)
    graphs_warm = compiled_graphs()
    _sync(device)
    log(f"warm-up: {warmup_steps} steps in {time.perf_counter() - start:.1f} s")

    precision = peak_precision(cfg.train.precision, device)
    matmul, matmul_flops = None, 0
    if device.type == "cpu" or options.peak_tflops is None:
        # CPU: the peak; CUDA: a check of the table, reported beside it.
        n = options.matmul_size if device.type == "cpu" else max(options.matmul_size, 8192)
        matmul, matmul_flops = make_matmul(n, precision, device)
    memory = PeakMemory(device, baseline_rss)
    memory.start()
    first_step = recipe.progress.step
    w = _timed_steps(driver, options, matmul, memory)
    peak_memory = memory.peak_bytes()

    gpu_matmul = None
    if device.type == "cuda" and matmul is not None:
        gpu_matmul = matmul_flops / time_matmul(matmul, 10)[0]
    peak, peak_source, mfu, mfu_cpu = _peak_and_mfu(options, device, precision, w, matmul_flops)
    transient = _transient(w, options.transient_steps)
    scores = [r for r in read_metrics(recipe.run_dir, "dmao_scores") if r["step"] >= first_step]
    loader = []
    train_rate = w.audio_seconds / max(w.wall, 1e-12)
    for workers in options.loader_workers:
        log(f"loader: {workers} worker(s), {options.loader_batches} batches")
        loader.append(loader_throughput(recipe, workers, options.loader_batches, train_rate))
    extra = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": cfg.train.precision,
        "peak_precision": precision,
        "peak_source": peak_source,
        "mfu_cpu_clock": mfu_cpu,
        "gpu_matmul_flops_measured": gpu_matmul,
        "threads": torch.get_num_threads(),
        "steps": options.steps,
        "warmup_steps": warmup_steps,
        "compile": cfg.train.compile,
        "compiled_graphs": compiled_graphs() - graphs_before,
        "compiled_graphs_timed": compiled_graphs() - graphs_warm,
        "distinct_shapes": len(w.shapes),
        "pad_to_bucket": cfg.data.pad_to_bucket,
        "wall_seconds": w.wall,
        "cpu_seconds": w.cpu,
        "audio_seconds": w.audio_seconds,
        "parameters": sum(p.numel() for p in recipe.model.parameters()),
        "vocab_size": recipe.tokenizer.vocab_size,
        "batch_seconds": cfg.data.max_batch_seconds,
        "micro_batch_seconds": recipe.micro_seconds,
        "micro_batches_per_step": recipe.accum_steps,
        "flop_counts": w.counts,
        "flops_extrapolation": "per micro-batch from the counted one: frontend x B*T, attention "
        "x B*T'^2, rest x B*T' (T' = T // 4)",
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "memory_method": memory.method,
        "top_ops": dict(ops.counts.most_common(15)),  # empty with compile
        "dmao_enabled": recipe.allocator is not None,
        "dmao_events": driver.events,
        "dmao_score_steps": len(scores),
        "dmao_event_steps": w.event_steps,
        "post_event_transient_s": transient[0],
        "transient_steps": options.transient_steps,
        "steps_per_s_without_transient": transient[1],
        "post_event_profile": w.profile,
        "step_wall_s": [round(t, 5) for t in w.step_wall],
        "bad_steps": driver.bad_steps,
        "torch": torch.__version__,
    }
    return BenchResult(
        mfu=mfu,
        steps_per_s=options.steps / max(w.wall, 1e-12),
        audio_s_per_s=train_rate,
        flops_per_step=statistics.fmean(w.step_flops),
        peak_flops=peak,
        padding_efficiency=w.real_frames / max(w.padded_frames, 1),
        ops_per_step=None if driver.compiled else ops.total,
        peak_memory_bytes=peak_memory,
        extra=extra,
        loader=loader,
    )


def _peak_and_mfu(
    options: BenchOptions, device: torch.device, precision: str, w: _Window, matmul_flops: int
) -> tuple[float | None, str, float | None, float | None]:
    """Peak FLOP/s, where it came from, MFU (wall clock) and, on CPU, MFU on the CPU clock."""
    achieved = sum(w.step_flops) / max(w.wall, 1e-12)
    if options.peak_tflops is not None:
        peak = options.peak_tflops * 1e12
        return peak, f"--peak-tflops {options.peak_tflops:g}", achieved / peak, None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        found = gpu_peak_flops(name, precision)
        if found is None:
            return None, f"no table entry for {name!r} (pass --peak-tflops)", None, None
        peak, card = found
        return peak, f"table: {card} dense {precision}", achieved / peak, None

    def median_ratio(steps: list[float], matmuls: list[float]) -> float:
        """Median over steps of (step FLOP/s) / (FLOP/s of the matmul right after it)."""
        return statistics.median(
            (f / max(s, 1e-12)) / (matmul_flops / max(m, 1e-12))
            for f, s, m in zip(w.step_flops, steps, matmuls, strict=True)
        )

    peak = statistics.median(matmul_flops / max(m, 1e-12) for m in w.mm_wall)
    n = round((matmul_flops / 2) ** (1 / 3))
    threads = torch.get_num_threads()
    source = f"measured: {n}^3 {precision} matmul after every step, {threads} thread(s)"
    return peak, source, median_ratio(w.step_wall, w.mm_wall), median_ratio(w.step_cpu, w.mm_cpu)
