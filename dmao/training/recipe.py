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
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lhotse import CutSet
from tqdm import tqdm

from dmao.config import ExperimentConfig, config_from_dict, config_to_dict, save_config
from dmao.data.dataset import build_dataloader, build_eval_sampler, build_sampler
from dmao.data.filtering import filter_cuts
from dmao.data.manifests import FRAME_SHIFT_S, cut_transcript
from dmao.data.pipeline import load_parts
from dmao.data.statistics import feature_statistics
from dmao.data.tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from dmao.decoding import greedy_decode
from dmao.evaluation import score_corpus
from dmao.method import DmaoAllocator
from dmao.models.architecture import EncoderArchitecture
from dmao.models.frontend import subsampled_length
from dmao.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    link_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    step_checkpoint_path,
)
from dmao.training.metrics import MetricLogger
from dmao.training.model_setup import build_model_from_config
from dmao.training.schedule import build_one_cycle_scheduler

__all__ = ["TrainingRecipe", "resolve_device", "seed_everything"]

log = logging.getLogger(__name__)

# Settings that must not change when a run is resumed: they define the model or the data order.
_RESUME_MUST_MATCH = (
    "model",
    "tokenizer",
    "data.train_parts",
    "data.max_batch_seconds",
    "data.num_buckets",
    "train.seed",
    "train.max_steps",
    "dmao",
)

# Consecutive non-finite steps tolerated before the run stops (ESPnet2 skips such updates too).
MAX_CONSECUTIVE_BAD_STEPS = 20


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python's ``random`` (lhotse's SpecAugment draws from the latter)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _StopOnSignal:
    """Within the ``with`` block, SIGTERM and SIGINT only set ``signum``; the training loop
    finishes its step, commits a checkpoint and exits (RELIABILITY.md item 6)."""

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


@dataclass
class _Progress:
    step: int = 0
    epoch: int = 0
    best_dev_wer: float = math.inf
    consecutive_bad_steps: int = 0
    train_seconds: float = 0.0
    """Wall time spent in the training loop, summed over resumed sessions."""


class TrainingRecipe:
    """Train a CTC model as described by an :class:`ExperimentConfig` into ``run_dir``.

    Usage::

        recipe = TrainingRecipe(config, run_dir, resume=True)
        recipe.setup()
        recipe.train()
        recipe.cleanup()
    """

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = _Progress()
        self.device = resolve_device(config.train.device)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Prepare data, tokeniser, model, optimizer, schedule and sampler; resume if asked."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        resume_from = latest_checkpoint(self.checkpoint_dir) if self.resume else None
        if not self.resume and latest_checkpoint(self.checkpoint_dir) is not None:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue that run "
                "or choose another --out"
            )
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)

        train_cuts = load_parts(cfg.data, cfg.data.train_parts)
        dev_cuts = load_parts(cfg.data, cfg.data.dev_parts)
        self.tokenizer = self._setup_tokenizer(train_cuts)
        self.train_cuts, self.dev_cuts = self._filter(train_cuts, dev_cuts)

        # Seeded right before the model is built so that data preparation cannot shift the stream.
        seed_everything(cfg.train.seed)
        # A resumed run continues with the architecture it had reached (DMAO may have changed
        # it), so the model is built from the checkpoint's widths before its weights are loaded.
        resume_state = load_checkpoint(resume_from) if resume_from is not None else None
        architecture = None
        if resume_state is not None:
            architecture = EncoderArchitecture.from_dict(resume_state["architecture"])
        self.model = build_model_from_config(
            cfg.model, self.tokenizer.vocab_size, architecture=architecture
        )
        if resume_state is None:
            # Global mean/variance normalisation from the training data; a resumed run reloads
            # the same buffers from its checkpoint.
            mean, std = feature_statistics(self.train_cuts)
            self.model.encoder.feature_norm.set_statistics(mean, std)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.peak_lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = build_one_cycle_scheduler(
            self.optimizer,
            cfg.train.max_steps,
            cfg.optim.peak_lr,
            initial_lr_ratio=cfg.optim.initial_lr_ratio,
            final_lr=cfg.optim.final_lr,
            warmup_fraction=cfg.optim.warmup_fraction,
        )
        self.sampler = build_sampler(
            self.train_cuts,
            max_batch_seconds=cfg.data.max_batch_seconds,
            shuffle=True,
            seed=cfg.train.seed,
            num_buckets=cfg.data.num_buckets,
            drop_last=True,
        )
        self.train_loader = build_dataloader(
            self.train_cuts,
            self.tokenizer,
            sampler=self.sampler,
            train=cfg.data.spec_augment,
            num_workers=cfg.data.num_workers,
        )
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
            )
        self.metrics = MetricLogger(self.run_dir)
        if resume_state is not None:
            self.load_state(resume_state, resume_from)
        # Written only now: a refused resume must not overwrite the run's config.
        save_config(cfg, self.run_dir / "config.yaml")
        log.info("model: %s parameters", f"{sum(p.numel() for p in self.model.parameters()):,}")

    def _setup_tokenizer(self, train_cuts: CutSet) -> Tokenizer:
        tok_dir = self.run_dir / "tokenizer"
        if (tok_dir / "tokenizer.json").is_file():
            return load_tokenizer(tok_dir)
        texts = [cut_transcript(c) for c in train_cuts]
        texts = [t for t in texts if t]
        cfg = self.config.tokenizer
        vocab_size = cfg.vocab_size if cfg.kind == "bpe" else None
        return train_tokenizer(cfg.kind, texts, tok_dir, vocab_size=vocab_size)

    def _filter(self, train_cuts: CutSet, dev_cuts: CutSet) -> tuple[CutSet, CutSet]:
        cfg = self.config.data
        report = {}
        kept = []
        for name, cuts, limits in (
            ("train", train_cuts, (cfg.min_duration_s, cfg.max_duration_s)),
            ("dev", dev_cuts, (0.0, math.inf)),
        ):
            good, rep = filter_cuts(
                cuts,
                self.tokenizer,
                subsampled_length=subsampled_length,
                min_duration_s=limits[0],
                max_duration_s=limits[1],
            )
            report[name] = json.loads(rep.to_json())
            if rep.num_kept < rep.num_input:
                log.warning("%s: %s", name, rep.summary())
            kept.append(good.to_eager())
        with open(self.run_dir / "data_report.json", "w") as f:
            json.dump(report, f, indent=1)
        n_dev = self.config.train.max_valid_utterances
        dev = kept[1].subset(first=min(n_dev, len(kept[1]))) if n_dev > 0 else kept[1]
        return kept[0], dev.sort_by_duration()

    # ------------------------------------------------------------------ loop
    def _ctc_loss(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """Forward the batch: summed CTC loss, number of target tokens, and the model outputs
        ``log_probs (B, T', V)`` and ``out_lens (B,)`` (validation decodes them)."""
        features = batch["features"].to(self.device)
        feature_lens = batch["feature_lens"].to(self.device)
        target_lens = batch["target_lens"].to(self.device)
        log_probs, out_lens = self.model(features, feature_lens)  # (B, T', V), (B,)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V) as ctc_loss expects
            batch["targets"].to(self.device),
            out_lens,
            target_lens,
            blank=self.tokenizer.blank_id,
            reduction="sum",
            zero_infinity=False,  # infeasible utterances were filtered; inf means a real problem
        )
        return loss, int(target_lens.sum()), log_probs, out_lens

    def _batches(self):
        """Endless stream of training batches; the sampler owns order and epoch."""
        while True:
            self.sampler.set_epoch(self.progress.epoch)
            yield from self.train_loader
            self.progress.epoch += 1

    def train(self) -> dict[str, float]:
        """Run until ``train.max_steps`` optimizer steps; returns the last validation metrics."""
        cfg = self.config.train
        progress = self.progress
        bar = tqdm(
            total=cfg.max_steps,
            initial=progress.step,
            desc="train",
            disable=not cfg.progress_bar,
            dynamic_ncols=True,
        )
        last_valid: dict[str, float] = {}
        window = {"loss": 0.0, "tokens": 0, "utts": 0, "audio_s": 0.0, "t0": time.time()}
        self.model.train()
        batches = self._batches()
        session_start, seconds_before = time.perf_counter(), progress.train_seconds
        with _StopOnSignal() as stop:
            while progress.step < cfg.max_steps:
                batch = next(batches)
                loss_sum, num_tokens, _, _ = self._ctc_loss(batch)
                loss = loss_sum / max(num_tokens, 1)  # per-token loss: stable across bucket lengths
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.allocator is not None and torch.isfinite(loss):
                    # Scores come from this backward's gradients, before clipping (METHOD.md §3).
                    self._measure_scores(progress.step)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(),
                    self.config.optim.grad_clip_norm
                    if self.config.optim.grad_clip_norm > 0
                    else math.inf,
                )
                if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                    self._skip_bad_step(batch, float(loss), float(grad_norm))
                    continue
                progress.consecutive_bad_steps = 0
                self.optimizer.step()
                self.scheduler.step()
                progress.step += 1
                bar.update(1)
                if self.allocator is not None:
                    event = self.allocator.maybe_reallocate(progress.step, self.optimizer)
                    if event is not None:
                        self._log_event(event.to_dict(), bar)

                window["loss"] += float(loss_sum.detach())
                window["tokens"] += num_tokens
                window["utts"] += len(batch["cut_ids"])
                window["audio_s"] += float(batch["feature_lens"].sum()) * 0.01
                if progress.step % cfg.log_every_steps == 0 or progress.step == cfg.max_steps:
                    elapsed = max(time.time() - window["t0"], 1e-9)
                    record = {
                        "loss": window["loss"] / max(window["tokens"], 1),
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "utts_per_s": window["utts"] / elapsed,
                        "audio_s_per_s": window["audio_s"] / elapsed,
                        "epoch": progress.epoch,
                    }
                    self.metrics.log("train", progress.step, **record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                    window = {
                        "loss": 0.0,
                        "tokens": 0,
                        "utts": 0,
                        "audio_s": 0.0,
                        "t0": time.time(),
                    }

                is_last = progress.step == cfg.max_steps
                if progress.step % cfg.valid_every_steps == 0 or is_last:
                    last_valid = self.validate()
                    bar.write(
                        f"step {progress.step}: dev loss {last_valid['loss']:.3f} "
                        f"WER {100 * last_valid['wer']:.2f} % CER {100 * last_valid['cer']:.2f} %"
                    )
                progress.train_seconds = seconds_before + time.perf_counter() - session_start
                if progress.step % cfg.checkpoint_every_steps == 0 or is_last:
                    validated_now = last_valid.get("step") == progress.step
                    self.save(dev_wer=last_valid["wer"] if validated_now else None)
                if stop.signum is not None:
                    # SIGTERM/SIGINT (preemption): commit the last completed step, then exit
                    # with 128 + signal (143 for SIGTERM) so schedulers see a clean stop.
                    if progress.step % cfg.checkpoint_every_steps != 0 and not is_last:
                        self.save()
                    bar.close()
                    log.warning(
                        "signal %d: checkpoint of step %d committed; resume with --resume",
                        stop.signum,
                        progress.step,
                    )
                    raise SystemExit(128 + stop.signum)
        bar.close()
        with open(self.run_dir / "architecture.json", "w") as f:
            json.dump(self.model.architecture.to_dict(), f, indent=1)
        summary = {
            "steps": progress.step,
            "train_seconds": round(progress.train_seconds, 1),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "best_dev_wer": progress.best_dev_wer,
            "dmao_events": len(self.allocator.history) if self.allocator is not None else 0,
        }
        with open(self.run_dir / "train_summary.json", "w") as f:
            json.dump(summary, f, indent=1)
        return last_valid

    def _measure_scores(self, step: int) -> None:
        """Let the allocator measure when due; log the mean smoothed score per module (the
        trajectories that ``dmao report`` draws)."""
        if self.allocator.after_backward(step):
            scores = self.allocator.tracker.scores
            self.metrics.log(
                "dmao_scores", step, **{name: float(s.mean()) for name, s in scores.items()}
            )

    def _log_event(self, event: dict[str, Any], bar: tqdm) -> None:
        """Write a reallocation event to the metrics and a one-line summary to the console."""
        self.metrics.log(
            "dmao_event", self.progress.step, **{k: v for k, v in event.items() if k != "step"}
        )
        bar.write(
            f"step {self.progress.step}: DMAO event: "
            + ", ".join(f"{k}={v}" for k, v in event.items() if isinstance(v, (int, float)))
        )
        with open(self.run_dir / "architecture.json", "w") as f:
            json.dump(self.model.architecture.to_dict(), f, indent=1)

    def _skip_bad_step(self, batch: dict[str, Any], loss: float, grad_norm: float) -> None:
        """Drop the update of a non-finite step, log it with its utterances, stop after too many."""
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.consecutive_bad_steps += 1
        self.metrics.log(
            "bad_step",
            self.progress.step,
            loss=loss,
            grad_norm=grad_norm,
            cut_ids=list(batch["cut_ids"]),
        )
        log.warning(
            "step %d: non-finite loss %s / grad norm %s; update skipped (utterances: %s)",
            self.progress.step,
            loss,
            grad_norm,
            ", ".join(batch["cut_ids"][:10]),
        )
        if self.progress.consecutive_bad_steps >= MAX_CONSECUTIVE_BAD_STEPS:
            raise FloatingPointError(
                f"{MAX_CONSECUTIVE_BAD_STEPS} consecutive non-finite steps at step "
                f"{self.progress.step}; see {self.run_dir / 'metrics.jsonl'} (kind bad_step)"
            )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Dev CTC loss per token and greedy-decoding WER/CER on the fixed dev subset."""
        self.model.eval()
        sampler = build_eval_sampler(
            self.dev_cuts, max_batch_seconds=self.config.data.max_batch_seconds
        )
        loader = build_dataloader(self.dev_cuts, self.tokenizer, sampler=sampler, train=False)
        loss_sum, tokens = 0.0, 0
        refs, hyps = [], []
        for batch in loader:
            # Dev cuts went through the same CTC-feasibility filter as training ones.
            batch_loss, batch_tokens, log_probs, out_lens = self._ctc_loss(batch)
            loss_sum += float(batch_loss)
            tokens += batch_tokens
            for ids in greedy_decode(log_probs.cpu(), out_lens.cpu(), self.tokenizer.blank_id):
                hyps.append(self.tokenizer.decode(ids))
            refs.extend(batch["texts"])
        self.model.train()
        score = score_corpus(refs, hyps)
        result = {
            "loss": loss_sum / max(tokens, 1),
            "wer": score.wer,
            "cer": score.cer,
            "num_utterances": len(refs),
        }
        self.metrics.log("valid", self.progress.step, **result)
        return {"step": self.progress.step, **result}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly where it is."""
        return {
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "best_dev_wer": self.progress.best_dev_wer,
            "train_seconds": self.progress.train_seconds,
            "model": self.model.state_dict(),
            "architecture": self.model.architecture.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng_state(),
            "config": config_to_dict(self.config),
            "dmao": self.allocator.state_dict() if self.allocator is not None else {},
        }

    def save(self, *, dev_wer: float | None = None) -> Path:
        """Commit a checkpoint of the current step; keep the newest k; update ``best.pt`` when
        ``dev_wer`` (of this step's validation) is the lowest so far."""
        is_best = dev_wer is not None and dev_wer < self.progress.best_dev_wer
        if is_best:
            self.progress.best_dev_wer = dev_wer
        path = save_checkpoint(
            self.state_dict(), step_checkpoint_path(self.checkpoint_dir, self.progress.step)
        )
        if is_best:
            link_checkpoint(path, self.checkpoint_dir / "best.pt")
        prune_checkpoints(self.checkpoint_dir, self.config.train.keep_last_checkpoints)
        return path

    def load_state(self, state: dict[str, Any], path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` (same config required); the model must
        have been built with the checkpoint's architecture."""
        # Through the dataclasses, so settings added since the checkpoint take their defaults.
        saved = config_to_dict(config_from_dict(state["config"], source=str(path)))
        _check_resume_compatible(saved, config_to_dict(self.config), Path(path))
        if state["architecture"] != self.model.architecture.to_dict():
            raise CheckpointError(f"{path}: per-layer architecture differs from the model built")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"])
        if self.allocator is not None:
            self.allocator.load_state_dict(state["dmao"])
        self.progress = _Progress(
            step=state["step"],
            epoch=state["epoch"],
            best_dev_wer=state["best_dev_wer"],
            train_seconds=state.get("train_seconds", 0.0),
        )
        log.info("resumed from %s at step %d", path, self.progress.step)

    def cleanup(self) -> None:
        self.metrics.close()


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else None
    return d


def _check_resume_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diffs = []
    for key in _RESUME_MUST_MATCH:
        a, b = _lookup(saved, key), _lookup(current, key)
        if a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    if diffs:
        raise CheckpointError(
            f"cannot resume from {path}: settings differ from the checkpoint:\n  "
            + "\n  ".join(diffs)
        )
