"""Where the training loop meets the DMAO allocator: scores logged, events run, checked and
recorded. The method itself (what an event does) lives in :mod:`dmao.method`; this is only the
recipe's side of it — metrics, the console, DDP agreement checks and ``architecture.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dmao.method import DmaoAllocator
from dmao.training.distributed import DistributedContext, parameter_digest

__all__ = ["DmaoHooks", "write_architecture"]


def write_architecture(model: nn.Module, run_dir: Path) -> None:
    """``RUN/architecture.json``: the per-layer widths a control or a decoder builds from."""
    with open(run_dir / "architecture.json", "w") as f:
        json.dump(model.architecture.to_dict(), f, indent=1)


class DmaoHooks:
    """The two calls a training step makes into DMAO.

    Args:
        allocator: the run's allocator.
        model: the (unwrapped) model whose modules the allocator edits.
        dist: the process group context (checks and DDP).
        metrics: the run's metric logger (``log(kind, step, **values)``).
        seed: ``train.seed``; an event's random draws are seeded by (seed, step), the same on
            every rank and untouched by the per-rank dropout/augmentation streams.
        echo: prints a line on the main rank.
    """

    def __init__(
        self,
        allocator: DmaoAllocator,
        model: nn.Module,
        dist: DistributedContext,
        metrics: Any,
        run_dir: Path,
        seed: int,
        echo: Callable[[str], None],
    ) -> None:
        self.allocator, self.model, self.dist = allocator, model, dist
        self.metrics, self.run_dir, self.seed, self.echo = metrics, run_dir, seed, echo
        # The mean smoothed score per module, per measurement (the trajectories `dmao report`
        # draws), logged when the measurement is finished on the host: not on the scoring step.
        allocator.tracker.on_resolve = self._log_scores

    def _log_scores(self, step: int, scores: dict[str, torch.Tensor]) -> None:
        self.metrics.log(
            "dmao_scores", step, **{name: float(s.mean()) for name, s in scores.items()}
        )

    def after_backward(self, step: int) -> None:
        """Finish the previous measurement (its copy to the host arrived long ago), then let the
        allocator measure when due (before clipping and the update)."""
        self.allocator.tracker.resolve()
        self.allocator.after_backward(step)

    def after_step(self, step: int, optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
        """Per-step work after the update, and a due event. Returns True if the model's
        parameters were replaced (the caller rebuilds its DDP wrapper).

        Under DDP every rank decides alone from the same averaged gradients; that the decisions
        (and afterwards the replicas) are identical is checked, not assumed."""
        allocator, dist = self.allocator, self.dist
        if not allocator.is_due(step):
            allocator.maybe_reallocate(step, optimizer)  # per-step hooks only, no event
            return False
        if dist.distributed:
            widths = {n: m.width for n, m in allocator.modules.items()}
            scores = {n: s.tolist() for n, s in allocator.tracker.scores.items()}
            dist.check_same(f"DMAO scores and widths before the event at step {step}",
                            (scores, widths))  # fmt: skip
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed * 100_003 + step)
            event = allocator.maybe_reallocate(step, optimizer)
        if event is None:
            return False
        if dist.distributed:
            decision = (event.dropped, event.duplicated, event.widths_after)
            dist.check_same(f"the DMAO decision at step {step}", decision)
            dist.check_same(f"model replicas after the DMAO event at step {step}",
                            parameter_digest(self.model))  # fmt: skip
        record = event.to_dict()
        self.metrics.log("dmao_event", step, **{k: v for k, v in record.items() if k != "step"})
        self.echo(
            f"step {step}: DMAO event: "
            + ", ".join(f"{k}={v}" for k, v in record.items() if isinstance(v, (int, float)))
        )
        if dist.is_main:
            write_architecture(self.model, self.run_dir)
        return True
