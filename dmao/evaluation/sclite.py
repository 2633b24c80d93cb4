"""NIST SCTK scoring formats: ``trn`` transcripts and ``ctm`` time-marked words, and a runner for
``sclite`` itself where it is installed (Debian/Ubuntu: ``apt-get install sctk``).

* ``trn``: one utterance per line, ``WORD WORD … (utterance-id)``. ``sclite -i rm`` takes the
  speaker to be the part of the id before the first ``-`` or ``_``; LibriSpeech-style ids
  (``SPEAKER-CHAPTER-UTT``) are already of that form, and :func:`trn_id` prefixes the speaker when
  an id is not. Lines are sorted by id; texts are written as scored (normalised).
* ``ctm``: one word per line, ``utterance-id channel start duration WORD`` with times in seconds
  (two decimals, the 10 ms resolution of the features), channel ``A``, sorted by utterance id
  and start time; a sixth field, where present, is the word's confidence in [0, 1] (NIST's
  ``[confidence]``; :mod:`dmao.decoding.confidence`).

``sclite`` does not count minimum-edit-distance errors: it aligns with weighted costs
(substitution 4, insertion and deletion 3; :mod:`dmao.evaluation.sclite_align`), so on
high-error utterances its counts can differ from those of the default scorer
(:func:`dmao.evaluation.wer.score_corpus` with ``aligner="kaldialign"``, unit costs) — more
errors, or the same number split differently. ``aligner="sclite"`` (``dmao decode --align
sclite``) reproduces sclite's alignment and counts exactly; the tests check that utterance by
utterance against the ``sclite`` binary where it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dmao.decoding.timing import WordTiming

__all__ = [
    "SCLITE_MISSING",
    "ScliteScore",
    "ctm_lines",
    "find_sclite",
    "read_ctm",
    "read_trn",
    "sclite_utterance_counts",
    "score_with_sclite",
    "trn_id",
    "write_ctm",
    "write_trn",
]

SCLITE_MISSING = "sclite (NIST SCTK) is not installed: apt-get install sctk"

_TRN_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


def trn_id(utterance_id: str, speaker: str | None = None) -> str:
    """The ``trn`` id of an utterance: ``speaker-utterance`` unless the id already starts with
    the speaker (or no speaker is known); whitespace and parentheses are not allowed in it."""
    if not utterance_id or re.search(r"[\s()]", utterance_id):
        raise ValueError(f"utterance id {utterance_id!r} cannot be a trn id (no spaces or parens)")
    if speaker and not re.match(rf"{re.escape(speaker)}[-_]", utterance_id):
        return f"{speaker}-{utterance_id}"
    return utterance_id


def write_trn(path: str | Path, texts: Mapping[str, str]) -> None:
    """Write ``{trn id: text}`` as a ``trn`` file, sorted by id (texts written as given)."""
    lines = []
    for utt_id in sorted(texts):
        trn_id(utt_id)  # validates the id
        text = " ".join(texts[utt_id].split())
        if "(" in text or ")" in text:
            raise ValueError(f"{utt_id}: trn text may not contain parentheses: {text!r}")
        lines.append(f"{text} ({utt_id})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_trn(path: str | Path) -> dict[str, str]:
    """Read a ``trn`` file into ``{id: text}``.

    Raises:
        ValueError: naming the file and line where a line has no ``(id)`` or an id repeats.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _TRN_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'TEXT (utterance-id)', got {line!r}")
        if match["id"] in texts:
            raise ValueError(f"{path}:{number}: utterance id {match['id']} appears twice")
        texts[match["id"]] = " ".join(match["text"].split())
    return texts


def ctm_lines(utt_id: str, timings: Sequence[WordTiming], channel: str = "A") -> list[str]:
    """The ``ctm`` lines of one utterance, by start time: ``ID CHANNEL START DURATION WORD``
    (seconds, 2 decimals; ``utt_id`` without whitespace), followed by `` CONFIDENCE`` (3
    decimals) for a word that has one. Raises ValueError for a word with a negative start or no
    duration."""
    lines = []
    for word in sorted(timings, key=lambda w: w.start_s):
        if word.duration_s <= 0 or word.start_s < 0:
            raise ValueError(f"{utt_id}: word {word.word!r} has an invalid span {word}")
        line = f"{utt_id} {channel} {word.start_s:.2f} {word.duration_s:.2f} {word.word}"
        if word.confidence is not None:
            line += f" {word.confidence:.3f}"
        lines.append(line)
    return lines


def write_ctm(
    path: str | Path, timings: Mapping[str, Sequence[WordTiming]], channel: str = "A"
) -> None:
    """Write ``{utterance id: word timings}`` as a ``ctm`` file, sorted by id and start time."""
    lines = []
    for utt_id in sorted(timings):
        lines += ctm_lines(trn_id(utt_id), timings[utt_id], channel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def read_ctm(path: str | Path) -> dict[str, list[WordTiming]]:
    """Read a ``ctm`` file into ``{utterance id: [WordTiming]}`` (file order kept; a sixth field
    is the word's confidence).

    Raises:
        ValueError: naming the file and line of a line that is not ``id channel start dur word``.
    """
    path = Path(path)
    timings: dict[str, list[WordTiming]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        try:
            if len(fields) not in (5, 6):
                raise ValueError
            confidence = float(fields[5]) if len(fields) == 6 else None
            word = WordTiming(fields[4], float(fields[2]), float(fields[3]), confidence)
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected 'utterance-id channel start duration word "
                f"[confidence]', got {line!r}"
            ) from None
        timings.setdefault(fields[0], []).append(word)
    return timings


def find_sclite() -> list[str] | None:
    """The command that runs ``sclite``: ``sclite`` on PATH, or Debian's ``sctk sclite``
    wrapper; ``None`` when SCTK is not installed."""
    if shutil.which("sclite"):
        return ["sclite"]
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    return None


@dataclass(frozen=True)
class ScliteScore:
    """Corpus totals from ``sclite``'s raw summary (``-o rsum``)."""

    num_sentences: int
    num_words: int
    correct: int
    substitutions: int
    deletions: int
    insertions: int
    errors: int
    sentence_errors: int

    @property
    def wer(self) -> float:
        """Word error rate as a fraction."""
        return self.errors / self.num_words if self.num_words else 0.0


_SUM_LINE = re.compile(r"^\s*\|\s*Sum\s*\|(?P<counts>[\d\s|]+)\|\s*$")


def _run_sclite(
    ref_trn: str | Path, hyp_trn: str | Path, report: str, characters: bool
) -> subprocess.CompletedProcess:
    """``sclite -r REF trn -h HYP trn -i rm [-c] -o REPORT stdout``."""
    command = find_sclite()
    if command is None:
        raise FileNotFoundError(SCLITE_MISSING)
    for path in (ref_trn, hyp_trn):
        if not Path(path).is_file():
            raise FileNotFoundError(f"trn file {path} does not exist")
    args = [*command, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm"]
    if characters:
        args.append("-c")  # align characters; sclite drops the spaces, as dmao's CER does
    return subprocess.run(
        [*args, "-o", report, "stdout"], capture_output=True, text=True, check=False
    )


def score_with_sclite(
    ref_trn: str | Path, hyp_trn: str | Path, *, characters: bool = False
) -> ScliteScore:
    """Run ``sclite -r REF trn -h HYP trn -i rm -o rsum stdout`` and read its corpus totals.

    Args:
        characters: score characters (``sclite -c``) instead of words.

    Raises:
        FileNotFoundError: ``sclite`` is not installed (:data:`SCLITE_MISSING`) or a file is
            missing.
        RuntimeError: ``sclite`` failed or printed no ``Sum`` line.
    """
    proc = _run_sclite(ref_trn, hyp_trn, "rsum", characters)
    for line in proc.stdout.splitlines():
        match = _SUM_LINE.match(line)
        if match:
            values = [int(v) for v in match["counts"].replace("|", " ").split()]
            if len(values) == 8:
                return ScliteScore(*values)
    raise RuntimeError(
        f"sclite exited {proc.returncode} without a 'Sum' line; stderr: {proc.stderr[-2000:]}"
        f" stdout: {proc.stdout[-2000:]}"
    )


_PRA_SCORES = re.compile(
    r"^id: \((?P<id>[^()\s]+)\)\s*\nScores: \(#C #S #D #I\) (?P<c>[\d ]+)$", re.M
)


def sclite_utterance_counts(
    ref_trn: str | Path, hyp_trn: str | Path, *, characters: bool = False
) -> dict[str, tuple[int, int, int, int]]:
    """Per-utterance counts of ``sclite`` (its ``pra`` report): ``{trn id: (correct,
    substitutions, deletions, insertions)}``.

    Raises:
        FileNotFoundError, RuntimeError: as :func:`score_with_sclite`.
    """
    proc = _run_sclite(ref_trn, hyp_trn, "pra", characters)
    counts = {}
    for match in _PRA_SCORES.finditer(proc.stdout):
        c, s, d, i = (int(v) for v in match["c"].split())
        counts[match["id"]] = (c, s, d, i)
    if proc.returncode != 0 or not counts:
        raise RuntimeError(
            f"sclite exited {proc.returncode} without per-utterance scores; stderr: "
            f"{proc.stderr[-2000:]} stdout: {proc.stdout[-2000:]}"
        )
    return counts
