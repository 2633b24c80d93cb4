"""Is one decode of a test set better than another, or is the difference test-set noise?

The paired bootstrap of Bisani & Ney (ICASSP 2004), as Kaldi's ``compute-wer-bootci``: the
utterances of the test set are resampled with replacement many times, the same resample for both
systems, and each system's corpus-level error rate is recomputed on every resample
(:func:`scipy.stats.bootstrap`, ``paired=True``, percentile intervals). Reported per measure (WER,
CER): each system's rate with its 95 % interval, the difference B − A with its interval, and the
probability of improvement — the share of resamples on which B has fewer errors per reference
word than A. A difference is significant at the 95 % level when its interval excludes zero.

What it does not cover: the bootstrap measures how much the *test set* could change a comparison
of two fixed models; how much another training seed would change it is a different, usually
larger, source of noise. A claim about a training method needs several seeds with paired
differences (``dmao compare``); this test is for one pair of decodes, e.g. two decoders or two
checkpoints of one model, or one large-corpus run per system where seeds are unaffordable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from dmao.evaluation.sclite import read_trn
from dmao.evaluation.wer import ScoreResult, read_hypotheses, score_corpus

__all__ = [
    "BootstrapComparison",
    "PairedDecodes",
    "RateInterval",
    "compare_decodes",
    "format_comparison",
    "paired_bootstrap",
    "read_paired_decodes",
]


@dataclass(frozen=True)
class RateInterval:
    """An error rate (or a difference of two) in %, with its bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class BootstrapComparison:
    """One measure (WER or CER) of systems A and B on the same utterances."""

    a: RateInterval
    b: RateInterval
    delta: RateInterval
    """B − A in absolute percentage points: negative means B makes fewer errors."""
    prob_b_better: float
    """Share of resamples on which B's rate is below A's (ties count as not better)."""
    resamples: int
    utterances: int
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval of the difference excludes zero."""
        return self.delta.low > 0 or self.delta.high < 0


def paired_bootstrap(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    ref_lengths: np.ndarray,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapComparison:
    """Paired bootstrap of two systems' corpus-level error rates.

    Args:
        errors_a, errors_b: errors per utterance, shape ``(U,)``, the same utterances in the
            same order.
        ref_lengths: reference length per utterance (words or characters), shape ``(U,)``.
        resamples: bootstrap resamples of the ``U`` utterances.
        confidence: level of the two-sided percentile intervals.
        seed: seed of the resampling (the same seed gives the same intervals).
    """
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, ref_lengths))
    if not a.shape == b.shape == n.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            f"expected per-utterance counts of one shape (U,) with U >= 2, got {a.shape}, "
            f"{b.shape}, {n.shape}"
        )
    if n.sum() <= 0:
        raise ValueError("the references are empty: no error rate to compare")

    def rate(errors: np.ndarray, lengths: np.ndarray, axis: int = -1) -> np.ndarray:
        return 100.0 * errors.sum(axis=axis) / np.maximum(lengths.sum(axis=axis), 1)

    def delta(x: np.ndarray, y: np.ndarray, lengths: np.ndarray, axis: int = -1) -> np.ndarray:
        return rate(y, lengths, axis) - rate(x, lengths, axis)

    def run(statistic: Callable[..., np.ndarray], data: tuple[np.ndarray, ...]) -> tuple:
        # The same seed and sample size: every statistic sees the same resampled utterances.
        res = stats.bootstrap(
            data, statistic, paired=True, vectorized=True, n_resamples=resamples,
            confidence_level=confidence, method="percentile", batch=1000, rng=seed,
        )  # fmt: skip
        value = float(statistic(*data))
        interval = RateInterval(
            value, float(res.confidence_interval.low), float(res.confidence_interval.high)
        )
        return interval, res.bootstrap_distribution

    rate_a, _ = run(rate, (a, n))
    rate_b, _ = run(rate, (b, n))
    diff, distribution = run(delta, (a, b, n))
    return BootstrapComparison(
        a=rate_a,
        b=rate_b,
        delta=diff,
        prob_b_better=float(np.mean(distribution < 0)),
        resamples=resamples,
        utterances=int(a.size),
        confidence=confidence,
    )


@dataclass(frozen=True)
class PairedDecodes:
    """Two decodes of the same utterances, scored utterance by utterance."""

    ids: list[str]
    a: ScoreResult
    b: ScoreResult


def _check_decode_folder(folder: Path) -> None:
    """Raise FileNotFoundError naming ``folder`` if it has neither hypotheses.txt nor trn files."""
    if (folder / "hypotheses.txt").is_file():
        return
    missing = [name for name in ("ref.trn", "hyp.trn") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: no {' or '.join(missing)} (nor hypotheses.txt); expected a decode folder "
            f"written by dmao decode (e.g. RUN/decode/test-greedy)"
        )


def _decode_texts(folder: Path, use_hypotheses: bool) -> tuple[dict[str, str], dict[str, str]]:
    """``(refs, hyps)`` by utterance id of a decode folder."""
    if use_hypotheses:
        rows = read_hypotheses(folder / "hypotheses.txt")
        return {i: ref for i, (ref, _) in rows.items()}, {i: hyp for i, (_, hyp) in rows.items()}
    return read_trn(folder / "ref.trn"), read_trn(folder / "hyp.trn")


def read_paired_decodes(dir_a: Path, dir_b: Path, *, aligner: str = "kaldialign") -> PairedDecodes:
    """Read two decode folders and score both on the utterances of A's reference, in its order:
    their ``hypotheses.txt`` (every ``dmao decode`` writes it, and ``dmao compare --archive``
    keeps it) when both have one, else their sclite files ``ref.trn`` and ``hyp.trn`` (also
    those of another toolkit).

    Raises:
        FileNotFoundError: a folder with neither.
        ValueError: the folders decode other utterances, or other reference texts.
    """
    for folder in (dir_a, dir_b):
        _check_decode_folder(folder)
    use_hypotheses = all((d / "hypotheses.txt").is_file() for d in (dir_a, dir_b))
    if not use_hypotheses:
        lacking = [d for d in (dir_a, dir_b)
                   if not all((d / name).is_file() for name in ("ref.trn", "hyp.trn"))]  # fmt: skip
        if lacking:
            raise FileNotFoundError(
                f"{lacking[0]} has hypotheses.txt but no ref.trn/hyp.trn, and the other folder "
                f"the trn files only: no common format to compare them in"
            )
    (ref_a, hyp_a), (ref_b, hyp_b) = (_decode_texts(d, use_hypotheses) for d in (dir_a, dir_b))
    for folder, ref, hyp in ((dir_a, ref_a, hyp_a), (dir_b, ref_b, hyp_b)):
        if set(hyp) != set(ref):
            raise ValueError(f"{folder}: its references and hypotheses are of other utterances")
    if set(ref_a) != set(ref_b):
        only_a, only_b = sorted(set(ref_a) - set(ref_b)), sorted(set(ref_b) - set(ref_a))
        raise ValueError(
            f"{dir_a} and {dir_b} decode other utterances ({len(only_a)} only in A, e.g. "
            f"{only_a[:1]}; {len(only_b)} only in B, e.g. {only_b[:1]}): compare decodes of "
            f"the same split"
        )
    differing = [i for i in ref_a if ref_a[i] != ref_b[i]]
    if differing:
        raise ValueError(
            f"{dir_a} and {dir_b}: {len(differing)} utterances have other reference texts, "
            f"e.g. {differing[0]}: {ref_a[differing[0]]!r} vs {ref_b[differing[0]]!r}"
        )
    ids = list(ref_a)
    refs = [ref_a[i] for i in ids]
    return PairedDecodes(
        ids,
        score_corpus(refs, [hyp_a[i] for i in ids], aligner=aligner),
        score_corpus(refs, [hyp_b[i] for i in ids], aligner=aligner),
    )


def compare_decodes(
    decodes: PairedDecodes, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> dict[str, BootstrapComparison]:
    """``{"WER": ..., "CER": ...}``: :func:`paired_bootstrap` of both measures."""
    out = {}
    for name, counts in (("WER", lambda u: u.word), ("CER", lambda u: u.char)):
        a = [counts(u) for u in decodes.a.utterances]
        b = [counts(u) for u in decodes.b.utterances]
        out[name] = paired_bootstrap(
            np.array([c.errors for c in a]),
            np.array([c.errors for c in b]),
            np.array([c.ref_len for c in a]),
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
    return out


def format_comparison(results: dict[str, BootstrapComparison], name_a: str, name_b: str) -> str:
    """A Markdown table of both systems' rates, the difference and the probability of
    improvement, then one line per measure saying whether the difference is significant."""
    first = next(iter(results.values()))
    level = f"{100 * first.confidence:g} %"
    head = "| | " + " | ".join(f"{m} % | {level} interval" for m in results) + " |"
    rule = "|---|" + "---:|---:|" * len(results)

    def cells(pick: Callable[[BootstrapComparison], RateInterval], signed: bool = False) -> str:
        fmt = "{:+.2f}" if signed else "{:.2f}"
        return " | ".join(
            f"{fmt.format(pick(r).value)} | [{fmt.format(pick(r).low)}, {fmt.format(pick(r).high)}]"
            for r in results.values()
        )

    lines = [
        head,
        rule,
        f"| A: {name_a} | {cells(lambda r: r.a)} |",
        f"| B: {name_b} | {cells(lambda r: r.b)} |",
        f"| B − A (points) | {cells(lambda r: r.delta, signed=True)} |",
        "",
    ]
    for measure, r in results.items():
        verdict = (
            f"B is {'better' if r.delta.high < 0 else 'worse'} than A at the {level} level"
            if r.significant
            else f"no significant difference at the {level} level (the interval holds 0)"
        )
        lines.append(
            f"{measure}: B better on {100 * r.prob_b_better:.1f} % of {r.resamples:,} paired "
            f"resamples of the {r.utterances:,} utterances; {verdict}."
        )
    return "\n".join(lines)
