"""Learning-rate schedules (``optim.schedule``), as fractions of the total step count so that the
same recipe holds for any run length, world size or gradient accumulation.

- ``one_cycle`` (default; the RWTH reference setups, METHOD.md §6): three linear pieces — rise
  from ``peak * initial_ratio`` to ``peak`` over ``warmup_fraction`` of training, fall back to
  ``peak * initial_ratio`` over the same fraction, then decay to ``final_lr`` over the rest.
- ``warmup_cosine`` (NeMo's CosineAnnealing with warm-up): the same linear rise, then a half
  cosine from ``peak`` to ``final_lr`` at the last step.
- ``noam`` (ESPnet's WarmupLR, the Transformer's inverse square root): the same linear rise, then
  ``peak * sqrt(warmup_steps / step)``; it never reaches ``final_lr``.

For the last two a ``warmup_fraction`` of 0.05–0.1 is usual (one-cycle's is 0.45).
"""

from __future__ import annotations

import math

import torch

from dmao.config.schema import LR_SCHEDULES, OptimConfig

__all__ = [
    "build_scheduler",
    "noam_lr",
    "one_cycle_lr",
    "schedule_lr",
    "warmup_cosine_lr",
]


def one_cycle_lr(
    step: int,
    total_steps: int,
    peak_lr: float,
    *,
    initial_lr_ratio: float = 0.1,
    final_lr: float = 1e-6,
    warmup_fraction: float = 0.45,
) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 < warmup_fraction <= 0.5:
        raise ValueError(f"warmup_fraction must be in (0, 0.5], got {warmup_fraction}")
    low = peak_lr * initial_lr_ratio
    rise_end = warmup_fraction * total_steps
    fall_end = 2 * warmup_fraction * total_steps
    t = min(max(step, 0), total_steps)
    if t < rise_end:
        return low + (peak_lr - low) * t / rise_end
    if t < fall_end:
        return peak_lr + (low - peak_lr) * (t - rise_end) / (fall_end - rise_end)
    tail = total_steps - fall_end
    if tail <= 0:
        return low
    return low + (final_lr - low) * (t - fall_end) / tail


def _rise(t: float, warmup: float, low: float, peak: float) -> float:
    return low + (peak - low) * t / warmup


def _warmup_steps(total_steps: int, warmup_fraction: float) -> float:
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 < warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction}")
    return warmup_fraction * total_steps


def warmup_cosine_lr(
    step: int,
    total_steps: int,
    peak_lr: float,
    *,
    initial_lr_ratio: float = 0.1,
    final_lr: float = 1e-6,
    warmup_fraction: float = 0.05,
) -> float:
    """Linear rise to ``peak_lr`` over ``warmup_fraction`` of the steps, then a half cosine to
    ``final_lr`` at ``total_steps``."""
    warmup = _warmup_steps(total_steps, warmup_fraction)
    t = min(max(step, 0), total_steps)
    if t < warmup:
        return _rise(t, warmup, peak_lr * initial_lr_ratio, peak_lr)
    progress = (t - warmup) / (total_steps - warmup)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def noam_lr(
    step: int,
    total_steps: int,
    peak_lr: float,
    *,
    initial_lr_ratio: float = 0.1,
    warmup_fraction: float = 0.05,
) -> float:
    """Linear rise to ``peak_lr`` over ``warmup_fraction`` of the steps, then ``peak_lr *
    sqrt(warmup_steps / step)``."""
    warmup = _warmup_steps(total_steps, warmup_fraction)
    t = min(max(step, 0), total_steps)
    if t < warmup:
        return _rise(t, warmup, peak_lr * initial_lr_ratio, peak_lr)
    return peak_lr * math.sqrt(warmup / t)


def schedule_lr(optim: OptimConfig, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total_steps`` under
    ``optim.schedule`` and its settings."""
    common = dict(initial_lr_ratio=optim.initial_lr_ratio, warmup_fraction=optim.warmup_fraction)
    if optim.schedule == "one_cycle":
        return one_cycle_lr(step, total_steps, optim.peak_lr, final_lr=optim.final_lr, **common)
    if optim.schedule == "warmup_cosine":
        return warmup_cosine_lr(step, total_steps, optim.peak_lr, final_lr=optim.final_lr, **common)
    if optim.schedule == "noam":
        return noam_lr(step, total_steps, optim.peak_lr, **common)
    raise ValueError(
        f"optim.schedule must be one of {', '.join(LR_SCHEDULES)}, got {optim.schedule!r}"
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, optim: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`schedule_lr` (the optimizer's base LR becomes ``peak_lr``; the
    scheduler's state, its last step, is part of every checkpoint)."""
    for group in optimizer.param_groups:
        group["lr"] = optim.peak_lr
        group["initial_lr"] = optim.peak_lr
    # LambdaLR evaluates step 0 when built: a bad setting fails here, not at the first step.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule_lr(optim, step, total_steps) / optim.peak_lr
    )
