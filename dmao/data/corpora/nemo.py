"""NVIDIA NeMo's ASR manifests (JSON lines: ``audio_filepath``, ``duration``, ``text``) → cuts.

Layout: ``data.corpus_dir`` holds one manifest per part, named as NeMo's data scripts name them::

    <corpus_dir>/<part>.json   (or <part>.jsonl, <part>_manifest.json, <part>_manifest.jsonl)
    <corpus_dir>/<part>/tarred_audio_manifest.json, audio_0.tar, ...   (a tarred dataset)
    <corpus_dir>/<part>/bucket1/tarred_audio_manifest.json, ...        (a bucketed one)

one JSON object a line::

    {"audio_filepath": "wavs/a.wav", "duration": 3.21, "text": "hello world"}
    {"audio_filepath": "/data/talk.flac", "offset": 12.5, "duration": 4.0, "text": "..."}

``offset`` (seconds, default 0) and ``duration`` (seconds; absent or null: to the file's end)
select a span of the file; a span may end up to 0.5 s past the file and is shortened, as Kaldi's
segments. ``speaker`` (a string) is kept; any other key is ignored. A relative
``audio_filepath`` is looked up in the manifest's folder first, then in the current directory
(NeMo's own rule), and kept as an absolute path. A line with ``shard_id`` is one of a
tarred dataset (:mod:`dmao.data.corpora.nemo_tarred`): its audio is the member
``audio_filepath`` of ``audio_<shard_id>.tar`` beside the manifest, copied out when the part is
prepared; a bucketed dataset's buckets are one part.

Ids (NeMo has none): a file's recording id is its name without suffix; names that clash in a
part get as many of their folders in front as tell them apart (``spk1/001.wav`` and
``spk2/001.wav`` → ``spk1_001``, ``spk2_001``); an utterance is named after its recording,
with Kaldi's segment suffix ``-<start>-<end>`` (centiseconds, 7 digits; ``end`` without a
duration) when it does not start at 0 or its file holds several. Transcripts: whole tokens in
brackets are removed, as in Kaldi data directories, then
:func:`~dmao.data.text.normalize_transcript`; an utterance left empty is dropped. Bad audio
follows ``data.bad_audio``: a bad file is one entry for all its utterances.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment

from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio
from dmao.data.corpora.common import normalised_supervisions, recordings_from_files, segment_cuts
from dmao.data.corpora.kaldi import normalize_kaldi, span_in_recording
from dmao.data.corpora.nemo_tarred import (
    TARRED_MANIFEST,
    extract_members,
    member_id,
    shard_file,
    tarred_manifests,
)
from dmao.data.manifests import load_or_prepare

__all__ = [
    "NEMO_LAYOUT",
    "NemoEntry",
    "find_nemo_manifests",
    "nemo_parts",
    "prepare_nemo",
    "read_nemo_manifest",
    "read_nemo_manifests",
    "shard_members",
]

log = logging.getLogger(__name__)

NEMO_LAYOUT = (
    "<corpus_dir>/<part>.json (or <part>.jsonl, <part>_manifest.json[l]): NeMo manifests, one "
    'JSON object a line: {"audio_filepath": ..., "duration": seconds, "text": ...} '
    '[, "offset": seconds]; or a tarred dataset, <corpus_dir>/<part>/'
    f"{TARRED_MANIFEST} (or <part>/bucket*/{TARRED_MANIFEST}) beside its audio_<k>.tar shards"
)
_SUFFIXES = (".json", ".jsonl")
_MANIFEST = "_manifest"


@dataclass(frozen=True)
class NemoEntry:
    """One line of a NeMo manifest, checked; ``id`` and ``recording`` are given by
    :func:`read_nemo_manifest` (unique in the manifest)."""

    line: int
    audio: Path
    """The audio file, absolute; for a line of a tarred dataset, the shard joined with the
    member's id (:func:`~dmao.data.corpora.nemo_tarred.member_id`): one per file, not on disk
    until the part is prepared."""
    offset: float
    duration: float | None
    """Seconds; None: to the end of the file."""
    text: str
    speaker: str | None
    id: str = ""
    recording: str = ""
    manifest: Path | None = None
    """The manifest the line is in."""
    shard: int | None = None
    """``shard_id`` (a line of a tarred dataset), else None."""

    @property
    def where(self) -> str:
        """``<manifest>:<line>``, for messages."""
        return f"{self.manifest}:{self.line}"

    @property
    def end(self) -> float:
        """The span's end in seconds, ``-1`` for the file's end (as Kaldi's segments)."""
        return -1.0 if self.duration is None else self.offset + self.duration


def _part_name(path: Path) -> str | None:
    if path.suffix not in _SUFFIXES:
        return None
    stem = path.stem
    return stem[: -len(_MANIFEST)] if stem.endswith(_MANIFEST) and stem != _MANIFEST else stem


def nemo_parts(corpus_dir: Path | str) -> list[str]:
    """The parts whose manifests ``corpus_dir`` holds (files, and folders of a tarred
    dataset), sorted."""
    folder = Path(corpus_dir)
    files = {p for f in folder.iterdir() if f.is_file() and (p := _part_name(f))}
    return sorted(files | {f.name for f in folder.iterdir() if tarred_manifests(f)})


def find_nemo_manifests(corpus_dir: Path | str, part: str) -> list[Path]:
    """The manifest of ``part`` in ``corpus_dir``: one file, or a tarred dataset's manifest
    (one per bucket when it is bucketed).

    Raises:
        FileNotFoundError: none (the layout and the parts found named).
        ValueError: several spellings of the part's manifest.
    """
    folder = Path(corpus_dir)
    found = [
        folder / f"{part}{infix}{suffix}"
        for infix in ("", _MANIFEST)
        for suffix in _SUFFIXES
        if (folder / f"{part}{infix}{suffix}").is_file()
    ]
    tarred = tarred_manifests(folder / part)
    if len(found) + bool(tarred) > 1:
        names = [p.name for p in found] + [f"{part}/ (a tarred dataset)"] * bool(tarred)
        raise ValueError(f"{folder}: {len(names)} manifests of part {part!r} "
                         f"({', '.join(names)}); keep one")  # fmt: skip
    if tarred:
        return tarred
    if not found:
        raise FileNotFoundError(
            f"no NeMo manifest of part {part!r} in {folder} (parts there: "
            f"{', '.join(nemo_parts(folder)) if folder.is_dir() else 'none'}); expected "
            f"{NEMO_LAYOUT}"
        )
    return found


def _seconds(record: dict, key: str, where: str, default: float | None) -> float | None:
    value = record.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: {key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _entry(record: Any, number: int, path: Path, text_key: str | None) -> NemoEntry:
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("audio_filepath", *([text_key] if text_key else [])):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{where}: expected a string {key!r} (keys there: "
                             f"{', '.join(sorted(record)) or 'none'})")  # fmt: skip
    shard = record.get("shard_id")
    if shard is not None and (isinstance(shard, bool) or not isinstance(shard, int) or shard < 0):
        raise ValueError(f"{where}: 'shard_id' must be a whole number >= 0, got {shard!r}")
    if shard is not None:  # a member of a shard beside the manifest
        audio = shard_file(path, shard) / member_id(record["audio_filepath"])
    else:
        audio = Path(record["audio_filepath"]).expanduser()
        if not audio.is_absolute():  # NeMo's rule: the manifest's folder first, then as given
            beside = path.parent / audio
            audio = beside if beside.exists() or not audio.exists() else audio
    duration = _seconds(record, "duration", where, None)
    speaker = record.get("speaker")
    text = record.get(text_key or "text")
    return NemoEntry(
        line=number, audio=audio.absolute(), offset=_seconds(record, "offset", where, 0.0) or 0.0,
        duration=duration, text=text if isinstance(text, str) else "",
        speaker=speaker if isinstance(speaker, str) else None, manifest=path, shard=shard,
    )  # fmt: skip


def _recording_ids(files: Sequence[Path]) -> dict[Path, str]:
    """Each file's name without suffix; names that clash get as many of their folders in front
    (joined by ``_``) as tell them apart."""
    depth = dict.fromkeys(files, 1)
    while True:
        ids = {f: "_".join([*f.parent.parts[len(f.parent.parts) - depth[f] + 1 :], f.stem])
               for f in files}  # fmt: skip
        counts = Counter(ids.values())
        clash = [f for f in files if counts[ids[f]] > 1]
        if not clash:
            return ids
        if all(depth[f] >= len(f.parts) for f in clash):
            raise ValueError(f"audio files whose names cannot be told apart: "
                             f"{', '.join(map(str, clash[:5]))}")  # fmt: skip
        for f in clash:
            depth[f] = min(depth[f] + 1, len(f.parts))


def read_nemo_manifest(path: Path | str, text_key: str | None = "text") -> list[NemoEntry]:
    """The checked lines of one manifest with their ids (blank lines skipped); ``text`` is the
    string under ``text_key`` (``pred_text``: the hypotheses NeMo's ``transcribe_speech.py``
    adds; None: not required, ``text`` where present, else empty).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a JSON object with ``audio_filepath`` and ``text_key``
            strings, or with a negative or non-numeric ``offset``/``duration`` or ``shard_id``
            that is no whole number >= 0; two lines with the same span of one file; no lines.
            Each names the file and line.
    """
    return read_nemo_manifests([path], text_key)


def read_nemo_manifests(
    paths: Sequence[Path | str], text_key: str | None = "text"
) -> list[NemoEntry]:
    """:func:`read_nemo_manifest` of several manifests that are one part (the buckets of a
    tarred dataset), named together so that their ids are unique across them.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_nemo_manifest`.
    """
    entries = list(chain.from_iterable(_lines(Path(path), text_key) for path in paths))
    per_file = Counter(e.audio for e in entries)
    recordings = _recording_ids(list(per_file))
    named, seen = [], {}
    for e in entries:
        reco = recordings[e.audio]
        utt = reco
        if e.offset or per_file[e.audio] > 1:
            end = "end" if e.duration is None else f"{round(e.end * 100):07d}"
            utt = f"{reco}-{round(e.offset * 100):07d}-{end}"
        if utt in seen:
            raise ValueError(f"{e.where}: the same span of {e.audio} as {seen[utt]}")
        seen[utt] = f"line {e.line}" if len(paths) == 1 else e.where
        named.append(replace(e, id=utt, recording=reco))
    return named


def _lines(path: Path, text_key: str | None) -> list[NemoEntry]:
    """The checked lines of one manifest, without ids."""
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
        entries.append(_entry(record, number, path, text_key))
    if not entries:
        raise ValueError(f"{path}: no utterances; expected {NEMO_LAYOUT}")
    return entries


def shard_members(entries: Sequence[NemoEntry]) -> dict[Path, dict[str, str]]:
    """``{shard: {member id: recording id}}`` of the lines of a tarred dataset among
    ``entries`` (the others are files), shards in the order the lines name them."""
    shards: dict[Path, dict[str, str]] = {}
    for e in entries:
        if e.shard is not None:
            shards.setdefault(e.audio.parent, {})[e.audio.name] = e.recording
    return shards


def _recordings(
    part: str, entries: list[NemoEntry], bad: BadAudioLog, extract_to: Path
) -> dict[str, Recording]:
    """The part's readable recordings (the members of a tarred dataset's shards copied out
    below ``extract_to``); each bad file recorded in ``bad`` once."""
    files = {e.recording: e.audio for e in entries}
    shards = shard_members(entries)
    tarred = {reco for members in shards.values() for reco in members.values()}
    found = scan_audio([audio for reco, audio in files.items() if reco not in tarred])
    for shard, members in shards.items():
        folder = extract_to / f"{shard.parent.name}_{shard.stem}"
        for member, got in extract_members(shard, list(members), folder).items():
            if isinstance(got, tuple):
                found[files[members[member]]] = got
            else:
                files[members[member]] = got
    counts = Counter(e.recording for e in entries)
    readable = []
    for reco, audio in files.items():
        problem = found.get(audio)
        if problem:
            bad.add(BadAudio(part, reco, str(audio), *problem, utterances=counts[reco]))
        else:
            readable.append(reco)
    return recordings_from_files({reco: files[reco] for reco in readable})


def _supervisions(
    path: Path, entries: list[NemoEntry], recordings: dict[str, Recording]
) -> list[SupervisionSegment]:
    """One supervision per line of a readable file, on channel 0; ``path`` is the manifest
    (or the folder of a bucketed dataset's manifests).

    Raises:
        ValueError: spans outside their file (all listed, by line).
    """
    out, problems = [], []
    for e in entries:
        if e.recording not in recordings:
            continue
        length = recordings[e.recording].duration
        end, duration = span_in_recording(e.offset, e.end, length)
        if duration is None:
            line = f"line {e.line}" if e.manifest == path else e.where
            problems.append(f"{line} ({e.offset:g}–{end:g} s of {e.audio}, which lasts "
                            f"{length:.2f} s)")  # fmt: skip
            continue
        out.append(
            SupervisionSegment(
                id=e.id, recording_id=e.recording, start=e.offset, duration=duration,
                channel=0, text=e.text, speaker=e.speaker,
            )
        )  # fmt: skip
    if problems:
        more = ", ..." if len(problems) > 5 else ""
        raise ValueError(f"{path}: {len(problems)} span(s) outside their audio file: "
                         f"{', '.join(problems[:5])}{more}")  # fmt: skip
    return out


def prepare_nemo(
    corpus_dir: Path | str, out_dir: Path | str, parts: Sequence[str], **options: Any
) -> dict[str, CutSet]:
    """NeMo manifests ``corpus_dir/<part>.json`` (or tarred datasets ``corpus_dir/<part>/``)
    → cuts (one per line) with cached fbank; the members of tar shards are copied out to
    ``out_dir/audio/<part>/``.

    Idempotent per part, like :func:`~dmao.data.manifests.prepare_manifests`; ``options`` are
    :func:`~dmao.data.manifests.load_or_prepare`'s keyword arguments.

    Raises:
        FileNotFoundError: ``corpus_dir`` or a part's manifest is missing.
        ValueError: malformed lines (:func:`read_nemo_manifest`), spans outside their file, bad
            audio (strict: all listed) or more of it than the budget (skip).
    """
    corpus_dir = Path(corpus_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        if not corpus_dir.is_dir():
            raise FileNotFoundError(f"data.corpus_dir {corpus_dir} does not exist; expected "
                                    f"{NEMO_LAYOUT}")  # fmt: skip
        manifests = {part: find_nemo_manifests(corpus_dir, part) for part in missing}
        entries = {part: read_nemo_manifests(paths) for part, paths in manifests.items()}
        recordings = {}
        for part, lines in entries.items():
            bad.listed[part] = len(lines)
            recordings[part] = _recordings(part, lines, bad, Path(out_dir) / "audio" / part)
        bad.check(missing, stage="pre-scan of the audio")
        by_part = {}
        for part, lines in entries.items():
            where = manifests[part][0] if len(manifests[part]) == 1 else corpus_dir / part
            supervisions, dropped = normalised_supervisions(
                _supervisions(where, lines, recordings[part]), normalize_kaldi
            )
            log.info("NeMo manifest %s: %d utterances, %d empty after normalisation dropped",
                     where, len(supervisions), dropped)  # fmt: skip
            by_part[part] = segment_cuts(
                RecordingSet.from_recordings(recordings[part].values()), supervisions
            )
        return by_part

    return load_or_prepare(out_dir, parts, read, **options)
