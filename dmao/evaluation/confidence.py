"""How good word confidences are: do they tell the recogniser's correct words from its errors?

Each hypothesis word is labelled *correct* when the minimum-edit-distance alignment to the
reference (:func:`dmao.evaluation.wer.align_words`) pairs it with the same reference word, else
*wrong* (a substitution or an insertion); deleted reference words have no confidence to judge.
Two standard numbers (the ones NeMo and NIST sclite report):

- **AUC-ROC**: the probability that a random correct word has a higher confidence than a random
  wrong one (ties count half): 0.5 is chance, 1 a perfect separation. It depends only on the
  ranking, so it judges a measure by what thresholding can do with it.
- **NCE** (normalized cross entropy, NIST): ``(H_base + Σ_correct log2 c + Σ_wrong log2(1 − c))
  / H_base``, with ``H_base`` the entropy of always answering the word accuracy ``p_c``: 1 is
  perfect, 0 no better than that constant, negative worse (confidences that are not
  probabilities, e.g. too close to 1 on wrong words). Confidences are clipped to ``[1e-6, 1 −
  1e-6]``.

Raw confidences rank words but are not probabilities. :func:`fit_calibration` fits Platt scaling
on a labelled set (dev): ``p = sigmoid(a · logit(c) + b)``, a monotone map (the ranking, hence
AUC-ROC, is unchanged) whose output reads as the chance that the word is right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import mannwhitneyu

from dmao.evaluation.wer import align_words

__all__ = [
    "Calibration",
    "ConfidenceQuality",
    "auc_roc",
    "calibration_on",
    "confidence_quality",
    "fit_calibration",
    "labelled_words",
    "nce",
    "quality_of",
    "word_correctness",
]

_CLIP = 1e-6


def word_correctness(ref: Sequence[str], hyp: Sequence[str]) -> list[bool]:
    """For each word of ``hyp``, in order: is it aligned to the same word of ``ref``?"""
    labels = [r == h for r, h in align_words(list(ref), list(hyp)) if h is not None]
    assert len(labels) == len(hyp)
    return labels


def auc_roc(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Area under the ROC curve of ``confidences`` as a detector of ``correct`` words
    (Mann–Whitney U / (n_correct · n_wrong)); NaN without both kinds of word."""
    right = [c for c, ok in zip(confidences, correct, strict=True) if ok]
    wrong = [c for c, ok in zip(confidences, correct, strict=True) if not ok]
    if not right or not wrong:
        return math.nan
    u = mannwhitneyu(right, wrong, alternative="two-sided").statistic
    return float(u) / (len(right) * len(wrong))


def nce(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """NIST normalized cross entropy of ``confidences`` as probabilities of ``correct``; NaN
    without both kinds of word."""
    n = len(correct)
    n_right = sum(bool(ok) for ok in correct)
    if n != len(confidences) or n == 0:
        raise ValueError(f"{len(confidences)} confidences for {n} words")
    if n_right in (0, n):
        return math.nan
    p = n_right / n
    base = -n_right * math.log2(p) - (n - n_right) * math.log2(1 - p)
    total = 0.0
    for c, ok in zip(confidences, correct, strict=True):
        c = min(max(float(c), _CLIP), 1 - _CLIP)
        total += math.log2(c) if ok else math.log2(1 - c)
    return (base + total) / base


@dataclass(frozen=True)
class ConfidenceQuality:
    """The confidence numbers of one decoded set."""

    num_words: int
    num_wrong: int
    auc_roc: float
    nce: float
    mean_correct: float
    """Mean confidence of the correct words."""
    mean_wrong: float
    """Mean confidence of the wrong words."""

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready (NaN → None)."""
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }


def labelled_words(
    refs: Sequence[str], hyp_words: Sequence[Sequence[str]], confidences: Sequence[Sequence[float]]
) -> tuple[list[float], list[bool]]:
    """Every hypothesis word's confidence and whether it is right (:func:`word_correctness`),
    over all utterances (arguments as :func:`confidence_quality`'s)."""
    flat_conf: list[float] = []
    flat_ok: list[bool] = []
    for ref, words, conf in zip(refs, hyp_words, confidences, strict=True):
        if len(words) != len(conf):
            raise ValueError(f"{len(conf)} confidences for {len(words)} words: {' '.join(words)}")
        flat_ok += word_correctness(ref.split(), words)
        flat_conf += [float(c) for c in conf]
    return flat_conf, flat_ok


def confidence_quality(
    refs: Sequence[str], hyp_words: Sequence[Sequence[str]], confidences: Sequence[Sequence[float]]
) -> ConfidenceQuality:
    """AUC-ROC and NCE over a set of utterances.

    Args:
        refs: each utterance's reference text (normalised as scored).
        hyp_words: each utterance's hypothesis words.
        confidences: each utterance's word confidences, one per hypothesis word.
    """
    return quality_of(*labelled_words(refs, hyp_words, confidences))


def quality_of(flat_conf: Sequence[float], flat_ok: Sequence[bool]) -> ConfidenceQuality:
    """AUC-ROC and NCE of words already labelled (:func:`labelled_words`)."""
    right = [c for c, ok in zip(flat_conf, flat_ok, strict=True) if ok]
    wrong = [c for c, ok in zip(flat_conf, flat_ok, strict=True) if not ok]
    return ConfidenceQuality(
        num_words=len(flat_ok),
        num_wrong=len(wrong),
        auc_roc=auc_roc(flat_conf, flat_ok),
        nce=nce(flat_conf, flat_ok) if flat_ok else math.nan,
        mean_correct=sum(right) / len(right) if right else math.nan,
        mean_wrong=sum(wrong) / len(wrong) if wrong else math.nan,
    )


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of word confidences: ``sigmoid(a · logit(c) + b)``; ``a > 0`` keeps the
    order."""

    a: float
    b: float

    def __call__(self, confidence: float) -> float:
        """The calibrated confidence of one raw confidence in [0, 1]."""
        c = min(max(float(confidence), _CLIP), 1 - _CLIP)
        return float(expit(self.a * logit(c) + self.b))


def fit_calibration(confidences: Sequence[float], correct: Sequence[bool]) -> Calibration:
    """Platt scaling fitted by maximum likelihood (log-loss, L-BFGS) to words labelled right or
    wrong, e.g. a dev decode's (``hyp.ctm`` against ``ref.trn``).

    Raises:
        ValueError: without both right and wrong words (nothing to fit).
    """
    x = logit(np.clip(np.asarray(confidences, dtype=np.float64), _CLIP, 1 - _CLIP))
    y = np.asarray(correct, dtype=np.float64)
    if x.shape != y.shape or not 0 < y.sum() < len(y):
        raise ValueError(
            f"calibration needs right and wrong words: {int(y.sum())} right of {len(y)} words "
            f"({len(x)} confidences)"
        )

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * x + theta[1]
        # log(1 + e^z) - y z, the negative log-likelihood, and its gradient.
        value = np.logaddexp(0.0, z) - y * z
        residual = expit(z) - y
        return float(value.mean()), np.array([(residual * x).mean(), residual.mean()])

    fit = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration(float(fit.x[0]), float(fit.x[1]))


def calibration_on(flat_conf: Sequence[float], flat_ok: Sequence[bool]) -> Calibration | None:
    """:func:`fit_calibration` on words already labelled (:func:`labelled_words`); None when
    they are all right or all wrong."""
    if not 0 < sum(flat_ok) < len(flat_ok):
        return None
    return fit_calibration(flat_conf, flat_ok)
