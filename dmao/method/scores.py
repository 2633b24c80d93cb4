"""Smoothed component importance scores read from the normal backward pass (METHOD.md §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dmao.method.units import AdaptableModule

__all__ = ["ScoreTracker"]


class ScoreTracker:
    """EMA ``S ← β·S + (1−β)·s`` of every component's score, per module.

    Call :meth:`maybe_measure` after ``backward()`` of an optimizer step and before gradient
    clipping and ``optimizer.step()`` (with gradient accumulation: after the last micro-batch). No
    extra backward pass is needed; under DDP the gradients are already averaged, so every rank
    computes the same scores.

    Decisions:
    - A measurement is due when none was taken since the last reset or ``score_every_steps`` have
      passed since the last one; a measurement with a non-finite score (a bad step the recipe will
      skip) is discarded, so the next step tries again.
    - The first measurement after a reset initialises ``S = s`` (an EMA started from zero would
      only rescale all scores alike, but ``S = s`` keeps them on the metric's own scale).

    Args:
        modules: the adaptable modules, by name (their order is the tie-break order of rankings).
        metric: ``taylor``, ``gradient`` or ``magnitude``.
        ema_beta: β.
        score_every_steps: optimizer steps between measurements.
    """

    def __init__(
        self,
        modules: Mapping[str, AdaptableModule],
        metric: str = "taylor",
        ema_beta: float = 0.1,
        score_every_steps: int = 100,
    ) -> None:
        self.modules = dict(modules)
        self.metric = metric
        self.ema_beta = ema_beta
        self.score_every_steps = score_every_steps
        self.scores: dict[str, Tensor] = {}
        self.last_measured_step: int | None = None
        self.num_measurements = 0

    def due(self, step: int) -> bool:
        """Whether a measurement is due at optimizer step ``step``."""
        return (
            self.last_measured_step is None
            or step - self.last_measured_step >= self.score_every_steps
        )

    @torch.no_grad()
    def measure(self, step: int) -> bool:
        """Read every module's component scores now; returns False if discarded (non-finite)."""
        if self.metric == "random":
            # Nothing to read: the ranking is drawn at the event (DmaoAllocator); measuring
            # keeps the bookkeeping (due steps, counts) the same as for the real metrics.
            current = {name: torch.zeros(m.num_components()) for name, m in self.modules.items()}
        else:
            current = {
                name: m.component_scores(self.metric).float().cpu()
                for name, m in self.modules.items()
            }
        if not all(torch.isfinite(s).all() for s in current.values()):
            return False
        if not self.scores:
            self.scores = current
        else:
            for name, s in current.items():
                if self.scores[name].shape != s.shape:
                    raise RuntimeError(
                        f"DMAO scores of {name}: {tuple(s.shape)} components now but "
                        f"{tuple(self.scores[name].shape)} before; reset() after a reallocation"
                    )
                self.scores[name] = self.ema_beta * self.scores[name] + (1 - self.ema_beta) * s
        self.last_measured_step = step
        self.num_measurements += 1
        return True

    def maybe_measure(self, step: int) -> bool:
        """:meth:`measure` if :meth:`due`; returns whether a measurement was taken."""
        return self.due(step) and self.measure(step)

    def reset(self) -> None:
        """Forget all scores (after a reallocation the components are different)."""
        self.scores = {}
        self.last_measured_step = None
        self.num_measurements = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "scores": {name: s.clone() for name, s in self.scores.items()},
            "last_measured_step": self.last_measured_step,
            "num_measurements": self.num_measurements,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        scores = dict(state["scores"])
        if scores and set(scores) != set(self.modules):
            raise ValueError(
                f"DMAO score state has modules {sorted(scores)} but the model has "
                f"{sorted(self.modules)}"
            )
        for name, s in scores.items():
            expected = self.modules[name].num_components()
            if s.shape != (expected,):
                raise ValueError(
                    f"DMAO score state for {name} has shape {tuple(s.shape)}, the module has "
                    f"{expected} components; was the model rebuilt with the saved architecture?"
                )
        self.scores = {name: s.clone().float() for name, s in scores.items()}
        self.last_measured_step = state["last_measured_step"]
        self.num_measurements = int(state["num_measurements"])
