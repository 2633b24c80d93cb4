"""Dropout whose mask comes from ``torch.rand`` instead of ``Tensor.bernoulli_`` on CPU.

On CPU, ``F.dropout`` draws its mask with ``bernoulli_``, which costs ~16 ns per element on this
machine (torch 2.9 and 2.13 alike); ``torch.rand`` + a comparison costs ~3 ns. Dropout was the
largest single op of a Conformer training step here (about 20 % of it, torchaudio's Conformer
the same; BENCHMARKS.md "Speed"). The mask has the same distribution: an element is kept when a
uniform draw in [0, 1) is >= p, i.e. with probability exactly 1 - p, and kept elements are scaled
by 1 / (1 - p). Only the random stream differs from ``F.dropout``'s. Other devices keep
``F.dropout`` (one fused kernel there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention_with_dropout", "dropout"]


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)`` with a faster mask on CPU; ``x`` of any shape.

    The mask is drawn in float32 even for bfloat16/float16 inputs, so ``p`` is not rounded to a
    coarse grid of probabilities.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    keep = torch.rand(x.shape, dtype=torch.float32, device=x.device).ge_(p)  # 1.0 = kept
    return x * keep.mul_(1.0 / (1.0 - p)).to(x.dtype)


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, p: float) -> Tensor:
    """softmax(q·kᵀ/√Dh, masked) with dropout on the weights, then · v (training only).

    What ``F.scaled_dot_product_attention(..., dropout_p=p)`` computes: on CPU a non-zero
    ``dropout_p`` sends SDPA to its math backend anyway (its fused CPU kernel has no dropout), and
    that backend also pays a "safe softmax" for all-masked rows (callers here never have one) and
    ``bernoulli_`` for the mask; this is ~13 % faster per call at d = 144, T = 375.

    Args:
        q, k, v: ``(B, H, T, Dh)``.
        key_mask: ``(B, T)`` bool, True = may be attended to; every row needs a True.
        p: dropout probability on the attention weights.

    Returns:
        ``(B, H, T, Dh)``.
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # (B, H, T, T)
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    weights = dropout(scores.softmax(dim=-1), p, True)  # (B, H, T, T)
    return torch.matmul(weights, v)  # (B, H, T, Dh)
