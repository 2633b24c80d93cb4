"""What a training run saves, restores and does with a bad step: the checkpoint side of
:class:`~dmao.training.recipe.TrainingRecipe`, as a mixin (the recipe owns the attributes)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dmao.config import config_from_dict, config_to_dict
from dmao.data.dataset import sampler_state_for_resume
from dmao.method.prefix import event_time_differences
from dmao.models.attention import legacy_qkv_modules
from dmao.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    link_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    step_checkpoint_path,
)
from dmao.training.data_setup import check_resume_compatible

if TYPE_CHECKING:
    from dmao.training.step import _StepOutcome

__all__ = ["Progress", "RunStateMixin"]

log = logging.getLogger("dmao.training.recipe")


@dataclass
class Progress:
    """Where a run is; checkpointed."""

    step: int = 0
    epoch: int = 0
    best_dev_wer: float = math.inf
    best_ema_dev_wer: float = math.inf
    """Of the running average of the weights (``train.ema_decay``), validated beside them."""
    consecutive_bad_steps: int = 0
    train_seconds: float = 0.0
    """Wall time spent in the training loop, summed over resumed sessions."""
    audio_seconds: float = 0.0
    """Audio of the applied updates, all ranks together, summed over resumed sessions."""


class RunStateMixin:
    """Checkpoints (:meth:`state_dict`, :meth:`save`, :meth:`load_state`) and the handling of a
    non-finite step, for :class:`~dmao.training.recipe.TrainingRecipe`."""

    # Set by TrainingRecipe (its __init__ and setup()).
    config: Any
    dist: Any
    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    sampler: Any
    allocator: Any
    ema: Any
    metrics: Any
    progress: Progress
    run_dir: Path
    checkpoint_dir: Path
    _epoch_batches: int

    def _skip_bad_step(self, micro: list[dict[str, Any]], out: _StepOutcome) -> None:
        """Drop the update of a non-finite step (on every rank), log it with the utterances of
        all ranks, stop after too many in a row. With fp16 an overflow also lowers the scale."""
        self.scaler.update()  # fp16: found_inf was recorded by unscale_, so the scale backs off
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.consecutive_bad_steps += 1
        local_ids = [cut_id for b in micro for cut_id in b["cut_ids"]]
        cut_ids = [c for ids in self.dist.all_gather_object(local_ids) for c in ids]
        record: dict[str, Any] = {"grad_norm": out.grad_norm, "cut_ids": cut_ids}
        if self.scaler.is_enabled():
            record["loss_scale"] = self.scaler.get_scale()
        self.metrics.log("bad_step", self.progress.step, **record)
        if self.dist.is_main:
            log.warning(
                "step %d: non-finite loss or gradient on some rank; update skipped on all "
                "(utterances: %s)",
                self.progress.step,
                ", ".join(cut_ids[:10]),
            )
        limit = self.config.train.max_consecutive_bad_steps
        if self.progress.consecutive_bad_steps >= limit:
            dump = self._dump_bad_step(micro)
            raise FloatingPointError(
                f"{limit} consecutive non-finite steps at step {self.progress.step} "
                f"(train.max_consecutive_bad_steps); the last batch and the model are in {dump}; "
                f"every skipped step is in {self.run_dir / 'metrics.jsonl'} (kind bad_step)"
            )

    def _dump_bad_step(self, micro: list[dict[str, Any]]) -> Path:
        """Write this rank's last batch(es) and the model as it is to ``RUN/bad_steps/`` (plain
        tensors, loadable with ``torch.load(weights_only=True)``), for a post-mortem."""
        path = self.run_dir / "bad_steps" / f"step-{self.progress.step:08d}-rank{self.dist.rank}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = ("features", "feature_lens", "targets", "target_lens", "cut_ids", "texts")
        state = {
            "step": self.progress.step,
            "batches": [{k: b[k] for k in keys if k in b} for b in micro],
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "architecture": self.model.architecture.to_dict(),
        }
        torch.save(state, path)
        return path

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly where it is (this rank's view)."""
        return {
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "best_dev_wer": self.progress.best_dev_wer,
            "best_ema_dev_wer": self.progress.best_ema_dev_wer,
            "train_seconds": self.progress.train_seconds,
            "audio_seconds": self.progress.audio_seconds,
            "world_size": self.dist.world_size,
            "model": self.model.state_dict(),
            "architecture": self.model.architecture.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            # What the loop consumed, not what loader workers prefetched (exact resume with
            # data.num_workers > 0; equal to sampler.state_dict() without workers).
            "sampler": sampler_state_for_resume(self.sampler, batches_consumed=self._epoch_batches),
            "rng": capture_rng_state(),
            "config": config_to_dict(self.config),
            "dmao": self.allocator.state_dict() if self.allocator is not None else {},
            "ema": self.ema.state_dict() if self.ema is not None else {},
        }

    def save(self, *, dev_wer: float | None = None, ema_dev_wer: float | None = None) -> Path:
        """Commit a checkpoint of the current step; keep the newest k; update ``best.pt`` when
        ``dev_wer`` (of this step's validation) is the lowest so far, and ``best-ema.pt`` when
        ``ema_dev_wer`` (of the running average's) is.

        A collective under DDP: rank 0 writes (with every rank's random-generator state, so a
        resumed rank continues its own dropout and augmentation stream) while the others wait;
        when it returns, the checkpoint is committed for all ranks (a failed write raises on all).
        """
        is_best = dev_wer is not None and dev_wer < self.progress.best_dev_wer
        if is_best:
            self.progress.best_dev_wer = dev_wer
        is_best_ema = ema_dev_wer is not None and ema_dev_wer < self.progress.best_ema_dev_wer
        if is_best_ema:
            self.progress.best_ema_dev_wer = ema_dev_wer
        rng_per_rank = self.dist.all_gather_object(capture_rng_state())
        path = step_checkpoint_path(self.checkpoint_dir, self.progress.step)

        def write() -> None:
            state = self.state_dict()
            if self.dist.distributed:
                state["rng_per_rank"] = rng_per_rank
            save_checkpoint(state, path)
            if is_best:
                link_checkpoint(path, self.checkpoint_dir / "best.pt")
            if is_best_ema:
                link_checkpoint(path, self.checkpoint_dir / "best-ema.pt")
            prune_checkpoints(self.checkpoint_dir, self.config.train.keep_last_checkpoints)

        self.dist.run_on_main(write)
        return path

    def load_state(self, state: dict[str, Any], path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` (same config and world size required);
        the model must have been built with the checkpoint's architecture."""
        # Through the dataclasses, so settings added since the checkpoint take their defaults.
        saved_config = config_from_dict(state["config"], source=str(path))
        # Before the first DMAO event, settings read only at events may differ: the run so far is
        # the one a run with this config would have made (a shared prefix, `--share-prefix`).
        forked = event_time_differences(
            saved_config.dmao, self.config.dmao, int(state["step"]), self.config.train.max_steps
        )
        check_resume_compatible(
            config_to_dict(saved_config),
            config_to_dict(self.config),
            Path(path),
            saved_world_size=int(state.get("world_size", 1)),
            world_size=self.dist.world_size,
            ignore=[f"dmao.{key}" for key in forked],
        )
        if forked:
            log.info(
                "continuing from %s, written before the first DMAO event with other event-time "
                "settings (%s): the run so far is the one these settings make",
                path,
                ", ".join(
                    f"dmao.{k}: {getattr(saved_config.dmao, k)!r} -> "
                    f"{getattr(self.config.dmao, k)!r}"
                    for k in forked
                ),
            )
        if legacy_qkv_modules(state["model"]):
            raise CheckpointError(
                f"{path}: written by a dmao version with separate q/k/v attention layers; its "
                "weights still decode, average and export with this version, but its optimizer "
                "state does not fit the fused qkv layer: resume it with the dmao version that "
                "trained it"
            )
        if state["architecture"] != self.model.architecture.to_dict():
            raise CheckpointError(f"{path}: per-layer architecture differs from the model built")
        self.model.load_state_dict(state["model"])
        if self.allocator is not None:  # first: parameters a reference event froze leave the
            self.allocator.load_state_dict(state["dmao"], self.optimizer)  # optimizer again
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if not state.get("ema"):
                raise CheckpointError(f"{path} holds no averaged weights for train.ema_decay")
            self.ema.load_state_dict(state["ema"], path)
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        self._epoch_batches = self.sampler.diagnostics.current_epoch_stats.kept_batches
        rng = state["rng_per_rank"][self.dist.rank] if "rng_per_rank" in state else state["rng"]
        restore_rng_state(rng)
        self.progress = Progress(
            step=state["step"],
            epoch=state["epoch"],
            best_dev_wer=state["best_dev_wer"],
            best_ema_dev_wer=state.get("best_ema_dev_wer", math.inf),
            train_seconds=state.get("train_seconds", 0.0),
            audio_seconds=state.get("audio_seconds", 0.0),
        )
        log.info("resumed from %s at step %d", path, self.progress.step)
