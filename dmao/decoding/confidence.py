"""Word confidence from the CTC posteriors: how sure the acoustic model was of each word.

The measures of Laptev & Ginsburg, "Fast entropy-based methods of word-level confidence estimation
for end-to-end automatic speech recognition" (SLT 2022), as NeMo implements them:

1. **Frame confidence** in [0, 1] from the frame's distribution ``p`` over the ``V`` labels
   (blank included), 1 for a one-hot frame and 0 for a uniform one:

   - ``entropy`` (the default): the Tsallis entropy ``H_α = (1 − Σ p^α) / (α − 1)`` mapped by
     ``(exp(−H_α) − exp(−H_max)) / (1 − exp(−H_max))`` with ``H_max = (V^(1−α) − 1) / (1 − α)``,
     the entropy of the uniform distribution (α = 1: the Gibbs/Shannon entropy ``−Σ p log p``);
   - ``max_prob``: the probability of the best label, ``(p_max · V − 1) / (V − 1)``.

2. **Word confidence**: the frame confidences of the frames in which the word's tokens are
   emitted or repeated (blank frames excluded, as NeMo's ``exclude_blank``), aggregated by
   ``min``, ``mean`` or ``prod``.

It is computed from the model's own posteriors — before a CTC prior is divided out, whichever
search (greedy, beam, LM) chose the words — so it says how sure the *acoustic model* was.

The defaults were chosen on dev of the built-in corpus by how well the confidences separate
correct from wrong words (AUC-ROC, :mod:`dmao.evaluation.confidence`; BENCHMARKS.md, "Word
confidence", ``benchmarks/bench_confidence.py``): the Gibbs entropy (α = 1) for every search,
aggregated by ``min`` for greedy and beam search and by ``mean`` for the LM search
(:meth:`ConfidenceMeasure.for_method`). NeMo's default (Tsallis, α = 0.33, min) ranked words
almost as well after greedy decoding but gave confidences near 0 (NCE far below 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "AGGREGATIONS",
    "MEASURES",
    "ConfidenceMeasure",
    "aggregate",
    "frame_confidence",
]

DEFAULT_ALPHA = 1.0

MEASURES = ("entropy", "max_prob")
AGGREGATIONS = ("min", "mean", "prod")


@dataclass(frozen=True)
class ConfidenceMeasure:
    """How a word's confidence is computed: the frame ``measure`` (``entropy`` or
    ``max_prob``), the entropy's ``alpha`` (> 0; 1 = Gibbs, else Tsallis) and the word
    ``aggregation``."""

    measure: str = "entropy"
    alpha: float = DEFAULT_ALPHA
    aggregation: str = "min"

    @classmethod
    def for_method(cls, method: str) -> ConfidenceMeasure:
        """The default for a search (``greedy``, ``beam``, ``lm``): Gibbs entropy, ``mean``
        over the word's frames after the LM search, ``min`` otherwise (chosen on dev)."""
        return cls(aggregation="mean" if method == "lm" else "min")

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"confidence measure must be one of {MEASURES}, got {self.measure!r}")
        if not self.alpha > 0:
            raise ValueError(f"confidence alpha must be > 0, got {self.alpha}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"confidence aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}"
            )

    @property
    def label(self) -> str:
        """Short name, e.g. ``entropy(a=0.33)/min``."""
        if self.measure == "max_prob":
            return f"max_prob/{self.aggregation}"
        return f"entropy(a={self.alpha:g})/{self.aggregation}"


def frame_confidence(log_probs: Tensor, measure: ConfidenceMeasure | None = None) -> Tensor:
    """Confidence of every frame.

    Args:
        log_probs: ``(T, V)`` log-probabilities over the ``V`` labels (blank included); rows
            are renormalised, so log-softmax outputs and their float16 roundings both work.
        measure: the frame measure (default: the Gibbs entropy); its aggregation is not used
            here.

    Returns:
        ``(T,)`` float32 in [0, 1]: 1 for a one-hot frame, 0 for a uniform one.
    """
    measure = measure or ConfidenceMeasure()
    if log_probs.dim() != 2 or log_probs.shape[1] < 2:
        raise ValueError(f"log_probs must be (T, V) with V >= 2, got {tuple(log_probs.shape)}")
    x = torch.log_softmax(log_probs.detach().double(), dim=-1)
    v = x.shape[1]
    if measure.measure == "max_prob":
        confidence = (x.max(dim=-1).values.exp() * v - 1) / (v - 1)
    elif measure.alpha == 1.0:  # Gibbs entropy, exponentially normalised
        p = x.exp()
        confidence = (torch.xlogy(p, p).sum(-1).exp() * v - 1) / (v - 1)
    else:  # Tsallis entropy, exponentially normalised
        t = measure.alpha
        neg_entropy = (1 - (x * t).exp().sum(-1)) / (1 - t)  # −H_α
        floor = math.exp((1 - v ** (1 - t)) / (1 - t))  # exp(−H_max)
        confidence = (neg_entropy.exp() - floor) / (1 - floor)
    return confidence.clamp(0.0, 1.0).float()


def aggregate(values: Sequence[float], aggregation: str = "min") -> float:
    """``min``, ``mean`` or ``prod`` of a non-empty sequence of frame confidences."""
    if not values:
        raise ValueError("no frame confidences to aggregate")
    if aggregation == "min":
        return float(min(values))
    if aggregation == "mean":
        return float(sum(values) / len(values))
    if aggregation == "prod":
        return float(math.prod(values))
    raise ValueError(f"confidence aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
