"""Drive a set-up :class:`~dmao.training.recipe.TrainingRecipe` one optimizer step at a time.

A step is the body of ``TrainingRecipe.train``'s loop, calling the recipe's own pieces in the same
order: batches from its sampler and loader, ``_forward_backward`` (autocast, CTC loss, backward,
the gradient norm and the host synchronisation that agrees on "non-finite"), the bad-step path,
DMAO's ``after_backward`` (scoring when due), clipping, the optimizer and scheduler steps, and
DMAO's ``after_step`` (a due reallocation event). Left out are what does not recur every step:
the logging window, validation, checkpoints and the progress bar. This module only reads and
calls the recipe; it changes nothing in :mod:`dmao.training`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any

import torch

from dmao.training.precision import clip_to_norm
from dmao.training.recipe import TrainingRecipe

__all__ = ["StepDriver", "StepResult"]

Batch = dict[str, Any]


class _StderrBar:
    """Stands in for the recipe's tqdm bar (its ``_echo`` writes DMAO events there): stderr, so
    that ``dmao bench --json`` keeps stdout for its one JSON object."""

    def write(self, message: str) -> None:
        print(message, file=sys.stderr)

    def close(self) -> None:
        pass


class StepResult:
    """What one driven step did."""

    __slots__ = ("audio_seconds", "bad", "event")

    def __init__(self, audio_seconds: float, bad: bool, event: bool) -> None:
        self.audio_seconds = audio_seconds
        self.bad = bad
        """Non-finite loss or gradient: the update was skipped (as in training)."""
        self.event = event
        """A DMAO event replaced layers after this step (new shapes: FLOPs must be recounted)."""


class StepDriver:
    """One optimizer step at a time of ``recipe`` (after ``recipe.setup()``), as ``train()`` runs
    it.

    The forward runs through ``recipe.train_model``, compiled as the recipe's ``train.compile``
    asks, and after a DMAO event through the module the recipe builds then, as in training.

    Args:
        recipe: a set-up recipe (single process).
    """

    def __init__(self, recipe: TrainingRecipe) -> None:
        if recipe.dist.distributed:
            raise ValueError("dmao bench runs in one process; start it without torchrun")
        self.recipe = recipe
        self.compiled = recipe.config.train.compile != "none"
        recipe._bar = _StderrBar()  # what recipe._echo writes to (set by train() otherwise)
        recipe.model.train()
        self._batches: Iterator[Batch] = recipe._batches()
        self.events = 0
        self.bad_steps = 0

    def next_micro(self) -> list[Batch]:
        """The next step's micro-batches (``recipe.accum_steps``: ``train.accum_grad_steps``, or
        more with ``data.auto_batch``)."""
        n = self.recipe.accum_steps
        return [next(self._batches) for _ in range(n)]

    def step(self, micro: list[Batch]) -> StepResult:
        """One optimizer step on ``micro``, the loop body of ``TrainingRecipe.train``."""
        r = self.recipe
        out = r._forward_backward(micro, False)
        if out.bad:
            r._skip_bad_step(micro, out)
            self.bad_steps += 1
            return StepResult(out.audio_seconds, bad=True, event=False)
        r.progress.consecutive_bad_steps = 0
        if r.dmao is not None:
            r.dmao.after_backward(r.progress.step)
        clip = r.config.optim.grad_clip_norm
        clip_to_norm(r.model, clip if clip > 0 else math.inf, out.grad_norm)
        r.scaler.step(r.optimizer)
        r.scaler.update()
        r.scheduler.step()
        r.progress.step += 1
        r.progress.audio_seconds += out.audio_seconds
        event = False
        if r.dmao is not None and r.dmao.after_step(r.progress.step, r.optimizer, r.device):
            r.train_model = r._training_module()
            self.events += 1
            event = True
        return StepResult(out.audio_seconds, bad=False, event=event)

    def forward_backward_copy(self, model: torch.nn.Module, batch: Batch) -> None:
        """Forward + CTC + backward of ``batch`` through ``model`` (a copy of the recipe's model),
        under the recipe's autocast; the training state is not touched."""
        loss, tokens, _, _ = self.recipe._ctc_loss(batch, model)
        (loss / max(tokens, 1)).backward()
