"""Decode a corpus split with a trained run and score it (``dmao decode``)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from dmao.config import config_from_dict
from dmao.data.dataset import build_dataloader, build_eval_sampler
from dmao.data.pipeline import load_parts
from dmao.data.tokenizer import load_tokenizer
from dmao.decoding.ctc import beam_search_batch, greedy_decode
from dmao.evaluation.wer import ScoreResult, score_corpus, write_hypotheses
from dmao.models.architecture import EncoderArchitecture
from dmao.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from dmao.training.model_setup import build_model_from_config
from dmao.training.recipe import resolve_device

__all__ = ["DecodeResult", "decode_split", "load_trained_model", "resolve_checkpoint"]

log = logging.getLogger(__name__)


@dataclass
class DecodeResult:
    """Score of one decoded split plus where the hypotheses were written."""

    split: str
    method: str
    score: ScoreResult
    hypotheses_path: Path
    real_time_factor: float
    """Decoding wall time divided by the audio duration."""
    checkpoint: str


def resolve_checkpoint(run_dir: Path, which: str) -> Path:
    """``best`` → ``best.pt`` (falls back to the newest), ``last`` → newest, else a file name."""
    ckpt_dir = run_dir / "checkpoints"
    if which == "best" and (ckpt_dir / "best.pt").is_file():
        return ckpt_dir / "best.pt"
    if which in ("best", "last"):
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise CheckpointError(f"no checkpoint in {ckpt_dir}; has the run trained?")
        return path
    path = Path(which)
    return path if path.is_file() else ckpt_dir / which


def load_trained_model(run_dir: Path, which: str, device: torch.device):
    """The model of a run at the given checkpoint (with its own per-layer architecture), in eval
    mode, plus the run's config, tokenizer and the checkpoint path."""
    path = resolve_checkpoint(run_dir, which)
    state = load_checkpoint(path, map_location=device)
    config = config_from_dict(state["config"], source=str(path))
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = build_model_from_config(
        config.model,
        tokenizer.vocab_size,
        architecture=EncoderArchitecture.from_dict(state["architecture"]),
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, tokenizer, path


@torch.no_grad()
def decode_split(
    run_dir: str | Path,
    split: str,
    *,
    method: str | None = None,
    beam_size: int | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    progress_bar: bool = True,
) -> DecodeResult:
    """Decode corpus part ``split`` with the run's model; write ``RUN/decode/<split>-<method>/``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a dmao run folder (no config.yaml)")
    with open(run_dir / "config.yaml") as f:
        run_config = config_from_dict(yaml.safe_load(f), source=str(run_dir / "config.yaml"))
    dec = run_config.decode
    method = method or dec.method
    beam_size = beam_size or dec.beam_size
    if method not in ("greedy", "beam"):
        raise ValueError(f"decoding method must be 'greedy' or 'beam', got {method!r}")
    dev = resolve_device(device)
    model, config, tokenizer, ckpt_path = load_trained_model(
        run_dir, checkpoint or dec.checkpoint, dev
    )

    cuts = load_parts(config.data, [split]).to_eager().sort_by_duration()
    sampler = build_eval_sampler(cuts, max_batch_seconds=dec.max_batch_seconds)
    loader = build_dataloader(cuts, tokenizer, sampler=sampler, train=False, with_targets=False)
    ids, refs, hyps = [], [], []
    audio_seconds = 0.0
    start = time.perf_counter()
    for batch in tqdm(loader, desc=f"decode {split}", disable=not progress_bar, leave=False):
        log_probs, out_lens = model(batch["features"].to(dev), batch["feature_lens"].to(dev))
        log_probs, out_lens = log_probs.cpu(), out_lens.cpu()
        if method == "greedy":
            token_seqs = greedy_decode(log_probs, out_lens, tokenizer.blank_id)
        else:
            token_seqs = beam_search_batch(log_probs, out_lens, beam_size, tokenizer.blank_id)
        hyps.extend(tokenizer.decode(t) for t in token_seqs)
        refs.extend(batch["texts"])
        ids.extend(batch["cut_ids"])
        audio_seconds += float(batch["feature_lens"].sum()) * 0.01  # 10 ms frame shift
    elapsed = time.perf_counter() - start

    score = score_corpus(refs, hyps)
    out_dir = run_dir / "decode" / f"{split}-{method}"
    out_dir.mkdir(parents=True, exist_ok=True)
    hyp_path = out_dir / "hypotheses.txt"
    write_hypotheses(hyp_path, ids, refs, hyps)
    result = DecodeResult(
        split=split,
        method=method if method == "greedy" else f"beam{beam_size}",
        score=score,
        hypotheses_path=hyp_path,
        real_time_factor=elapsed / max(audio_seconds, 1e-9),
        checkpoint=ckpt_path.name,
    )
    with open(out_dir / "result.json", "w") as f:
        json.dump(
            {
                "split": split,
                "method": result.method,
                "checkpoint": result.checkpoint,
                "wer": score.wer,
                "cer": score.cer,
                "num_utterances": len(refs),
                "audio_seconds": audio_seconds,
                "decode_seconds": elapsed,
                "real_time_factor": result.real_time_factor,
                "summary": score.summary(),
            },
            f,
            indent=1,
        )
    return result
