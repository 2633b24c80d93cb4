"""Scoring transcripts from files (``dmao score REF HYP``), as Kaldi's ``compute-wer``.

Either side is one of

- a Kaldi data directory (a folder with ``text``; ``utt2spk``, where present, gives the
  speakers of the sclite ids);
- a Kaldi ``text`` file (``ID WORDS...``) or ``dmao transcribe``'s default output
  (``ID<TAB>TEXT``): a line with a tab splits at its first tab (so an id may hold spaces, as a
  path does), else at its first whitespace; a line with an id only is an empty transcript;
- ``dmao transcribe --tsv`` (a header ``id<TAB>text...``) or ``--json`` (JSON Lines with ``id``
  and ``text``; a failed file's line, with ``error``, is a missing transcript);
- an sclite ``trn`` file (named ``*.trn``: ``WORDS (ID)``);
- a NeMo manifest (JSON Lines with ``audio_filepath`` and no ``id``): the ids ``dmao prepare
  nemo`` and ``dmao transcribe`` give its lines (:mod:`dmao.data.corpora.nemo`); as references
  its ``text``, as hypotheses its ``pred_text`` (what NeMo's ``transcribe_speech.py`` adds).

Both sides are normalised as ``dmao prepare kaldi`` normalises transcripts: Kaldi's non-speech
tokens dropped (:func:`~dmao.data.corpora.kaldi.normalize_kaldi`), then
:func:`~dmao.data.text.normalize_transcript`. A reference left empty (``[noise]`` only) is not
scored, as such an utterance is not in a prepared corpus either (so a ``dmao decode`` of the same
set scores the same utterances). A hypothesis id that is not a reference id is an error (the two
files are not of the same set); a reference without a hypothesis (a file ``dmao transcribe`` could
not read) counts as an empty hypothesis, all deletions, with a warning — or is an error with
``missing="error"`` (``compute-wer --mode=strict``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmao.data.corpora.kaldi import normalize_kaldi
from dmao.data.text import normalize_transcript
from dmao.evaluation.sclite import read_trn, trn_id, write_trn
from dmao.evaluation.wer import ALIGNERS, ScoreResult, score_corpus, write_hypotheses

__all__ = ["MISSING_MODES", "ScoredFiles", "Transcripts", "read_transcripts", "score_files"]

log = logging.getLogger(__name__)

MISSING_MODES = ("empty", "error")
"""What a reference without a hypothesis is: an empty hypothesis, or an error."""


@dataclass
class Transcripts:
    """The transcripts of one file or folder, by id (file order kept)."""

    texts: dict[str, str]
    failed: list[str] = field(default_factory=list)
    """Ids whose line says the transcription failed (``dmao transcribe --json``)."""
    speakers: dict[str, str] = field(default_factory=dict)


def normalize_for_scoring(text: str) -> str:
    """Kaldi's non-speech tokens dropped, then :func:`~dmao.data.text.normalize_transcript`."""
    return normalize_transcript(normalize_kaldi(text))


def read_transcripts(path: Path | str, nemo_text: str = "text") -> Transcripts:
    """The transcripts of ``path`` in any of the module's formats (texts as written); of a NeMo
    manifest, the strings under ``nemo_text`` (``pred_text`` for hypotheses).

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a folder without ``text``.
        ValueError: not UTF-8, a malformed line or a repeated id (file and line named).
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "text").is_file():
            raise FileNotFoundError(
                f"{path}: a folder without a 'text' file; expected a Kaldi data directory or a "
                f"transcript file"
            )
        found = read_transcripts(path / "text")
        if (path / "utt2spk").is_file():
            found.speakers = {i: s for i, s in _rows(path / "utt2spk").items() if s}
        return found
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such transcript file")
    if path.suffix == ".trn":
        return Transcripts(read_trn(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        if _is_nemo(first):
            return _nemo(path, nemo_text)
        return _json_lines(path, lines)
    return Transcripts(_rows(path, lines))


def _rows(path: Path, lines: list[str] | None = None) -> dict[str, str]:
    """``{id: text}`` of ``ID TEXT`` / ``ID<TAB>TEXT`` lines (a ``--tsv`` header skipped)."""
    if lines is None:
        lines = path.read_text(encoding="utf-8").splitlines()
    rows: dict[str, str] = {}
    where: dict[str, int] = {}
    tsv = bool(lines) and lines[0].split("\t")[:2] == ["id", "text"]
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (tsv and number == 1):
            continue
        if "\t" in line:
            utterance, text = line.split("\t")[0].strip(), line.split("\t")[1]
        else:
            utterance, _, text = line.strip().partition(" ")
        if not utterance:
            raise ValueError(f"{path}:{number}: expected 'ID TEXT' or 'ID<TAB>TEXT', got {line!r}")
        if utterance in rows:
            raise ValueError(
                f"{path}:{number}: id {utterance} appears twice (first on line {where[utterance]})"
            )
        rows[utterance], where[utterance] = " ".join(text.split()), number
    return rows


def _is_nemo(line: str) -> bool:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "audio_filepath" in record and "id" not in record


def _nemo(path: Path, text_key: str) -> Transcripts:
    from dmao.data.corpora.nemo import read_nemo_manifest

    entries = read_nemo_manifest(path, text_key)
    return Transcripts(
        {e.id: " ".join(e.text.split()) for e in entries},
        speakers={e.id: e.speaker for e in entries if e.speaker},
    )


def _json_lines(path: Path, lines: list[str]) -> Transcripts:
    found = Transcripts({})
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
            utterance = record["id"]
            text = None if "error" in record else record["text"]
            if not isinstance(utterance, str) or (text is not None and not isinstance(text, str)):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            message = f"{path}:{number}: expected a JSON object with 'id' and 'text' (or 'error')"
            raise ValueError(message) from None
        if utterance in seen:
            raise ValueError(f"{path}:{number}: id {utterance} appears twice")
        seen.add(utterance)
        if text is None:
            found.failed.append(utterance)
        else:
            found.texts[utterance] = " ".join(text.split())
    return found


@dataclass(frozen=True)
class ScoredFiles:
    """What :func:`score_files` scored."""

    score: ScoreResult
    ids: list[str]
    missing: list[str]
    """Reference ids without a hypothesis (scored as empty)."""
    empty_references: int
    """References left empty by normalisation, not scored."""


def score_files(
    ref: Path | str,
    hyp: Path | str,
    *,
    out_dir: Path | str | None = None,
    aligner: str = "kaldialign",
    missing: str = "empty",
    split: str | None = None,
) -> ScoredFiles:
    """Score the hypotheses of ``hyp`` against the references of ``ref`` (module docstring).

    Args:
        out_dir: where to write what ``dmao decode`` writes for a scored split (the files
            ``dmao significance`` and ``dmao results`` read): ``hypotheses.txt``, sclite
            ``ref.trn`` / ``hyp.trn`` and ``result.json``; None writes nothing.
        aligner: ``kaldialign`` or ``sclite`` (:func:`~dmao.evaluation.wer.score_corpus`).
        missing: ``empty`` or ``error`` (:data:`MISSING_MODES`).
        split: the name ``result.json`` gives the scored set (default: the reference
            folder's name, or the file's stem).

    Raises:
        FileNotFoundError, ValueError: a side is unreadable (see :func:`read_transcripts`); a
            hypothesis id is not a reference id; a reference has no hypothesis and ``missing``
            is ``error``; nothing is left to score.
    """
    ref, hyp = Path(ref), Path(hyp)
    if missing not in MISSING_MODES:
        raise ValueError(f"missing: expected one of {', '.join(MISSING_MODES)}, got {missing!r}")
    if aligner not in ALIGNERS:
        raise ValueError(f"aligner: expected one of {', '.join(ALIGNERS)}, got {aligner!r}")
    refs, hyps = read_transcripts(ref), read_transcripts(hyp, nemo_text="pred_text")
    if refs.failed:
        raise ValueError(f"{ref}: {len(refs.failed)} entries are failures, not references")
    strangers = [i for i in [*hyps.texts, *hyps.failed] if i not in refs.texts]
    if strangers:
        raise ValueError(
            f"{hyp}: {len(strangers)} ids are not in {ref} (e.g. {', '.join(strangers[:3])}); "
            f"expected transcripts of the same utterances"
        )
    normalized = {i: normalize_for_scoring(text) for i, text in refs.texts.items()}
    ids = [i for i, text in normalized.items() if text]
    if not ids:
        raise ValueError(f"{ref}: no reference is left to score after normalisation")
    absent = [i for i in ids if i not in hyps.texts]
    if absent:
        detail = f"{len(absent)} of {len(ids)} references have no hypothesis in {hyp}"
        example = f"(e.g. {', '.join(absent[:3])})"
        if missing == "error":
            raise ValueError(f"{detail} {example}; expected one for each")
        log.warning("%s %s: scored as empty hypotheses (all deletions)", detail, example)
    ref_texts = [normalized[i] for i in ids]
    hyp_texts = [hyps.texts.get(i, "") for i in ids]
    if out_dir is None:
        score = score_corpus(ref_texts, hyp_texts, normalize=normalize_for_scoring, aligner=aligner)
    else:
        out_dir = Path(out_dir)
        score = write_hypotheses(
            out_dir / "hypotheses.txt", ids, ref_texts, hyp_texts, normalize_for_scoring, aligner
        )
        trn_ids = [trn_id(i, refs.speakers.get(i)) for i in ids]
        write_trn(
            out_dir / "ref.trn", {t: u.ref for t, u in zip(trn_ids, score.utterances, strict=True)}
        )
        write_trn(
            out_dir / "hyp.trn", {t: u.hyp for t, u in zip(trn_ids, score.utterances, strict=True)}
        )
        record = {
            "run": str(hyp),
            "split": split or (ref.name if ref.is_dir() else ref.stem),
            "method": "external",
            "checkpoint": hyp.name,
            **score.as_record(aligner),
            "references": str(ref),
            "missing_hypotheses": len(absent),
            "empty_references": len(refs.texts) - len(ids),
        }
        (out_dir / "result.json").write_text(json.dumps(record, indent=1) + "\n")
    return ScoredFiles(score, ids, absent, len(refs.texts) - len(ids))
