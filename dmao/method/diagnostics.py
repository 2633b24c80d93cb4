"""Is duplicated capacity really used? Counting units that are still identical twins.

A duplicated unit starts as an exact copy of its original (``growth_init=copy``). The two copies
see the same inputs and — with copied Adam moments — get the same updates, so they stay identical
unless something stochastic and per-unit (dropout on the hidden units of an FFN, attention dropout
per head) pulls them apart. Nothing does in a Conformer convolution module: its duplicated
channels stay exact twins forever, and the "grown" capacity computes nothing new (measured on the
small recipe: every duplicated conv channel was still a twin after 1,190 more steps, RESULTS.md).
:func:`twin_units` makes that visible; ``growth_init=copy_noise``, ``random`` or ``fresh`` avoids
it (``function_preserving`` does not: both copies keep the same input weights).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmao.method.units import _get

__all__ = ["twin_units", "unit_input_vectors"]


def unit_input_vectors(module: nn.Module) -> Tensor:
    """``(width, F)``: each unit's input-projection weights (every ``role="input"`` slice of
    ``module.unit_slices()``, GLU halves and head rows included) as one vector per unit."""
    width = module.width
    parts = []
    for s in module.unit_slices():
        if s.role != "input":
            continue
        t = _get(module, s.path).detach().movedim(s.dim, 0)
        t = t.reshape(s.groups, width, s.unit_size, -1)
        parts.append(t.permute(1, 0, 2, 3).reshape(width, -1))  # (width, groups*unit_size*rest)
    if not parts:
        raise ValueError(f"{type(module).__name__} declares no input slice (role='input')")
    return torch.cat(parts, dim=1)


def twin_units(module: nn.Module, min_cosine: float = 0.999) -> int:
    """Number of units whose input weights have cosine similarity ≥ ``min_cosine`` with another
    unit of the same module (a duplicated pair that never diverged counts 2)."""
    if module.width < 2:
        return 0
    vectors = nn.functional.normalize(unit_input_vectors(module).float(), dim=1)  # (W, F)
    similarity = vectors @ vectors.T  # (W, W)
    similarity.fill_diagonal_(-1.0)
    return int((similarity.max(dim=1).values >= min_cosine).sum())
