"""``data.auto_batch``: split a recipe's batch into micro-batches that fit the device.

A recipe's ``data.max_batch_seconds`` (× ``train.accum_grad_steps``) is a training hyperparameter:
the LR schedule was tuned for it. What the device decides is only how that batch is computed:
in one forward/backward when it fits, else in ``n`` micro-batches of ``max_batch_seconds / n``
seconds with gradient accumulation (the loss is normalised by the tokens of the whole step): the
same audio per update, though not the same utterances in the same steps (the sampler cuts
``max_batch_seconds / n`` batches). ``n`` is the smallest that fits.

How "fits" is measured (:func:`probe_peak_bytes`): one forward, CTC loss and backward of the real
model, under the run's precision, on a synthetic batch of ``⌊seconds / longest⌋`` utterances of
the longest training utterance's length (at a fixed number of seconds, the longest utterances
need the most memory: attention is quadratic in length). Its memory (CUDA: the measured peak;
CPU: an estimate from what autograd saves, see there) plus AdamW's two moments (8 bytes per
parameter, not allocated before the first step) must stay under the budget:
``data.auto_batch_memory_fraction`` of the device's memory (CUDA: the card's
total; CPU: ``MemAvailable`` at setup), or ``data.auto_batch_memory_gib`` when set. A CUDA
out-of-memory error counts as "does not fit".

Decisions:
- Powers of two first (n = 1, 2, 4, …), then the smallest fitting n between the last two: few
  probes, each at most one batch.
- The decision is written to ``RUN/auto_batch.json`` and a resumed run reuses it without probing,
  so the micro-batches, and with them the data order, are those of the interrupted run.
- The probe leaves no trace: gradients are dropped and the global random state is restored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dmao.training.precision import autocast

__all__ = [
    "BatchSplit",
    "choose_split",
    "device_budget_bytes",
    "probe_peak_bytes",
    "resolve_batching",
]

MAX_SPLIT = 1024


@dataclass
class BatchSplit:
    """How a step's batch is computed: ``accum`` micro-batches of ``micro_seconds`` each."""

    micro_seconds: float
    accum: int
    budget_bytes: int
    probes: list[dict[str, float]] = field(default_factory=list)
    """Every probe: seconds, peak bytes (incl. the optimizer state), fits."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_budget_bytes(device: torch.device, fraction: float, gib: float = 0.0) -> int:
    """The memory a training step may use: ``gib`` GiB if > 0, else ``fraction`` of the CUDA
    card's memory or of the CPU's available memory."""
    if gib > 0:
        return int(gib * 2**30)
    if not 0 < fraction <= 1:
        raise ValueError(f"data.auto_batch_memory_fraction must be in (0, 1], got {fraction}")
    if device.type == "cuda":
        _, total = torch.cuda.mem_get_info(device)
        return int(fraction * total)
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(fraction * int(line.split()[1]) * 1024)
    raise RuntimeError("data.auto_batch on CPU needs /proc/meminfo (or data.auto_batch_memory_gib)")


def probe_peak_bytes(
    model: nn.Module,
    *,
    seconds: float,
    utterance_frames: int,
    num_features: int,
    vocab_size: int,
    device: torch.device,
    dtype: torch.dtype,
    frame_shift: float = 0.01,
) -> int | None:
    """Memory of one training step of ``model`` on ``⌊seconds / utterance⌋`` utterances of
    ``utterance_frames`` frames; None on CUDA out-of-memory.

    CUDA: the peak ``max_memory_allocated`` of a forward + CTC + backward (weights, gradients,
    activations, workspaces) plus AdamW's two moments. CPU, where no allocator reports a peak
    (the resident set keeps freed memory): the bytes autograd saves for the backward (every
    distinct storage that is not a parameter, counted by a ``saved_tensors_hooks``) plus 16
    bytes per parameter (fp32 weight, gradient, two moments) — an estimate that leaves out the
    short-lived buffers of single operations. The gradients are dropped afterwards and the random
    state is restored.
    """
    batch = max(1, math.floor(seconds / (utterance_frames * frame_shift)))
    params = [p for p in model.parameters() if p.requires_grad]
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(0)
        features = torch.randn(batch, utterance_frames, num_features, device=device)
        lens = torch.full((batch,), utterance_frames, dtype=torch.int64, device=device)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                with autocast(device, dtype):
                    log_probs, out_lens = model(features, lens)  # (B, T', V)
                labels = max(1, int(out_lens.min()) // 4)
                targets = torch.randint(1, vocab_size, (batch, labels), device=device)
                loss = F.ctc_loss(
                    log_probs.float().transpose(0, 1),
                    targets,
                    out_lens,
                    torch.full((batch,), labels, dtype=torch.int64, device=device),
                    reduction="sum",
                    zero_infinity=True,
                )
            loss.backward()
            peak: int | None
            if cuda:
                torch.cuda.synchronize(device)
                peak = int(torch.cuda.max_memory_allocated(device))
            else:
                peak = sum(saved.values()) + 8 * sum(p.numel() for p in params)
        except torch.cuda.OutOfMemoryError:
            peak = None
        finally:
            for p in params:
                p.grad = None
            if cuda:
                torch.cuda.empty_cache()
    if peak is None:
        return None
    return peak + 8 * sum(p.numel() for p in params)  # AdamW's exp_avg and exp_avg_sq


def choose_split(batch_seconds: float, budget_bytes: int, peak_bytes: Any) -> BatchSplit:
    """The smallest ``n`` with ``peak_bytes(batch_seconds / n) <= budget_bytes``.

    Args:
        batch_seconds: the recipe's batch (``data.max_batch_seconds``).
        budget_bytes: what a step may use.
        peak_bytes: ``seconds -> bytes | None`` (None: out of memory), e.g. a partial
            :func:`probe_peak_bytes`.

    Raises:
        ValueError: not even ``batch_seconds / MAX_SPLIT`` fits.
    """
    probes: list[dict[str, float]] = []

    def fits(n: int) -> bool:
        seconds = batch_seconds / n
        peak = peak_bytes(seconds)
        ok = peak is not None and peak <= budget_bytes
        probes.append({"seconds": seconds, "peak_bytes": -1 if peak is None else peak, "fits": ok})
        return ok

    n = 1
    while not fits(n):
        if n >= MAX_SPLIT:
            raise ValueError(
                f"data.auto_batch: not even {batch_seconds / n:.2f} s of audio per micro-batch "
                f"fits in {budget_bytes / 2**30:.2f} GiB; lower the model size or raise "
                "data.auto_batch_memory_fraction / data.auto_batch_memory_gib"
            )
        n *= 2
    low, high = n // 2 + 1, n  # n/2 did not fit (n == 1: nothing to search)
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return BatchSplit(batch_seconds / high, high, budget_bytes, probes)


def load_or_choose(run_dir: Path, choose: Any) -> BatchSplit:
    """``RUN/auto_batch.json`` if it exists (a resumed run), else ``choose()`` written there."""
    path = run_dir / "auto_batch.json"
    if path.is_file():
        return BatchSplit(**json.loads(path.read_text()))
    split = choose()
    path.write_text(json.dumps(split.to_dict(), indent=1))
    return split


def resolve_batching(
    config: Any,
    model: nn.Module,
    longest_seconds: float,
    vocab_size: int,
    device: torch.device,
    dist: Any,
    run_dir: Path,
) -> tuple[float, int]:
    """``(micro-batch seconds, micro-batches per step)`` of a run: the config's
    ``(data.max_batch_seconds, train.accum_grad_steps)``, or with ``data.auto_batch`` the split
    that fits (decided on rank 0, reused from ``RUN/auto_batch.json`` on resume, the same on every
    rank)."""
    from dmao.data.features import FRAME_SHIFT_S, NUM_MEL_BINS
    from dmao.training.precision import PRECISIONS

    data, train = config.data, config.train
    if not data.auto_batch:
        return data.max_batch_seconds, train.accum_grad_steps
    frames = max(1, round(longest_seconds / FRAME_SHIFT_S))
    fraction, gib = data.auto_batch_memory_fraction, data.auto_batch_memory_gib
    budget = device_budget_bytes(device, fraction, gib)

    def peak(seconds: float) -> int | None:
        return probe_peak_bytes(
            model, seconds=seconds, utterance_frames=frames, num_features=NUM_MEL_BINS,
            vocab_size=vocab_size, device=device, dtype=PRECISIONS[train.precision],
            frame_shift=FRAME_SHIFT_S,
        )  # fmt: skip

    def decide() -> BatchSplit:
        return load_or_choose(run_dir, lambda: choose_split(data.max_batch_seconds, budget, peak))

    split = dist.broadcast_object(dist.run_on_main(decide))
    return split.micro_seconds, train.accum_grad_steps * split.accum
