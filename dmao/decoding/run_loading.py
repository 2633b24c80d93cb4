"""Loading a trained run for decoding: which checkpoint, the model with its own per-layer
architecture (live weights, their running average or an average of checkpoints), the decode
settings resolved from the run's config and the caller's arguments, and the model's posteriors of
a split (:func:`compute_posteriors`) and CTC prior, which ``dmao decode`` and ``dmao tune`` search
on."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dmao.config import DecodeConfig, ExperimentConfig, config_from_dict, load_run_config
from dmao.config.schema import DECODE_METHODS
from dmao.data.dataset import build_dataloader, build_eval_sampler
from dmao.data.features import FRAME_SHIFT_S
from dmao.data.pipeline import load_parts
from dmao.data.tokenizer import Tokenizer, load_tokenizer
from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES, CTCPrior, ctc_prior_for_run
from dmao.models.architecture import EncoderArchitecture
from dmao.training.averaging import averaged_checkpoint
from dmao.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from dmao.training.ema import averaged_weights
from dmao.training.model_setup import build_model_from_config
from dmao.training.recipe import resolve_device

__all__ = [
    "LoadedForDecoding",
    "SplitPosteriors",
    "compute_posteriors",
    "load_for_decoding",
    "load_trained_model",
    "resolve_checkpoint",
]

EMA_PRIOR_REFUSAL = "--prior-scale is estimated for a checkpoint's live weights, not --ema"


def resolve_checkpoint(run_dir: Path, which: str, *, ema: bool = False) -> Path:
    """``best`` → ``best.pt`` (falls back to the newest), ``last`` → newest, else a file name.

    ``ema``: for the running average of the weights, ``best`` is ``best-ema.pt`` (the checkpoint
    whose average had the lowest dev WER) where the run has one, else as above.
    """
    ckpt_dir = run_dir / "checkpoints"
    if which == "best" and ema and (ckpt_dir / "best-ema.pt").is_file():
        return ckpt_dir / "best-ema.pt"
    if which == "best" and (ckpt_dir / "best.pt").is_file():
        return ckpt_dir / "best.pt"
    if which in ("best", "last"):
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise CheckpointError(f"no checkpoint in {ckpt_dir}; has the run trained?")
        return path
    path = Path(which)
    return path if path.is_file() else ckpt_dir / which


def load_trained_model(run_dir: Path, which: str, device: torch.device, *, ema: bool = False):
    """The model of a run at the given checkpoint (with its own per-layer architecture), in eval
    mode, plus the run's config, tokenizer and the checkpoint path. ``ema``: the running average
    of the weights the checkpoint holds (``train.ema_decay``; :mod:`dmao.training.ema`) instead
    of its live weights; ``best`` is then ``best-ema.pt`` where the run has one."""
    path = resolve_checkpoint(run_dir, which, ema=ema)
    state = load_checkpoint(path, map_location=device)
    config = config_from_dict(state["config"], source=str(path))
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = build_model_from_config(
        config.model,
        tokenizer.vocab_size,
        architecture=EncoderArchitecture.from_dict(state["architecture"]),
    )
    model.load_state_dict(averaged_weights(state, path) if ema else state["model"])
    return model.to(device).eval(), config, tokenizer, path


@dataclass
class SplitPosteriors:
    """The model's CTC log-probabilities for every utterance of a split, computed once so that
    several decoders (or a grid of LM settings) can run on them."""

    ids: list[str]
    refs: list[str]
    """Reference transcripts (as in the manifests)."""
    log_probs: list[torch.Tensor]
    """Per utterance ``(T', V)`` log-probabilities, cut to the utterance's frames (CPU)."""
    audio_seconds: float
    forward_seconds: float
    """Wall time of the model's forward passes."""
    checkpoint: str
    speakers: list[str | None] | None = None
    """Speaker of each utterance (from its first supervision), for speaker-first trn ids."""


@torch.no_grad()
def compute_posteriors(
    model: torch.nn.Module,
    config,
    tokenizer,
    split: str,
    *,
    device: torch.device,
    checkpoint: str = "",
    progress_bar: bool = True,
) -> SplitPosteriors:
    """Run ``model`` over corpus part ``split`` (batches of ``config.decode.max_batch_seconds``
    of audio, shortest first) and keep each utterance's ``(T', V)`` log-probabilities."""
    cuts = load_parts(config.data, [split]).to_eager().sort_by_duration()
    sampler = build_eval_sampler(cuts, max_batch_seconds=config.decode.max_batch_seconds)
    loader = build_dataloader(cuts, tokenizer, sampler=sampler, train=False, with_targets=False)
    ids, refs, posteriors = [], [], []
    audio_seconds = 0.0
    start = time.perf_counter()
    for batch in tqdm(loader, desc=f"forward {split}", disable=not progress_bar, leave=False):
        log_probs, out_lens = model(batch["features"].to(device), batch["feature_lens"].to(device))
        log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
        posteriors.extend(log_probs[b, : int(n)] for b, n in enumerate(out_lens.tolist()))
        refs.extend(batch["texts"])
        ids.extend(batch["cut_ids"])
        audio_seconds += float(batch["feature_lens"].sum()) * FRAME_SHIFT_S
    speaker_of = {
        cut.id: (cut.supervisions[0].speaker if cut.supervisions else None) for cut in cuts
    }
    return SplitPosteriors(
        ids,
        refs,
        posteriors,
        audio_seconds,
        time.perf_counter() - start,
        checkpoint,
        speakers=[speaker_of.get(i) for i in ids],
    )


@dataclass
class LoadedForDecoding:
    """A run's model at a checkpoint, its decode settings resolved (:func:`load_for_decoding`)."""

    dec: DecodeConfig
    """The run's ``decode`` section with the caller's settings applied."""
    device: torch.device
    model: torch.nn.Module
    config: ExperimentConfig
    """The checkpoint's config, its ``decode`` replaced by ``dec``."""
    tokenizer: Tokenizer
    checkpoint_path: Path
    checkpoint_label: str
    """The checkpoint's file name (``+ema`` for the running average)."""
    run_dir: Path
    ema: bool = False
    """The model holds the checkpoint's running average of the weights."""
    averaged_from: list[str] | None = None
    """For an average of checkpoints (``avg`` > 1): their file names, oldest first."""

    def with_decode(self, **settings: Any) -> LoadedForDecoding:
        """The same loaded model with other decode settings (``dec`` and ``config.decode``)."""
        dec = replace(self.dec, **settings)
        return replace(self, dec=dec, config=replace(self.config, decode=dec))

    def posteriors(self, split: str, *, progress_bar: bool = True) -> SplitPosteriors:
        """The model's log-probabilities of every utterance of corpus part ``split``."""
        return compute_posteriors(
            self.model,
            self.config,
            self.tokenizer,
            split,
            device=self.device,
            checkpoint=self.checkpoint_label,
            progress_bar=progress_bar,
        )

    def ctc_prior(
        self, num_utterances: int = DEFAULT_PRIOR_UTTERANCES, *, progress_bar: bool = True
    ) -> CTCPrior:
        """The model's CTC prior (:func:`dmao.decoding.prior.ctc_prior_for_run`; kept in
        ``RUN/ctc_prior.pt``). Not for the running average of the weights."""
        if self.ema:
            raise ValueError(EMA_PRIOR_REFUSAL)
        return ctc_prior_for_run(
            self.run_dir,
            self.model,
            self.config,
            self.tokenizer,
            self.checkpoint_path,
            device=self.device,
            num_utterances=num_utterances,
            progress_bar=progress_bar,
        )


def load_for_decoding(
    run_dir: Path,
    *,
    method: str | None = None,
    beam_size: int | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    decode_overrides: Mapping[str, Any] | None = None,
    avg: int | None = None,
    ema: bool = False,
    prior: bool = False,
) -> LoadedForDecoding:
    """Resolve the decode settings of ``run_dir`` (its config's ``decode`` section, then the
    arguments) and load its model: what ``dmao decode`` and ``dmao tune`` start from.

    Args:
        avg: the average of the newest ``avg`` step checkpoints ending at ``checkpoint``.
        ema: the checkpoint's running average of the weights instead of its live weights.
        prior: a CTC prior will be estimated (refused with ``ema`` before anything is loaded).
    """
    if ema and avg is not None:
        raise ValueError("--ema and --avg both average weights: choose one")
    if ema and prior:
        raise ValueError(EMA_PRIOR_REFUSAL)
    run_config = load_run_config(run_dir)
    given = {"method": method, "beam_size": beam_size, "checkpoint": checkpoint}
    given = {k: v for k, v in given.items() if v is not None} | dict(decode_overrides or {})
    unknown = sorted(set(given) - {f.name for f in fields(DecodeConfig)})
    if unknown:
        raise ValueError(f"unknown decode settings {unknown}; see DecodeConfig in dmao/config")
    dec = replace(run_config.decode, **given)
    if dec.method not in DECODE_METHODS:
        raise ValueError(
            f"decoding method must be one of {', '.join(DECODE_METHODS)}, got {dec.method!r}"
        )
    dev = resolve_device(device)
    if avg is not None:  # --avg 1 is the end checkpoint itself
        end = checkpoint if checkpoint is not None else "last"
        dec = replace(dec, checkpoint=str(averaged_checkpoint(run_dir, avg, end)))
    model, config, tokenizer, ckpt_path = load_trained_model(run_dir, dec.checkpoint, dev, ema=ema)
    config.decode = dec
    label = f"{ckpt_path.name}+ema" if ema else ckpt_path.name
    averaged_from = load_checkpoint(ckpt_path)["averaged_from"] if avg and avg > 1 else None
    return LoadedForDecoding(
        dec, dev, model, config, tokenizer, ckpt_path, label, run_dir, ema, averaged_from
    )
