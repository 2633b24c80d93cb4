"""The one-cycle learning-rate schedule of the RWTH reference setups (METHOD.md §6).

Three linear pieces over the optimizer steps: rise from ``peak * initial_ratio`` to ``peak`` over
``warmup_fraction`` of training, fall back to ``peak * initial_ratio`` over the same fraction, then
decay to ``final_lr`` over the rest. Expressed as fractions of the total step count so that the same
recipe holds for any run length, world size or gradient accumulation.
"""

from __future__ import annotations

import torch

__all__ = ["build_one_cycle_scheduler", "one_cycle_lr"]


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


def build_one_cycle_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    peak_lr: float,
    *,
    initial_lr_ratio: float = 0.1,
    final_lr: float = 1e-6,
    warmup_fraction: float = 0.45,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose factor times ``peak_lr`` is :func:`one_cycle_lr`.

    The optimizer's base LR must be ``peak_lr``; the scheduler's state (last step) is part of every
    checkpoint.
    """
    for group in optimizer.param_groups:
        group["lr"] = peak_lr
        group["initial_lr"] = peak_lr

    def factor(step: int) -> float:
        return (
            one_cycle_lr(
                step,
                total_steps,
                peak_lr,
                initial_lr_ratio=initial_lr_ratio,
                final_lr=final_lr,
                warmup_fraction=warmup_fraction,
            )
            / peak_lr
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
