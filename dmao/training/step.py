"""One optimizer step of :class:`~dmao.training.recipe.TrainingRecipe`: the batch stream, the CTC
loss under autocast and the forward/backward over the global batch (micro-batches, DDP, the values
all ranks agree on), as a mixin (the recipe owns the attributes).

One optimizer step (docs/distributed.md): every rank takes ``train.accum_grad_steps`` batches of
its shard, forwards them under autocast (``train.precision``) and back-propagates the summed CTC
loss divided by the number of target tokens of the GLOBAL batch (all ranks, all micro-batches), so
the update is the same however the global batch is split over processes and micro-steps. DDP
averages gradients in the last micro-step's backward (``no_sync`` before it). One all-reduce then
agrees on the loss, "non-finite loss or gradient on any rank" and "a rank got SIGTERM", so every
rank takes the same branch: skip the update, apply it, stop. Only rank 0 writes files and logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dmao.data.features import FRAME_SHIFT_S
from dmao.training.precision import autocast, total_norm

__all__ = ["StepMixin"]


@dataclass
class _StepOutcome:
    """One forward/backward over the global batch, with what all ranks agreed on."""

    loss_sum: float
    """Summed CTC loss of the global batch (meaningless when ``bad``)."""
    tokens: int
    utterances: int
    audio_seconds: float
    grad_norm: float
    bad: bool
    """Non-finite loss or gradient on some rank: every rank skips the update."""
    stop: bool
    """Some rank got SIGTERM/SIGINT: every rank commits and exits after this step."""


class StepMixin:
    """The batch stream and the forward/backward of one step, for
    :class:`~dmao.training.recipe.TrainingRecipe`."""

    # Set by TrainingRecipe (its __init__ and setup()).
    config: Any
    dist: Any
    device: torch.device
    autocast_dtype: torch.dtype | None
    model: Any
    train_model: torch.nn.Module
    optimizer: Any
    scaler: Any
    sampler: Any
    train_loader: Any
    train_cuts: Any
    tokenizer: Any
    progress: Any
    micro_seconds: float
    run_dir: Path
    _epoch_batches: int

    def _autocast(self) -> Any:
        return autocast(self.device, self.autocast_dtype)

    def _ctc_loss(
        self, batch: dict[str, Any], model: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """Forward the batch through ``model`` (default: the bare model): summed CTC loss, number
        of target tokens, and the model outputs ``log_probs (B, T', V)`` and ``out_lens (B,)``
        (validation decodes them)."""
        model = self.model if model is None else model
        non_blocking = self.device.type == "cuda"  # the loader pins memory on CUDA
        features = batch["features"].to(self.device, non_blocking=non_blocking)
        feature_lens = batch["feature_lens"].to(self.device, non_blocking=non_blocking)
        target_lens = batch["target_lens"].to(self.device, non_blocking=non_blocking)
        targets = batch["targets"].to(self.device, non_blocking=non_blocking)
        with self._autocast():
            log_probs, out_lens = model(features, feature_lens)  # (B, T', V), (B,)
        loss = F.ctc_loss(
            log_probs.float().transpose(0, 1),  # (T', B, V) as ctc_loss expects
            targets,
            out_lens,
            target_lens,
            blank=self.tokenizer.blank_id,
            reduction="sum",
            zero_infinity=False,  # infeasible utterances were filtered; inf means a real problem
        )
        return loss, int(batch["target_lens"].sum()), log_probs, out_lens

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless stream of training batches; the sampler owns order and epoch. Counts the
        batches the loop received in this epoch (loader workers draw from the sampler ahead)."""
        while True:
            self.sampler.set_epoch(self.progress.epoch)
            resumed_mid_epoch = self._epoch_batches > 0
            yielded = 0
            for batch in self.train_loader:
                self._epoch_batches += 1
                yielded += 1
                yield batch
            if yielded == 0 and not resumed_mid_epoch:
                # Without this the loop would start empty epochs forever: the sampler drops an
                # incomplete last batch, so a shard with less audio than one batch yields none.
                cfg = self.config.data
                seconds = sum(c.duration for c in self.train_cuts)
                raise ValueError(
                    f"the training data yields no batch: {len(self.train_cuts)} utterances, "
                    f"{seconds:.1f} s of audio (over {self.dist.world_size} rank(s)) do not fill "
                    f"one batch of data.max_batch_seconds={cfg.max_batch_seconds:g} s"
                    + (
                        f" (micro-batches of {self.micro_seconds:g} s)"
                        if self.micro_seconds != cfg.max_batch_seconds
                        else ""
                    )
                    + "; lower "
                    f"data.max_batch_seconds or add training data ({', '.join(cfg.train_parts)})"
                )
            self.progress.epoch += 1
            self._epoch_batches = 0

    def _forward_backward(self, micro: list[dict[str, Any]], stop_requested: bool) -> _StepOutcome:
        """Gradients of the global batch's per-token loss in ``.grad`` (unscaled, not clipped),
        and the values all ranks agreed on."""
        dist = self.dist
        local_tokens = sum(int(b["target_lens"].sum()) for b in micro)
        (global_tokens,) = dist.all_reduce_sum([local_tokens])
        global_tokens = max(int(global_tokens), 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        for i, batch in enumerate(micro):
            # DDP averages gradients over ranks in the last micro-batch's backward, so each
            # rank's loss is scaled by world_size: the result is d(loss sum)/d(weights) / tokens
            # of the global batch (left to right: exactly loss / tokens with one process).
            with dist.no_sync(self.train_model, skip=i < len(micro) - 1):
                batch_loss, _, _, _ = self._ctc_loss(batch, self.train_model)
                loss = batch_loss * dist.world_size / global_tokens
                self.scaler.scale(loss).backward()
            loss_sum += batch_loss.detach()
        self.scaler.unscale_(self.optimizer)  # a no-op unless fp16
        grad_norm = total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        local_loss = float(loss_sum)
        loss_bad = not math.isfinite(local_loss)
        totals = dist.all_reduce_sum(
            [
                0.0 if loss_bad else local_loss,
                float(loss_bad),
                float(not torch.isfinite(grad_norm)),
                float(stop_requested),
                float(sum(len(b["cut_ids"]) for b in micro)),
                float(sum(int(b["feature_lens"].sum()) for b in micro)) * FRAME_SHIFT_S,
            ]
        )
        return _StepOutcome(
            loss_sum=totals[0],
            tokens=global_tokens,
            utterances=int(totals[4]),
            audio_seconds=totals[5],
            grad_norm=float(grad_norm),
            bad=totals[1] > 0 or totals[2] > 0,
            stop=totals[3] > 0,
        )
