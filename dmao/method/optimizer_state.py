"""Make an optimizer follow a reallocation: remap its per-parameter state, swap its parameters.

Known pain with pruning/growing libraries (RELIABILITY.md): after a resize the optimizer keeps the
stale parameter objects and the resized layers silently stop training. Here every replaced
parameter is swapped in ``param_groups`` at its old position, and its state tensors (Adam's
``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``: anything shaped like the parameter) are gathered
with the same index as the weights; scalar state such as ``step`` is kept as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from dmao.method.units import ParamRemap

__all__ = ["remap_optimizer"]


@torch.no_grad()
def remap_optimizer(
    optimizer: torch.optim.Optimizer, remaps: Iterable[ParamRemap], duplicate_moments: str = "copy"
) -> None:
    """Point ``optimizer`` at the new parameters of ``remaps`` and move their state along.

    Args:
        optimizer: any ``torch.optim`` optimizer whose state is per-parameter tensors shaped like
            the parameter plus scalars (Adam, AdamW, SGD with momentum, ...).
        remaps: what :meth:`AdaptableModule.reselect` returned, for every changed module.
        duplicate_moments: ``copy`` (new copies inherit the original's state) or ``zeros``.

    State tensors are new objects; the old ones are left untouched so a caller can roll back by
    restoring the old ``param_groups`` lists and state mapping.
    """
    replace: dict[int, nn.Parameter | None] = {}
    for r in remaps:
        if r.new is r.old:
            continue
        replace[id(r.old)] = r.new
        old_state = optimizer.state.pop(r.old, None)
        if old_state is None or r.new is None:
            continue
        new_state = {}
        for key, value in old_state.items():
            if torch.is_tensor(value) and value.shape == r.old.shape and value.dim() > 0:
                moved = value.index_select(r.dim, r.index.to(value.device))
                if duplicate_moments == "zeros":
                    view = (slice(None),) * r.dim + (r.fresh.to(value.device),)
                    moved[view] = 0
                new_state[key] = moved
            else:
                new_state[key] = value  # e.g. Adam's step count: kept (METHOD.md §4.6)
        optimizer.state[r.new] = new_state
    if not replace:
        return
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            new = replace.get(id(p), p)
            if new is not None:
                params.append(new)
        group["params"] = params
