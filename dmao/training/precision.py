"""Mixed precision and gradient-norm helpers of the training step.

``train.precision`` picks the autocast dtype of forward passes (fp32 = no autocast); fp16 also
needs a ``GradScaler`` (the recipe owns it). The gradient norm is computed before clipping as its
own step because all ranks must agree on "non-finite" before anyone clips or steps.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "autocast", "clip_to_norm", "total_norm"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``train.precision`` → autocast dtype (fp32: autocast off)."""


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """``torch.autocast`` for ``device`` in ``dtype``; a no-op context for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of ``grads`` (what ``clip_grad_norm_`` returns), as a 0-dim tensor."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads)
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def clip_to_norm(model: torch.nn.Module, max_norm: float, total_norm: float) -> None:
    """Scale the gradients by ``min(1, max_norm / total_norm)`` as ``clip_grad_norm_`` does,
    with the norm computed already (it was needed before clipping, to agree on skipping)."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.tensor(total_norm, dtype=torch.float32)
    if hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(coef.to(p.grad.device))
