"""lhotse's corpus recipes (~100; those with transcripts): the manifests ``lhotse prepare`` writes.

Layout: ``data.corpus_dir`` holds, per part, what a lhotse recipe writes (e.g. ``lhotse prepare
aishell /data/aishell data/aishell_manifests``)::

    <corpus_dir>/<prefix>_recordings_<part>.jsonl.gz
    <corpus_dir>/<prefix>_supervisions_<part>.jsonl.gz

or a cuts manifest ``<prefix>_cuts_<part>.jsonl.gz`` (icefall's; its features are dropped and
dmao's computed, so that every corpus has the same front end). The prefix is the recipe's name;
a folder holding manifests of several corpora for one part is an error that names them.

One cut per supervision (its id, on its channel, only its own text even where supervisions
overlap), like TED-LIUM's and Switchboard's segments; a supervision over several channels (a
microphone array's) is read on the first it lists, as Kaldi data directories on channel 0.
Transcripts: whole tokens in brackets (``[noise]``, ``<unk>``, ``{breath}``) are removed, then
:func:`~dmao.data.text.normalize_transcript`; a supervision left empty is dropped, the text as the
recipe wrote it kept in ``custom["original_text"]``. Bad audio follows ``data.bad_audio``: the
files of the recordings are pre-scanned (headers; other sources, such as URLs or commands, are
found by the feature extraction), a bad recording being one entry for all its supervisions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lhotse import (
    CutSet,
    MonoCut,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
    load_manifest,
)
from lhotse.utils import fastcopy

from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio
from dmao.data.corpora.common import normalised_supervisions, segment_cuts
from dmao.data.corpora.kaldi import normalize_kaldi
from dmao.data.manifests import load_or_prepare

__all__ = [
    "LHOTSE_LAYOUT",
    "file_source",
    "find_manifests",
    "lhotse_parts",
    "load_part",
    "prepare_lhotse",
]

log = logging.getLogger(__name__)

LHOTSE_LAYOUT = (
    "<corpus_dir>/<prefix>_recordings_<part>.jsonl.gz + <prefix>_supervisions_<part>.jsonl.gz "
    "(as `lhotse prepare <corpus>` writes them) or <prefix>_cuts_<part>.jsonl.gz"
)
_KINDS = ("recordings", "supervisions", "cuts")


def _matches(corpus_dir: Path, kind: str, part: str) -> list[Path]:
    return sorted(
        p for suffix in (".jsonl.gz", ".jsonl")
        for p in corpus_dir.glob(f"*_{kind}_{part}{suffix}")
    )  # fmt: skip


def find_manifests(corpus_dir: Path | str, part: str) -> dict[str, Path]:
    """``{"recordings": path, "supervisions": path}`` or ``{"cuts": path}`` of ``part``.

    Raises:
        FileNotFoundError: no manifest of the part (the layout and the parts found named).
        ValueError: several corpora's manifests for the part, or only one of the pair.
    """
    corpus_dir = Path(corpus_dir)
    found = {kind: _matches(corpus_dir, kind, part) for kind in _KINDS}
    for kind, paths in found.items():
        if len(paths) > 1:
            raise ValueError(
                f"{corpus_dir}: {len(paths)} {kind} manifests of part {part!r} "
                f"({', '.join(p.name for p in paths)}); keep one corpus's manifests per folder"
            )
    if found["recordings"] and found["supervisions"]:
        return {kind: found[kind][0] for kind in ("recordings", "supervisions")}
    if found["cuts"]:
        return {"cuts": found["cuts"][0]}
    if found["recordings"] or found["supervisions"]:
        have, lack = ("recordings", "supervisions")
        if not found["recordings"]:
            have, lack = lack, have
        raise ValueError(f"{found[have][0]}: no {lack} manifest beside it ({LHOTSE_LAYOUT})")
    raise FileNotFoundError(
        f"no lhotse manifest of part {part!r} in {corpus_dir} (parts there: "
        f"{', '.join(lhotse_parts(corpus_dir)) or 'none'}); expected {LHOTSE_LAYOUT}"
    )


def lhotse_parts(corpus_dir: Path | str) -> list[str]:
    """The parts whose manifests ``corpus_dir`` holds (the part names after ``_<kind>_``)."""
    parts = set()
    for path in Path(corpus_dir).glob("*.jsonl*"):
        stem = path.name.split(".jsonl")[0]
        for kind in _KINDS:
            head, sep, part = stem.partition(f"_{kind}_")
            if sep and head and part:
                parts.add(part)
    return sorted(parts)


def file_source(recording: Recording) -> Path | None:
    """The audio file of a recording read from one file; None for other sources (URLs, commands,
    several files), which only the decoding itself can check."""
    if len(recording.sources) == 1 and recording.sources[0].type == "file":
        return Path(recording.sources[0].source)
    return None


def load_part(paths: dict[str, Path]) -> tuple[RecordingSet, SupervisionSet]:
    """The recordings and supervisions of one part's manifests (:func:`find_manifests`)."""
    if "cuts" in paths:
        return _from_cuts(paths["cuts"])
    recordings = load_manifest(paths["recordings"])
    supervisions = load_manifest(paths["supervisions"])
    for kind, manifest, expected in (
        ("recordings", recordings, RecordingSet),
        ("supervisions", supervisions, SupervisionSet),
    ):
        if not isinstance(manifest, expected):
            raise ValueError(f"{paths[kind]}: not a lhotse {expected.__name__} manifest")
    return recordings, supervisions


def _from_cuts(path: Path) -> tuple[RecordingSet, SupervisionSet]:
    """The recordings and supervisions of a cuts manifest: supervision times made absolute (a
    cut's are relative to its start), each supervision once (overlapping cuts repeat them)."""
    cuts = load_manifest(path)
    if not isinstance(cuts, CutSet):
        raise ValueError(f"{path}: not a lhotse CutSet manifest")
    recordings, supervisions = {}, {}
    for cut in cuts:
        if not isinstance(cut, MonoCut) or not cut.has_recording:
            raise ValueError(
                f"{path}: cut {cut.id} is a {type(cut).__name__} "
                f"{'' if cut.has_recording else 'without a recording '}(only single recordings "
                f"with their supervisions are read); give the recipe's recordings and supervisions "
                f"manifests instead"
            )
        recordings[cut.recording.id] = cut.recording
        for sup in cut.supervisions:
            supervisions[sup.id] = fastcopy(sup, start=round(cut.start + sup.start, 6))
    return (
        RecordingSet.from_recordings(recordings.values()),
        SupervisionSet.from_segments(supervisions.values()),
    )


def _on_one_channel(
    part: str, supervisions: Sequence[SupervisionSegment]
) -> list[SupervisionSegment]:
    """Each supervision on one channel: one over several (a microphone array's, AMI's or
    CHiME's) on the first it lists, as Kaldi data directories are read on channel 0."""
    moved = 0
    kept = []
    for sup in supervisions:
        if isinstance(sup.channel, list):
            moved += len(sup.channel) > 1
            sup = fastcopy(sup, channel=sup.channel[0])
        kept.append(sup)
    if moved:
        log.info("lhotse %s: %d supervisions over several channels read on their first",
                 part, moved)  # fmt: skip
    return kept


def prepare_lhotse(
    corpus_dir: Path | str, out_dir: Path | str, parts: Sequence[str], **options: Any
) -> dict[str, CutSet]:
    """lhotse recipe manifests → cuts (one per supervision) with cached fbank (``{part: CutSet}``).

    Idempotent per part, like :func:`~dmao.data.manifests.prepare_manifests`; ``options`` are
    :func:`~dmao.data.manifests.load_or_prepare`'s keyword arguments (``sampling_rate``,
    ``num_jobs``, ``bad_audio``, ...).

    Raises:
        FileNotFoundError, ValueError: :func:`find_manifests`; a supervision of a recording the
            manifest does not have; bad audio (strict: all listed) or more than the budget (skip).
    """
    corpus_dir = Path(corpus_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        loaded = {part: load_part(find_manifests(corpus_dir, part)) for part in missing}
        for part, (recordings, supervisions) in loaded.items():
            orphans = sorted({s.recording_id for s in supervisions} - set(recordings.ids))
            if orphans:
                raise ValueError(
                    f"lhotse part {part!r}: supervisions of {len(orphans)} recording(s) missing "
                    f"from its recordings manifest (e.g. {', '.join(orphans[:3])})"
                )
            counts = Counter(s.recording_id for s in supervisions)
            bad.listed[part] = len(supervisions)
            files = {r.id: path for r in recordings if (path := file_source(r)) is not None}
            found = scan_audio(list(files.values()))
            for reco, path in files.items():
                if path in found:
                    bad.add(BadAudio(part, reco, str(path), *found[path], utterances=counts[reco]))
        bad.check(missing, stage="pre-scan of the audio headers")
        by_part = {}
        for part, (recordings, supervisions) in loaded.items():
            excluded = bad.excluded(part)
            kept, dropped = normalised_supervisions(
                (s for s in supervisions if s.recording_id not in excluded), normalize_kaldi
            )
            log.info("lhotse %s: %d supervisions, %d empty after normalisation dropped",
                     part, len(kept), dropped)  # fmt: skip
            kept = _on_one_channel(part, kept)
            readable = RecordingSet.from_recordings(r for r in recordings if r.id not in excluded)
            by_part[part] = segment_cuts(readable, kept)
        return by_part

    return load_or_prepare(out_dir, parts, read, **options)
