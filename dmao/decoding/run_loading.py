"""Loading a trained run for decoding: which checkpoint, the model with its own per-layer
architecture (live weights, their running average or an average of checkpoints), and the decode
settings resolved from the run's config and the caller's arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from dmao.config import DecodeConfig, ExperimentConfig, config_from_dict, load_run_config
from dmao.config.schema import DECODE_METHODS
from dmao.data.tokenizer import Tokenizer, load_tokenizer
from dmao.models.architecture import EncoderArchitecture
from dmao.training.averaging import averaged_checkpoint
from dmao.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from dmao.training.ema import averaged_weights
from dmao.training.model_setup import build_model_from_config
from dmao.training.recipe import resolve_device

__all__ = ["LoadedForDecoding", "load_for_decoding", "load_trained_model", "resolve_checkpoint"]


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
) -> LoadedForDecoding:
    """Resolve the decode settings of ``run_dir`` (its config's ``decode`` section, then the
    arguments) and load its model: what :func:`decode_split` and ``dmao tune`` start from.
    ``avg``: the average of the newest ``avg`` step checkpoints ending at ``checkpoint``."""
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
    return LoadedForDecoding(dec, dev, model, config, tokenizer, ckpt_path, label)
