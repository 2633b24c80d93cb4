"""Smoothed component importance scores read from the normal backward pass (METHOD.md §3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    - No host–device synchronisation on a scoring step (issue 17): the scores are computed on the
      weights' device, concatenated, and copied to host memory with one non-blocking copy (pinned
      memory on CUDA). The measurement is finished (the finiteness check and the EMA, on the CPU)
      when anything reads the tracker — :attr:`scores`, :meth:`due`, :meth:`state_dict` — or
      :meth:`resolve` is called; the training hooks do it at the next step, when the copy has long
      arrived. A measurement that turns out non-finite then is discarded as before (its step no
      longer counts as measured), but :meth:`measure` had already returned True for it.

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
        self._scores: dict[str, Tensor] = {}
        self.last_measured_step: int | None = None
        self.num_measurements = 0
        self._pending: _Pending | None = None
        self.on_resolve: Callable[[int, dict[str, Tensor]], None] | None = None
        """Called with (step, smoothed scores) when a measurement is kept (the metric log)."""

    @property
    def scores(self) -> dict[str, Tensor]:
        """The smoothed scores, ``{module: (num_components,)}`` float32 on the CPU."""
        self.resolve()
        return self._scores

    @scores.setter
    def scores(self, value: dict[str, Tensor]) -> None:
        self._pending = None
        self._scores = value

    def due(self, step: int) -> bool:
        """Whether a measurement is due at optimizer step ``step``."""
        self.resolve()
        return (
            self.last_measured_step is None
            or step - self.last_measured_step >= self.score_every_steps
        )

    @torch.no_grad()
    def measure(self, step: int) -> bool:
        """Read every module's component scores now (finished later, see the class); returns
        True (a measurement was taken)."""
        self.resolve()
        if self.metric == "random":
            # Nothing to read: the ranking is drawn at the event (DmaoAllocator); measuring
            # keeps the bookkeeping (due steps, counts) the same as for the real metrics.
            current = [torch.zeros(m.num_components()) for m in self.modules.values()]
        else:
            current = [m.component_scores(self.metric).float() for m in self.modules.values()]
        self._pending = _Pending.start(step, current, self.last_measured_step,
                                       self.num_measurements)  # fmt: skip
        self.last_measured_step = step
        self.num_measurements += 1
        return True

    def resolve(self) -> int | None:
        """Finish a pending measurement: returns its step if it was kept, None if there was none
        or it was discarded (non-finite)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        current = dict(zip(self.modules, pending.finish(), strict=True))
        if not all(torch.isfinite(s).all() for s in current.values()):
            self.last_measured_step = pending.previous_step
            self.num_measurements = pending.previous_count
            return None
        if not self._scores:
            self._scores = current
        else:
            for name, s in current.items():
                if self._scores[name].shape != s.shape:
                    raise RuntimeError(
                        f"DMAO scores of {name}: {tuple(s.shape)} components now but "
                        f"{tuple(self._scores[name].shape)} before; reset() after a reallocation"
                    )
                self._scores[name] = self.ema_beta * self._scores[name] + (1 - self.ema_beta) * s
        if self.on_resolve is not None:
            self.on_resolve(pending.step, self._scores)
        return pending.step

    def maybe_measure(self, step: int) -> bool:
        """:meth:`measure` if :meth:`due`; returns whether a measurement was taken."""
        return self.due(step) and self.measure(step)

    def reset(self) -> None:
        """Forget all scores (after a reallocation the components are different)."""
        self._pending = None
        self._scores = {}
        self.last_measured_step = None
        self.num_measurements = 0

    def state_dict(self) -> dict[str, Any]:
        self.resolve()
        return {
            "scores": {name: s.clone() for name, s in self._scores.items()},
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
        self._pending = None
        self._scores = {name: s.clone().float() for name, s in scores.items()}
        self.last_measured_step = state["last_measured_step"]
        self.num_measurements = int(state["num_measurements"])


class _Pending:
    """One measurement on its way to the host: all modules' scores concatenated into one buffer
    (pinned on CUDA), filled by one non-blocking copy, with a CUDA event marking its arrival."""

    def __init__(
        self,
        step: int,
        host: Tensor,
        sizes: list[int],
        event: Any,
        previous_step: int | None,
        previous_count: int,
    ) -> None:
        self.step, self.host, self.sizes, self.event = step, host, sizes, event
        self.previous_step, self.previous_count = previous_step, previous_count

    @classmethod
    def start(
        cls, step: int, current: list[Tensor], previous_step: int | None, previous_count: int
    ) -> _Pending:
        sizes = [int(s.numel()) for s in current]
        filled = [s.reshape(-1) for s in current if s.numel() > 0]
        device = filled[0].device if filled else torch.device("cpu")
        flat = torch.cat([s.to(device) for s in filled]) if filled else torch.zeros(0)
        host = torch.empty(flat.shape, dtype=torch.float32, pin_memory=device.type == "cuda")
        host.copy_(flat, non_blocking=device.type == "cuda")  # (sum of components,)
        event = None
        if device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        return cls(step, host, sizes, event, previous_step, previous_count)

    def finish(self) -> list[Tensor]:
        """The per-module scores on the CPU (waits for the copy if it has not arrived)."""
        if self.event is not None:
            self.event.synchronize()
        return list(torch.split(self.host, self.sizes))
