"""The CTC training recipe: one object that owns setup, the loop, validation and checkpoints.

Layout of a run folder::

    RUN/config.yaml            resolved config (also inside every checkpoint)
    RUN/tokenizer/             the tokeniser trained on the training transcripts
    RUN/data_report.json       utterances excluded before training, with reasons
    RUN/metrics.jsonl          train / valid records, one JSON object per line
    RUN/tensorboard/           the same metrics for TensorBoard
    RUN/checkpoints/step-*.pt  the newest k step checkpoints; best.pt = lowest dev WER
    RUN/architecture.json      per-layer widths of the final model
    RUN/train_summary.json     steps, training wall time, parameters, best dev WER (when done)
    RUN/shared_prefix.json     the shared prefix it started from (dmao compare --share-prefix)

One optimizer step (the batch stream, forward and backward): :mod:`dmao.training.step`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dmao.config import ExperimentConfig, save_config
from dmao.data.features import FRAME_SHIFT_S
from dmao.data.statistics import feature_statistics
from dmao.method import DmaoAllocator
from dmao.method.budget import adaptable_macs_per_second
from dmao.models.architecture import EncoderArchitecture
from dmao.models.frontend import subsampled_length
from dmao.training.auto_batch import resolve_batching
from dmao.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
)
from dmao.training.compilation import check_compile_config, compile_forward
from dmao.training.data_setup import (
    build_train_loader,
    prepare_data,
    shard_cuts,
)
from dmao.training.distributed import DistributedContext, resolve_device
from dmao.training.dmao_hooks import DmaoHooks, write_architecture
from dmao.training.ema import WeightAverage
from dmao.training.initialization import load_initial_weights, open_init_source
from dmao.training.metrics import MetricLogger
from dmao.training.model_setup import build_model_from_config
from dmao.training.optimizer import build_optimizer
from dmao.training.precision import PRECISIONS, clip_to_norm
from dmao.training.provenance import code_version
from dmao.training.recipe_state import Progress, RunStateMixin
from dmao.training.run_lock import RunLock
from dmao.training.schedule import build_scheduler
from dmao.training.signals import StopOnSignal
from dmao.training.step import StepMixin
from dmao.training.validation import dev_scores

__all__ = ["PRECISIONS", "TrainingRecipe", "resolve_device", "seed_everything"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python's ``random`` (lhotse's SpecAugment draws from the latter)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_train_config(config: ExperimentConfig) -> None:
    train = config.train
    if train.precision not in PRECISIONS:
        raise ValueError(
            f"train.precision must be one of {', '.join(PRECISIONS)}, got {train.precision!r}"
        )
    if train.accum_grad_steps < 1:
        raise ValueError(f"train.accum_grad_steps must be >= 1, got {train.accum_grad_steps}")
    if not 0.0 <= train.ema_decay < 1.0:
        raise ValueError(f"train.ema_decay must be in [0, 1) (0: off), got {train.ema_decay}")


class _NoMetrics:
    """What ranks other than 0 log to: nothing."""

    def log(self, kind: str, step: int, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


class TrainingRecipe(StepMixin, RunStateMixin):
    """Train a CTC model as described by an :class:`ExperimentConfig` into ``run_dir``.

    Started by ``torchrun`` (``RANK``/``WORLD_SIZE``... in the environment) it is one rank of a
    data-parallel job; otherwise a single process. Usage::

        recipe = TrainingRecipe(config, run_dir, resume=True)
        recipe.setup()
        recipe.train()
        recipe.cleanup()
    """

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False):
        _check_train_config(config)
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = Progress()
        self.dist = DistributedContext.from_env(config.train.device)
        self.device = self.dist.device
        self.autocast_dtype = PRECISIONS[config.train.precision]
        self.metrics: MetricLogger | _NoMetrics = _NoMetrics()  # the real one from setup()
        self._epoch_batches = 0
        self._lock: RunLock | None = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Prepare data, tokeniser, model, optimizer, schedule and sampler; resume if asked."""
        cfg, dist = self.config, self.dist
        if dist.distributed and not dist.is_main:
            logging.getLogger("dmao").setLevel(logging.WARNING)  # rank 0 reports progress
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if dist.is_main:  # before looking at checkpoints: another process may be writing one
            self._lock = RunLock(self.run_dir).acquire()
        self.checkpoint_dir = self.run_dir / "checkpoints"
        resume_from = latest_checkpoint(self.checkpoint_dir) if self.resume else None
        if not self.resume and latest_checkpoint(self.checkpoint_dir) is not None:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue that run "
                "or choose another --out"
            )
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        check_compile_config(
            cfg.train.compile, pad_to_bucket=cfg.data.pad_to_bucket, device=self.device
        )

        # train.init_from: another run's weights (fine-tuning); a resumed run has its own.
        init = None
        if cfg.train.init_from and resume_from is None:
            init = open_init_source(cfg.train.init_from)
        if init is not None:  # the tokeniser its output layer was trained for
            dist.run_on_main(lambda: init.adopt_tokenizer(self.run_dir, cfg.train.init_exclude))
        data = prepare_data(cfg, self.run_dir, dist)
        self.tokenizer, self.train_cuts, self.dev_cuts = data.tokenizer, data.train, data.dev
        self.noise = data.noise  # loaded once, for every loader of this run

        # Seeded right before the model is built so that data preparation cannot shift the stream;
        # every rank builds the same initial weights.
        seed_everything(cfg.train.seed)
        # A resumed run continues with the architecture it had reached (DMAO may have changed
        # it), so the model is built from the checkpoint's widths before its weights are loaded.
        resume_state = load_checkpoint(resume_from) if resume_from is not None else None
        architecture = None
        if resume_state is not None:
            architecture = EncoderArchitecture.from_dict(resume_state["architecture"])
        elif init is not None and not cfg.model.architecture:
            architecture = init.architecture
        self.model = build_model_from_config(
            cfg.model, self.tokenizer.vocab_size, architecture=architecture
        )
        if resume_state is None and dist.is_main:
            # Global mean/variance normalisation from the training data; a resumed run reloads
            # the same buffers from its checkpoint, other ranks receive them when DDP wraps.
            mean, std = feature_statistics(self.train_cuts)
            self.model.encoder.feature_norm.set_statistics(mean, std)
        if init is not None:  # the checkpoint's normalisation too, unless excluded
            load_initial_weights(self.model, init, cfg.train.init_exclude)
        if dist.rank > 0:
            # Own dropout masks and SpecAugment draws per rank (rank 0 keeps the single-process
            # stream); resumed runs restore each rank's generators from the checkpoint.
            seed_everything(cfg.train.seed + dist.rank)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optim, self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg.train.max_steps, cfg.optim)
        # Loss scaling for fp16 only (bf16 has fp32's exponent range); disabled it is a no-op.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.precision == "fp16")
        # The step's batch in micro-batches: as configured, or as many as fit (data.auto_batch).
        self.micro_seconds, self.accum_steps = resolve_batching(
            cfg, self.model, max(c.duration for c in self.train_cuts),
            self.tokenizer.vocab_size, self.device, dist, self.run_dir,
        )  # fmt: skip
        self.sampler, self.train_loader = build_train_loader(
            cfg, self.train_cuts, self.tokenizer, dist,
            noise=self.noise, max_batch_seconds=self.micro_seconds,
        )  # fmt: skip
        self.dev_shard = shard_cuts(self.dev_cuts, dist)
        self.allocator = None
        if cfg.dmao.enabled:
            # Encoder frames in one second of audio (100 feature frames subsampled 4x: 25), for
            # MACs per second of audio.
            frames_per_second = float(subsampled_length(round(1.0 / FRAME_SHIFT_S)))
            self.allocator = DmaoAllocator(
                self.model.adaptable_modules(),
                cfg.dmao,
                cfg.train.max_steps,
                frames_per_second=frames_per_second,
                shared=self.model.adaptable_groups(),
            )
        self.metrics = MetricLogger(self.run_dir) if dist.is_main else _NoMetrics()
        self.dmao = None
        if self.allocator is not None:
            self.dmao = DmaoHooks(self.allocator, self.model, dist, self.metrics, self.run_dir,
                                  cfg.train.seed, self._echo)  # fmt: skip
        # The running average of the weights (train.ema_decay), restored by load_state.
        decay = cfg.train.ema_decay
        self.ema = WeightAverage(self.model, decay) if decay else None
        if resume_state is not None:
            self.load_state(resume_state, resume_from)
        # DDP after loading: it broadcasts rank 0's weights and buffers at construction.
        self.train_model = self._training_module()
        # Written only now: a refused resume must not overwrite the run's config.
        if dist.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        log.info(
            "model: %s parameters; %d rank(s) on %s, %s, %d micro-batch(es) per step",
            f"{sum(p.numel() for p in self.model.parameters()):,}",
            dist.world_size,
            self.device,
            cfg.train.precision,
            self.accum_steps,
        )

    def _training_module(self) -> torch.nn.Module:
        """What the training step calls: the model, DDP-wrapped when distributed, compiled as
        ``train.compile`` asks (graphs: the sampler's static shapes × (DMAO events + 1))."""
        cfg = self.config
        shapes = getattr(self.sampler, "shapes", None)
        events = cfg.dmao.num_events if cfg.dmao.enabled else 0
        max_graphs = (len(shapes.edges) if shapes is not None else 1) * (events + 1)
        module = self.dist.wrap(self.model)
        mode, backend = cfg.train.compile, cfg.train.compile_backend
        return compile_forward(module, mode, backend=backend, max_graphs=max_graphs)

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, float]:
        """Run until ``train.max_steps`` (or ``stop_at_step``) steps; returns the last
        validation metrics."""
        cfg = self.config.train
        progress, end = self.progress, cfg.end_step
        bar = tqdm(
            total=end,
            initial=progress.step,
            desc="train",
            disable=not cfg.progress_bar or not self.dist.is_main,
            dynamic_ncols=True,
        )
        self._bar = bar
        last_valid: dict[str, float] = {}
        window = _new_window()
        self.model.train()
        batches = self._batches()
        session_start, seconds_before = time.perf_counter(), progress.train_seconds
        clip = self.config.optim.grad_clip_norm
        with StopOnSignal() as stop:
            while progress.step < end:
                micro = [next(batches) for _ in range(self.accum_steps)]
                out = self._forward_backward(micro, stop.signum is not None)
                if out.bad:
                    self._skip_bad_step(micro, out)
                    if out.stop:
                        self._stop(stop.signum, saved=False)
                    continue
                progress.consecutive_bad_steps = 0
                if self.dmao is not None:
                    # Scores from this step's (all-reduced, unclipped) gradients (METHOD.md §3).
                    self.dmao.after_backward(progress.step)
                clip_to_norm(self.model, clip if clip > 0 else math.inf, out.grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                progress.step += 1
                progress.audio_seconds += out.audio_seconds
                bar.update(1)
                event = self.dmao is not None and self.dmao.after_step(
                    progress.step, self.optimizer, self.device
                )
                if event:
                    self.train_model = self._training_module()  # a new reducer
                if self.ema is not None and event:  # new widths: the average starts again
                    self.ema.restart(self.model)
                elif self.ema is not None:
                    self.ema.update(self.model)

                window["loss"] += out.loss_sum
                window["tokens"] += out.tokens
                window["utts"] += out.utterances
                window["audio_s"] += out.audio_seconds
                if progress.step % cfg.log_every_steps == 0 or progress.step == end:
                    elapsed = max(time.time() - window["t0"], 1e-9)
                    record = {
                        "loss": window["loss"] / max(window["tokens"], 1),
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": out.grad_norm,
                        "utts_per_s": window["utts"] / elapsed,
                        "audio_s_per_s": window["audio_s"] / elapsed,
                        "epoch": progress.epoch,
                    }
                    if self.scaler.is_enabled():
                        record["loss_scale"] = self.scaler.get_scale()
                    self.metrics.log("train", progress.step, **record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                    window = _new_window()

                is_last = progress.step == end
                if progress.step % cfg.valid_every_steps == 0 or is_last:
                    last_valid = self.validate()
                    ema = last_valid.get("ema_wer")
                    self._echo(
                        f"step {progress.step}: dev loss {last_valid['loss']:.3f} "
                        f"WER {100 * last_valid['wer']:.2f} % CER {100 * last_valid['cer']:.2f} %"
                        + (f" | averaged weights WER {100 * ema:.2f} %" if ema is not None else "")
                    )
                progress.train_seconds = seconds_before + time.perf_counter() - session_start
                saved = progress.step % cfg.checkpoint_every_steps == 0 or is_last
                if saved:
                    validated_now = last_valid.get("step") == progress.step
                    self.save(
                        dev_wer=last_valid["wer"] if validated_now else None,
                        ema_dev_wer=last_valid.get("ema_wer") if validated_now else None,
                    )
                if out.stop:
                    self._stop(stop.signum, saved=saved)
        bar.close()
        if self.dist.is_main:
            write_architecture(self.model, self.run_dir)
            summary = {
                "steps": progress.step,
                "train_seconds": round(progress.train_seconds, 1),
                "audio_seconds": round(progress.audio_seconds, 1),
                "world_size": self.dist.world_size,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "best_dev_wer": progress.best_dev_wer,
                **({"best_ema_dev_wer": progress.best_ema_dev_wer} if self.ema is not None else {}),
                "dmao_events": len(self.allocator.history) if self.allocator is not None else 0,
                # Width-scaled dropout is part of the architecture (METHOD.md §4.7).
                "module_dropout": self.model.module_dropout(),
                "code_version": code_version(),
                "adaptable_macs_per_second": adaptable_macs_per_second(
                    self.model.adaptable_modules()
                ),
            }
            with open(self.run_dir / "train_summary.json", "w") as f:
                json.dump(summary, f, indent=1)
        return last_valid

    def _stop(self, signum: int | None, *, saved: bool) -> None:
        """SIGTERM/SIGINT (preemption) on any rank: commit the last completed step, then exit
        with 128 + signal (143 for SIGTERM; ranks that got no signal use 143 too)."""
        if not saved:
            self.save()
        self._bar.close()
        log.warning(
            "signal %s: checkpoint of step %d committed; resume with --resume",
            signum if signum is not None else "on another rank",
            self.progress.step,
        )
        raise SystemExit(128 + (signum if signum is not None else signal.SIGTERM))

    def _echo(self, message: str) -> None:
        if self.dist.is_main:
            self._bar.write(message)

    def validate(self) -> dict[str, float]:
        """Dev CTC loss per token and greedy-decoding WER/CER on the fixed dev subset
        (:func:`dmao.training.validation.dev_scores`; under DDP each rank decodes its shard with
        the bare model and every rank returns the same numbers); with ``train.ema_decay`` also
        of the running average of the weights (``ema_loss``, ``ema_wer``, ``ema_cer``; logged as
        ``valid_ema``)."""

        def scores() -> dict[str, float]:
            return dev_scores(
                self.dev_shard,
                self.tokenizer,
                self._ctc_loss,
                self.dist,
                max_batch_seconds=self.micro_seconds,
                pin_memory=self.device.type == "cuda",
            )

        self.model.eval()
        try:
            result = scores()
            averaged = None
            if self.ema is not None:
                with self.ema.applied(self.model):
                    averaged = scores()
        finally:
            self.model.train()
        self.metrics.log("valid", self.progress.step, **result)
        if averaged is None:
            return {"step": self.progress.step, **result}
        self.metrics.log("valid_ema", self.progress.step, **averaged)
        return {
            "step": self.progress.step,
            **result,
            **{f"ema_{k}": averaged[k] for k in ("loss", "wer", "cer")},
        }

    def cleanup(self) -> None:
        """Close the metric files, release the run folder and, under torchrun, the process
        group."""
        self.metrics.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.dist.close()


def _new_window() -> dict[str, float]:
    return {"loss": 0.0, "tokens": 0, "utts": 0, "audio_s": 0.0, "t0": time.time()}
