"""A learning-rate re-warm-up after a DMAO event, for all parameters or for the new units only.

After an event the optimizer meets weights it has no history for (new units; with the reference
mode, whole rebuilt modules). Re-warming the learning rate is the usual remedy for that (e.g. the
warm-up after a restart, or RigL's treatment of regrown connections that start at zero); here the
learning rate of the chosen entries is multiplied by ``j / k`` on the ``j``-th of the ``k`` steps
after the event.

How: the multiplier is applied to the *update*, ``p ← p_before + m · (p_after − p_before)``, with a
snapshot taken right before ``optimizer.step()``. For SGD and Adam(W) — weight decay included —
that is exactly a per-entry learning-rate multiplier ``m`` (their update is proportional to the
learning rate) and it works per unit, inside a tensor, where a per-parameter-group learning rate
could not; the optimizer's moments are updated as usual. Memory: one copy of the ramped tensors,
only during the ``k`` steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["REWARMUP_SCOPES", "UpdateRamp"]

REWARMUP_SCOPES: tuple[str, ...] = ("all", "new")


class UpdateRamp:
    """Scales the updates of chosen tensor entries by ``j / steps`` for ``steps`` steps.

    Args:
        steps: length k of the ramp (0 = never active).
        scope: ``all`` (every parameter) or ``new`` (only the positions of new units).
    """

    def __init__(self, steps: int, scope: str = "new") -> None:
        if steps < 0:
            raise ValueError(f"rewarmup steps must be >= 0, got {steps}")
        if scope not in REWARMUP_SCOPES:
            raise ValueError(
                f"rewarmup scope must be one of {list(REWARMUP_SCOPES)}, got {scope!r}"
            )
        self.steps = steps
        self.scope = scope
        self.done = steps  # steps of the current ramp already made; == steps: inactive
        # name → (dim or None for the whole tensor, (size,) bool mask along dim or None)
        self.targets: dict[str, tuple[int | None, Tensor | None]] = {}
        self._snapshot: dict[str, Tensor] = {}

    @property
    def active(self) -> bool:
        return self.done < self.steps

    def start(self, targets: dict[str, tuple[int | None, Tensor | None]]) -> None:
        """Begin a ramp over ``targets``: parameter name → (dim, mask of ramped positions along
        dim), or (None, None) for a whole tensor."""
        if self.steps == 0:
            return
        self.targets = {n: (d, None if m is None else m.detach().cpu().bool()) for n, (d, m)
                        in targets.items() if m is None or bool(m.any())}  # fmt: skip
        self.done = 0 if self.targets else self.steps
        self._snapshot = {}

    @torch.no_grad()
    def before_step(self, lookup: Callable[[str], nn.Parameter]) -> None:
        """Remember the ramped tensors; call right before ``optimizer.step()``."""
        if self.active:
            self._snapshot = {n: lookup(n).detach().clone() for n in self.targets}

    @torch.no_grad()
    def after_step(self, lookup: Callable[[str], nn.Parameter]) -> None:
        """Scale the update just made; call right after ``optimizer.step()`` (a no-op without a
        snapshot, e.g. after a skipped step, or when called twice)."""
        if not self.active or not self._snapshot:
            return
        self.done += 1
        multiplier = self.done / self.steps
        for name, (dim, mask) in self.targets.items():
            p, before = lookup(name), self._snapshot[name]
            ramped = before + multiplier * (p.detach() - before)
            if mask is None:
                p.copy_(ramped)
            else:
                index = mask.nonzero().flatten().to(p.device)
                p.index_copy_(dim, index, ramped.index_select(dim, index))
        self._snapshot = {}
        if not self.active:
            self.targets = {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "targets": {n: (d, m) for n, (d, m) in self.targets.items()},
        }

    def load_state_dict(self, state: dict[str, Any], names: Iterable[str]) -> None:
        """Restore a ramp; ``names`` are the parameter names that exist now (checked)."""
        self.targets = {n: (d, m) for n, (d, m) in state.get("targets", {}).items()}
        # A ramp without targets is inactive, whatever length it was saved with (a shared prefix
        # trained without re-warm-up saves done = 0 = its steps).
        self.done = int(state.get("done", self.steps)) if self.targets else self.steps
        unknown = sorted(set(self.targets) - set(names))
        if unknown:
            raise ValueError(f"DMAO re-warm-up state names unknown parameters: {unknown[:3]}")
        self._snapshot = {}
