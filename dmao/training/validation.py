"""The dev check during training: CTC loss per token and greedy-decoding WER/CER."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lhotse import CutSet
from torch import Tensor

from dmao.data.dataset import build_dataloader, build_eval_sampler
from dmao.data.tokenizer import Tokenizer
from dmao.decoding import greedy_decode
from dmao.evaluation import score_corpus
from dmao.training.distributed import DistributedContext

__all__ = ["CtcLossFn", "dev_scores"]

CtcLossFn = Callable[[dict[str, Any]], tuple[Tensor, int, Tensor, Tensor]]
"""``batch → (summed loss, target tokens, log-probs (B, T', V), output lengths (B,))``."""


@torch.no_grad()
def dev_scores(
    cuts: CutSet,
    tokenizer: Tokenizer,
    ctc_loss: CtcLossFn,
    dist: DistributedContext,
    *,
    max_batch_seconds: float,
    pin_memory: bool,
) -> dict[str, float]:
    """Dev CTC loss per token, WER and CER of greedy decoding, and the utterance count.

    ``cuts`` is this rank's shard (may be empty). The caller puts the model in eval mode. Under
    DDP the sums, references and hypotheses of every rank are gathered, so every rank returns the
    same numbers, equal to one process's.
    """
    loss_sum, tokens = 0.0, 0
    refs: list[str] = []
    hyps: list[str] = []
    if len(cuts) > 0:
        sampler = build_eval_sampler(cuts, max_batch_seconds=max_batch_seconds)
        loader = build_dataloader(
            cuts, tokenizer, sampler=sampler, train=False, pin_memory=pin_memory
        )
        for batch in loader:
            # Dev cuts went through the same CTC-feasibility filter as training ones.
            batch_loss, batch_tokens, log_probs, out_lens = ctc_loss(batch)
            loss_sum += float(batch_loss)
            tokens += batch_tokens
            log_probs = log_probs.float().cpu()  # (B, T', V)
            for ids in greedy_decode(log_probs, out_lens.cpu(), tokenizer.blank_id):
                hyps.append(tokenizer.decode(ids))
            refs.extend(batch["texts"])
    if dist.distributed:
        parts = dist.all_gather_object((loss_sum, tokens, refs, hyps))
        loss_sum = sum(p[0] for p in parts)
        tokens = sum(p[1] for p in parts)
        refs = [r for p in parts for r in p[2]]
        hyps = [h for p in parts for h in p[3]]
    score = score_corpus(refs, hyps)
    return {
        "loss": loss_sum / max(tokens, 1),
        "wer": score.wer,
        "cer": score.cer,
        "num_utterances": len(refs),
    }
