"""CTC prior correction (``dmao decode --prior-scale S``).

A CTC model's posteriors ``p(v | x_t)`` carry the label prior of the training data (mostly
blank); for decoding with an external LM the authors' RETURNN setup divides it out, scoring
``log p(v | x_t) - S · log prior(v)``. The prior is estimated as in RETURNN's
``compute_prior``: the softmax output averaged over all frames of (a subset of) the training set,

    prior(v) = Σ_utt Σ_t p(v | x_t) / Σ_utt T'_utt,

with the model in eval mode (no dropout, no SpecAugment). It is computed once per checkpoint and
stored in the run folder, ``RUN/ctc_prior.pt``, with the checkpoint's file name and SHA-256, the
parts and the number of utterances and frames it was estimated from; a decode with another
checkpoint estimates it again (and replaces the file).
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dmao.config import ExperimentConfig
from dmao.data.dataset import build_dataloader, build_eval_sampler
from dmao.data.pipeline import load_parts
from dmao.data.tokenizer import Tokenizer
from dmao.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "PRIOR_FILE",
    "CTCPrior",
    "apply_prior",
    "ctc_prior_for_run",
    "estimate_log_prior",
]

log = logging.getLogger(__name__)

PRIOR_FILE = "ctc_prior.pt"

# A subset keeps the one-off forward pass short: on the small recipe (exp/avg600, BENCHMARKS.md
# "CTC prior") 1,000 of the 3,580 training utterances took 25 s instead of 88 s on one CPU thread,
# moved no log-prior by more than 0.09 nats from the full-set estimate, and gave LM-decoding WERs
# within 0.4 points of it.
DEFAULT_PRIOR_UTTERANCES = 1000


@dataclass(frozen=True)
class CTCPrior:
    """A label prior estimated from a model's posteriors."""

    log_prior: torch.Tensor
    """``(V,)`` natural-log prior of every output label (blank included); logsumexp = 0."""
    checkpoint: str
    """File name of the checkpoint whose posteriors it averages."""
    checkpoint_sha256: str
    num_utterances: int
    num_frames: int
    parts: list[str]


def estimate_log_prior(sum_probs: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``log(sum_probs / num_frames)`` as float32, from ``(V,)`` summed frame posteriors."""
    if num_frames <= 0:
        raise ValueError("cannot estimate a prior from 0 frames")
    return (sum_probs.double() / num_frames).clamp_min(1e-30).log().float()


def apply_prior(log_probs: torch.Tensor, log_prior: torch.Tensor, scale: float) -> torch.Tensor:
    """Prior-corrected scores ``log_probs - scale · log_prior`` (not renormalised, as RETURNN).

    Args:
        log_probs: ``(..., V)`` log-posteriors.
        log_prior: ``(V,)`` log-prior.
        scale: the prior scale ``S``; 0 returns ``log_probs`` unchanged.
    """
    if log_probs.shape[-1] != log_prior.shape[-1]:
        raise ValueError(
            f"prior has {log_prior.shape[-1]} labels but the posteriors have {log_probs.shape[-1]}"
        )
    if scale == 0:
        return log_probs
    return log_probs - scale * log_prior.to(log_probs.dtype)


@torch.no_grad()
def _sum_train_posteriors(
    model: torch.nn.Module,
    config: ExperimentConfig,
    tokenizer: Tokenizer,
    num_utterances: int,
    device: torch.device,
    progress_bar: bool,
) -> tuple[torch.Tensor, int, int]:
    """Sum of the ``(V,)`` frame posteriors over ``num_utterances`` training utterances (a
    fixed random subset, seed 0; all of them when there are fewer) and the frame count."""
    cuts = load_parts(config.data, config.data.train_parts).to_eager()
    if len(cuts) > num_utterances:
        ids = random.Random(0).sample(sorted(cuts.ids), num_utterances)
        cuts = cuts.subset(cut_ids=ids)
    cuts = cuts.sort_by_duration()
    sampler = build_eval_sampler(cuts, max_batch_seconds=config.decode.max_batch_seconds)
    loader = build_dataloader(cuts, tokenizer, sampler=sampler, train=False, with_targets=False)
    total, frames, utterances = None, 0, 0
    for batch in tqdm(loader, desc="CTC prior", disable=not progress_bar, leave=False):
        log_probs, out_lens = model(batch["features"].to(device), batch["feature_lens"].to(device))
        # (B, T', V) -> mask the padded frames, sum over batch and time -> (V,)
        mask = torch.arange(log_probs.shape[1], device=device)[None, :] < out_lens[:, None]
        probs = log_probs.float().exp() * mask[..., None]
        batch_sum = probs.sum(dim=(0, 1)).double().cpu()
        total = batch_sum if total is None else total + batch_sum
        frames += int(out_lens.sum())
        utterances += len(out_lens)
    if total is None:
        raise ValueError(f"no training utterances in {config.data.train_parts} for the CTC prior")
    return total, frames, utterances


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ctc_prior_for_run(
    run_dir: str | Path,
    model: torch.nn.Module,
    config: ExperimentConfig,
    tokenizer: Tokenizer,
    checkpoint_path: Path,
    *,
    device: torch.device,
    num_utterances: int = DEFAULT_PRIOR_UTTERANCES,
    progress_bar: bool = True,
) -> CTCPrior:
    """The CTC prior of ``model`` (loaded from ``checkpoint_path``): read from
    ``RUN/ctc_prior.pt`` when that was estimated from the same checkpoint file and number of
    utterances, else estimated from the training parts and stored there.

    Args:
        model: the model of ``checkpoint_path``, in eval mode, on ``device``.
        config: the run's ``ExperimentConfig`` (its ``data`` locates the training parts).
        num_utterances: size of the random training subset (seed 0).
    """
    path = Path(run_dir) / PRIOR_FILE
    sha = _sha256(checkpoint_path)
    if path.is_file():
        try:
            stored = load_checkpoint(path)
        except CheckpointError as err:
            log.warning("%s; estimating the CTC prior again", err)
            stored = {}
        if stored.get("checkpoint_sha256") == sha and stored.get("requested") == num_utterances:
            return CTCPrior(
                stored["log_prior"],
                stored["checkpoint"],
                sha,
                stored["num_utterances"],
                stored["num_frames"],
                list(stored["parts"]),
            )
        if stored:
            log.info("%s is for %s; estimating it for %s", path, stored.get("checkpoint"), sha)
    total, frames, utterances = _sum_train_posteriors(
        model, config, tokenizer, num_utterances, device, progress_bar
    )
    prior = CTCPrior(
        estimate_log_prior(total, frames),
        checkpoint_path.name,
        sha,
        utterances,
        frames,
        list(config.data.train_parts),
    )
    save_checkpoint(
        {
            "log_prior": prior.log_prior,
            "checkpoint": prior.checkpoint,
            "checkpoint_sha256": sha,
            "requested": num_utterances,
            "num_utterances": utterances,
            "num_frames": frames,
            "parts": prior.parts,
        },
        path,
    )
    log.info("CTC prior from %d utterances (%d frames) stored in %s", utterances, frames, path)
    return prior
