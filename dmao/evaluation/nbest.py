"""N-best lists: the file ``dmao decode --nbest N`` writes, and the oracle WER of the lists.

The oracle WER takes, for every utterance, the hypothesis of its N-best list with the fewest word
errors (ties: the higher-ranked one): how low the WER could go if a rescoring picked perfectly
among what the search kept — the headroom a second pass (another LM, a larger model) has.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dmao.evaluation.wer import ErrorCounts, count_errors

__all__ = ["NBest", "OracleScore", "distinct_texts", "oracle_score", "read_nbest", "write_nbest"]

_H = TypeVar("_H")

NBest = list[tuple[str, float]]
"""One utterance's hypotheses, best first: ``(text, search score)``."""


def distinct_texts(hypotheses: Iterable[_H], text_of: Callable[[_H], str], n: int) -> list[_H]:
    """The first ``n`` of ``hypotheses`` (best first) whose texts differ: a text reached again
    (another path to the same words) is kept once, at its best rank."""
    kept: list[_H] = []
    seen: set[str] = set()
    for hypothesis in hypotheses:
        text = text_of(hypothesis)
        if text not in seen:
            seen.add(text)
            kept.append(hypothesis)
            if len(kept) == n:
                break
    return kept


@dataclass(frozen=True)
class OracleScore:
    """Word errors of the best hypothesis of each N-best list, summed over the split."""

    word: ErrorCounts
    chosen_ranks: tuple[int, ...]
    """Rank (1 = the search's best) of the hypothesis the oracle took, per utterance."""
    mean_length: float
    """Hypotheses per list, on average (fewer than N where the beam held fewer texts)."""

    @property
    def wer(self) -> float:
        return self.word.rate


def oracle_score(
    refs: Sequence[str],
    nbests: Sequence[NBest],
    normalize: Callable[[str], str] | None = None,
    aligner: str = "kaldialign",
) -> OracleScore:
    """The oracle WER of ``nbests`` (one list per reference, each non-empty, best first).

    Args:
        normalize: applied to references and hypotheses before counting (default
            :func:`dmao.data.text.normalize_transcript`, as every dmao score).
        aligner: ``kaldialign`` or ``sclite`` (:func:`dmao.evaluation.wer.count_errors`).
    """
    if len(refs) != len(nbests):
        raise ValueError(f"{len(refs)} references but {len(nbests)} N-best lists")
    if normalize is None:
        from dmao.data.text import normalize_transcript as normalize
    total = ErrorCounts()
    ranks = []
    for i, (ref, nbest) in enumerate(zip(refs, nbests, strict=True)):
        if not nbest:
            raise ValueError(f"N-best list {i} is empty")
        ref_words = normalize(ref).split()
        counts = [count_errors(ref_words, normalize(text).split(), aligner) for text, _ in nbest]
        rank = min(range(len(counts)), key=lambda r: counts[r].errors)  # first of the fewest
        total = total + counts[rank]
        ranks.append(rank + 1)
    mean_length = sum(len(n) for n in nbests) / max(len(nbests), 1)
    return OracleScore(total, tuple(ranks), mean_length)


def write_nbest(path: str | Path, ids: Sequence[str], nbests: Sequence[NBest]) -> None:
    """TSV with a header: ``id``, ``rank`` (1 = best), ``score`` (the search's), ``text``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "rank", "score", "text"])
        for utt, nbest in zip(ids, nbests, strict=True):
            for rank, (text, score) in enumerate(nbest, start=1):
                writer.writerow([utt, rank, f"{score:.4f}", text])


def read_nbest(path: str | Path) -> dict[str, NBest]:
    """The lists of a file :func:`write_nbest` wrote, by utterance id, best first."""
    lists: dict[str, NBest] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            lists.setdefault(row["id"], []).append((row["text"], float(row["score"])))
    return lists
