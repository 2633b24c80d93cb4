"""Make an optimizer follow a reallocation: remap its per-parameter state, swap its parameters.

Known pain with pruning/growing libraries (RELIABILITY.md): after a resize the optimizer keeps the
stale parameter objects and the resized layers silently stop training. Here every replaced
parameter is swapped in ``param_groups`` at its old position, and its state tensors (Adam's
``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``: anything shaped like the parameter) are gathered
with the same index as the weights; scalar state such as ``step`` is kept as it is.

Where a state tensor is a running average of the gradient or of its square matters twice: when a
rebuild rescales a unit's gradient (``ParamRemap.moment_scale``, ``growth_init=split``) and for
``duplicate_moments=second``. Both know Adam's ``exp_avg`` (first power of the gradient),
``exp_avg_sq`` and ``max_exp_avg_sq`` (second power), and SGD's ``momentum_buffer`` (first
power); any other per-parameter state raises rather than being guessed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from dmao.method.units import ParamRemap

__all__ = ["remap_optimizer"]

# Power of the gradient each known state tensor averages (Adam/AdamW/NAdam/RAdam share the names).
_ADAM_GRADIENT_POWER = {"exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2}


def _gradient_power(optimizer: torch.optim.Optimizer, key: str) -> int:
    if key in _ADAM_GRADIENT_POWER:
        return _ADAM_GRADIENT_POWER[key]
    if key == "momentum_buffer" and isinstance(optimizer, torch.optim.SGD):
        return 1
    raise ValueError(
        f"DMAO cannot tell whether {type(optimizer).__name__} state {key!r} averages the gradient "
        f"or its square; growth_init=split and duplicate_moments=second need Adam-style or SGD "
        f"state"
    )


@torch.no_grad()
def remap_optimizer(
    optimizer: torch.optim.Optimizer, remaps: Iterable[ParamRemap], duplicate_moments: str = "copy"
) -> None:
    """Point ``optimizer`` at the new parameters of ``remaps`` and move their state along.

    Args:
        optimizer: any ``torch.optim`` optimizer whose state is per-parameter tensors shaped like
            the parameter plus scalars (Adam, AdamW, SGD with momentum, ...).
        remaps: what :meth:`AdaptableModule.reselect` returned, for every changed module.
        duplicate_moments: ``copy`` (new copies inherit the original's state), ``zeros`` or
            ``second`` (first moments zero, second moments the original's: see
            ``DmaoConfig.duplicate_moments`` for why).

    State tensors are new objects; the old ones are left untouched so a caller can roll back by
    restoring the old ``param_groups`` lists and state mapping.
    """
    if duplicate_moments not in ("copy", "zeros", "second"):
        raise ValueError(
            f"duplicate_moments must be copy, zeros or second, got {duplicate_moments!r}"
        )
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
                if r.moment_scale is not None:
                    # An average of the gradient's p-th power scales with the gradient's factor to
                    # the p: the state is what it would be had the unit always been split.
                    shape = [1] * moved.dim()
                    shape[r.dim] = -1
                    scale = r.moment_scale.to(moved).reshape(shape)
                    moved.mul_(scale ** _gradient_power(optimizer, key))
                view = (slice(None),) * r.dim + (r.fresh.to(value.device),)
                if duplicate_moments == "zeros" or (
                    duplicate_moments == "second"
                    and bool(r.fresh.any())
                    and _gradient_power(optimizer, key) == 1
                ):
                    moved[view] = 0  # "second": the original's second moment stays
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
