"""Word and character error rates of a test set, aligned by kaldialign (minimum edit distance,
the default) or as NIST sclite aligns (weighted costs).

Conventions (the same as Kaldi's ``compute-wer`` and jiwer for WER):

* Both sides are normalised first, by default with :func:`dmao.data.text.normalize_transcript`
  (the normalisation the training targets go through: NFKC, upper case, hyphens as word
  boundaries, other punctuation removed except word-internal apostrophes, whitespace collapsed),
  so a hypothesis is not penalised for the casing or punctuation of the reference. Words are
  then the whitespace-separated tokens.
* Rates are corpus level: ``Σ errors / Σ reference length`` over all utterances, where errors
  are the substitutions, deletions and insertions of an alignment. An utterance with an empty
  reference therefore adds its insertions to the numerator and nothing to the denominator. A
  corpus whose references are all empty has rate 0 if the hypotheses are empty too, and ``inf``
  otherwise.
* Two aligners (``aligner=``): ``"kaldialign"`` (the default; Kaldi's ``compute-wer``, jiwer)
  minimises the plain edit distance (unit costs); ``"sclite"`` reproduces NIST sclite, which
  minimises weighted costs (substitution 4, insertion and deletion 3) with its own tie-breaking
  (:mod:`dmao.evaluation.sclite_align`). The two agree on most utterances but not on high-error
  ones, where sclite may report more errors (a substitution costs more than half of an
  insertion plus a deletion) or split them differently.
* CER counts the characters of the normalised words, **without spaces**: a hypothesis that only
  misplaces a word boundary ("AB C" for "A BC") has two word errors but no character errors.
  jiwer's ``cer`` keeps inner spaces as characters; ours equals jiwer's ``cer`` with
  ``RemoveWhiteSpace(replace_by_space=False)`` as the transform (tested in
  ``tests/evaluation/test_wer.py``).
* The sentence error rate is the fraction of utterances whose word sequence is not exactly right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaldialign

from dmao.evaluation.sclite_align import sclite_alignment, sclite_edit_counts

__all__ = [
    "ALIGNERS",
    "ErrorCounts",
    "ScoreResult",
    "UtteranceScore",
    "align_words",
    "count_errors",
    "format_results_table",
    "read_hypotheses",
    "score_corpus",
    "write_hypotheses",
]

# Alignment filler for kaldialign: words come from str.split(), so a single space is never one.
_EPS = " "

ALIGNERS = ("kaldialign", "sclite")
"""``kaldialign``: minimum edit distance, unit costs; ``sclite``: NIST sclite's weighted costs."""


def _check_aligner(aligner: str) -> None:
    if aligner not in ALIGNERS:
        raise ValueError(f"aligner must be one of {ALIGNERS}, got {aligner!r}")


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations between a reference and a hypothesis (or sums of them over a corpus)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0
    """Number of reference symbols (words or characters)."""
    hyp_len: int = 0
    """Number of hypothesis symbols."""

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """``errors / ref_len`` as a fraction; 0 for 0/0 and ``inf`` for errors over an empty
        reference."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else math.inf
        return self.errors / self.ref_len

    def as_record(self) -> dict[str, int]:
        """The counts ``result.json`` keeps: substitutions, deletions, insertions, ref_len."""
        return {
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "ref_len": self.ref_len,
        }

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            substitutions=self.substitutions + other.substitutions,
            deletions=self.deletions + other.deletions,
            insertions=self.insertions + other.insertions,
            ref_len=self.ref_len + other.ref_len,
            hyp_len=self.hyp_len + other.hyp_len,
        )


def align_words(
    ref: list[str], hyp: list[str], aligner: str = "kaldialign"
) -> list[tuple[str | None, str | None]]:
    """Alignment of two word lists: minimum edit distance (``kaldialign``, unit costs) or
    sclite's weighted alignment (``sclite``).

    Returns:
        Pairs ``(ref_word, hyp_word)`` in order: ``(w, None)`` is a deletion, ``(None, w)`` an
        insertion, and a pair of different words a substitution.
    """
    _check_aligner(aligner)
    if aligner == "sclite":
        return sclite_alignment(ref, hyp)
    alignment = kaldialign.align(ref, hyp, _EPS)
    return [(None if r == _EPS else r, None if h == _EPS else h) for r, h in alignment]


def count_errors(
    ref: Sequence[str], hyp: Sequence[str], aligner: str = "kaldialign"
) -> ErrorCounts:
    """Substitutions, deletions and insertions turning ``ref`` into ``hyp``.

    Args:
        ref, hyp: symbol sequences: word lists, or strings for characters.
        aligner: ``kaldialign`` (unit costs) or ``sclite`` (sclite's weighted alignment).
    """
    _check_aligner(aligner)
    if aligner == "sclite":
        subs, dels, ins = sclite_edit_counts(ref, hyp)
    else:
        counts = kaldialign.edit_distance(ref, hyp)
        subs, dels, ins = counts["sub"], counts["del"], counts["ins"]
    return ErrorCounts(
        substitutions=subs, deletions=dels, insertions=ins, ref_len=len(ref), hyp_len=len(hyp)
    )


def _default_normalizer() -> Callable[[str], str]:
    # Imported when scoring, not with this module, so that dmao.evaluation stays importable on
    # its own (e.g. for scoring hypothesis files of another toolkit).
    from dmao.data.text import normalize_transcript

    return normalize_transcript


@dataclass(frozen=True)
class UtteranceScore:
    """Scores of one utterance, on the normalised texts."""

    ref: str
    hyp: str
    word: ErrorCounts
    char: ErrorCounts


@dataclass(frozen=True)
class ScoreResult:
    """Corpus-level scores of a test set and the per-utterance details behind them."""

    word: ErrorCounts
    """Word error counts summed over the corpus."""
    char: ErrorCounts
    """Character error counts (spaces excluded) summed over the corpus."""
    num_utterances: int
    num_sentence_errors: int
    """Utterances whose word sequence differs from the reference."""
    utterances: list[UtteranceScore] = field(default_factory=list, repr=False)
    aligner: str = "kaldialign"
    """Which alignment the counts come from (:data:`ALIGNERS`)."""

    @property
    def wer(self) -> float:
        """Word error rate as a fraction (0.1234 is 12.34 %)."""
        return self.word.rate

    @property
    def cer(self) -> float:
        """Character error rate as a fraction, spaces excluded."""
        return self.char.rate

    @property
    def sentence_error_rate(self) -> float:
        return self.num_sentence_errors / self.num_utterances if self.num_utterances else 0.0

    def as_record(self, aligner: str) -> dict[str, Any]:
        """The scores every ``result.json`` keeps (what ``dmao results`` reads), scored with
        ``aligner``: wer, cer (fractions), num_utterances, summary, aligner, word_counts and
        char_counts."""
        return {
            "wer": self.wer,
            "cer": self.cer,
            "num_utterances": self.num_utterances,
            "summary": self.summary(),
            "aligner": aligner,
            "word_counts": self.word.as_record(),
            "char_counts": self.char.as_record(),
        }

    def summary(self) -> str:
        """One line in the style of Kaldi's ``compute-wer``, e.g.
        ``WER 12.34 % [ 123 / 997, 10 ins, 20 del, 93 sub ] CER 4.10 % [ 160 / 3902 ]
        SER 40.00 % [ 4 / 10 ]``."""
        w = self.word
        return (
            f"WER {100 * self.wer:.2f} % [ {w.errors} / {w.ref_len}, {w.insertions} ins, "
            f"{w.deletions} del, {w.substitutions} sub ] "
            f"CER {100 * self.cer:.2f} % [ {self.char.errors} / {self.char.ref_len} ] "
            f"SER {100 * self.sentence_error_rate:.2f} % "
            f"[ {self.num_sentence_errors} / {self.num_utterances} ]"
        )

    def table_row(self, system: str, split: str) -> dict[str, object]:
        """A row for :func:`format_results_table`."""
        return {
            "system": system,
            "split": split,
            "wer": self.wer,
            "cer": self.cer,
            "num_utterances": self.num_utterances,
            "num_words": self.word.ref_len,
        }


def score_corpus(
    refs: Sequence[str],
    hyps: Sequence[str],
    normalize: Callable[[str], str] | None = None,
    aligner: str = "kaldialign",
) -> ScoreResult:
    """Score hypotheses against references (see the module docstring for the conventions).

    Args:
        refs: reference transcripts, one per utterance.
        hyps: hypothesis transcripts, in the same order.
        normalize: text normalisation applied to both sides. ``None`` means
            :func:`dmao.data.text.normalize_transcript`; pass ``lambda text: text`` to score the
            texts as they are (still split on whitespace).
        aligner: ``kaldialign`` (minimum edit distance) or ``sclite`` (sclite's weighted
            alignment; characters as ``sclite -c``, spaces ignored).

    Returns:
        A :class:`ScoreResult` with corpus WER/CER, S/D/I counts, sentence error rate and
        per-utterance details in input order.
    """
    if len(refs) != len(hyps):
        raise ValueError(
            f"got {len(refs)} references but {len(hyps)} hypotheses; they must pair up one to one"
        )
    _check_aligner(aligner)
    if normalize is None:
        normalize = _default_normalizer()
    word_total, char_total = ErrorCounts(), ErrorCounts()
    num_sentence_errors = 0
    utterances = []
    for ref_text, hyp_text in zip(refs, hyps, strict=True):
        ref_words, hyp_words = normalize(ref_text).split(), normalize(hyp_text).split()
        word = count_errors(ref_words, hyp_words, aligner)
        char = count_errors("".join(ref_words), "".join(hyp_words), aligner)
        word_total, char_total = word_total + word, char_total + char
        num_sentence_errors += ref_words != hyp_words
        utterances.append(UtteranceScore(" ".join(ref_words), " ".join(hyp_words), word, char))
    return ScoreResult(
        word=word_total,
        char=char_total,
        num_utterances=len(utterances),
        num_sentence_errors=num_sentence_errors,
        utterances=utterances,
        aligner=aligner,
    )


def write_hypotheses(
    path: str | Path,
    ids: Sequence[str],
    refs: Sequence[str],
    hyps: Sequence[str],
    normalize: Callable[[str], str] | None = None,
    aligner: str = "kaldialign",
) -> ScoreResult:
    """Write a per-utterance TSV (``id``, ``errors``, ``ref_words``, ``ref``, ``hyp``) and return
    the scores.

    ``ref`` and ``hyp`` are written normalised, i.e. as they were scored (``normalize`` and
    ``aligner`` as in :func:`score_corpus`); ``errors`` is the word error count. Rows keep the
    input order, and the file ends with a ``# `` line holding :meth:`ScoreResult.summary`.
    """
    if len(ids) != len(refs):
        raise ValueError(f"got {len(ids)} utterance ids but {len(refs)} references")
    result = score_corpus(refs, hyps, normalize=normalize, aligner=aligner)
    lines = ["id\terrors\tref_words\tref\thyp"]
    for utt_id, utt in zip(ids, result.utterances, strict=True):
        lines.append(f"{utt_id}\t{utt.word.errors}\t{utt.word.ref_len}\t{utt.ref}\t{utt.hyp}")
    lines.append(f"# {result.summary()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result


def read_hypotheses(path: str | Path) -> dict[str, tuple[str, str]]:
    """``{id: (ref, hyp)}`` of a file :func:`write_hypotheses` wrote (texts as scored).

    Raises:
        ValueError: naming the file and line where a row does not have the five columns, or an id
            repeats.
    """
    path = Path(path)
    rows: dict[str, tuple[str, str]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["id", "errors", "ref_words", "ref", "hyp"]:
        raise ValueError(f"{path}:1: expected the header 'id errors ref_words ref hyp' (tabs)")
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("# ") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected 5 tab-separated columns: {line!r}")
        if fields[0] in rows:
            raise ValueError(f"{path}:{number}: utterance id {fields[0]} appears twice")
        rows[fields[0]] = (fields[3], fields[4])
    return rows


_TABLE_COLUMNS = (
    # (header, row key, formatter, right-aligned)
    ("system", "system", str, False),
    ("split", "split", str, False),
    ("WER (%)", "wer", lambda rate: f"{100 * rate:.2f}", True),
    ("CER (%)", "cer", lambda rate: f"{100 * rate:.2f}", True),
    ("#utts", "num_utterances", str, True),
    ("#words", "num_words", str, True),
)


def format_results_table(rows: list[dict]) -> str:
    """Markdown table of results, one row per (system, split).

    Args:
        rows: dicts with keys ``system``, ``split``, ``wer`` and ``cer`` (fractions),
            ``num_utterances`` and ``num_words``, e.g. from :meth:`ScoreResult.table_row`.

    Returns:
        The table, columns padded so it also reads well as plain text.
    """
    keys = [key for _, key, _, _ in _TABLE_COLUMNS]
    cells = []
    for index, row in enumerate(rows):
        missing = [key for key in keys if key not in row]
        if missing:
            raise KeyError(f"results row {index} lacks {missing}; expected the keys {keys}")
        cells.append([fmt(row[key]) for _, key, fmt, _ in _TABLE_COLUMNS])
    headers = [header for header, _, _, _ in _TABLE_COLUMNS]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]

    def line(texts: list[str]) -> str:
        padded = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, (_, _, _, right) in zip(texts, widths, _TABLE_COLUMNS, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width - 1) + ":" if right else "-" * width
        for width, (_, _, _, right) in zip(widths, _TABLE_COLUMNS, strict=True)
    ]
    return "\n".join([line(headers), line(rule), *(line(row) for row in cells)])
