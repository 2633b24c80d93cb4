"""Pieces shared by the corpora whose recordings hold many segments (TED-LIUM, Switchboard)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import fastcopy

from dmao.data.text import normalize_transcript

__all__ = ["normalised_supervisions", "recordings_from_files", "segment_cuts"]

HEADER_THREADS = 16
"""Threads reading audio headers (as the bad-audio pre-scan: they wait on the disk, not the CPU)."""


def recordings_from_files(files: Mapping[str, Path]) -> dict[str, Recording]:
    """``{recording id: lhotse's Recording.from_file of its file}``, headers read in threads
    (a second read after the pre-scan's, fast beside the features)."""
    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        loaded = pool.map(lambda reco: Recording.from_file(files[reco], recording_id=reco), files)
        return {recording.id: recording for recording in loaded}


def normalised_supervisions(
    supervisions: Iterable[SupervisionSegment], normalize: Callable[[str], str]
) -> tuple[list[SupervisionSegment], int]:
    """Apply a corpus normaliser, then :func:`normalize_transcript`; drop segments left empty.

    Returns:
        ``(kept, num_dropped)``: the kept segments carry the normalised ``text`` and, in
        ``custom["original_text"]``, the transcript as the corpus wrote it.
    """
    kept, dropped = [], 0
    for sup in supervisions:
        text = normalize_transcript(normalize(sup.text or ""))
        if not text:
            dropped += 1
            continue
        kept.append(
            fastcopy(sup, text=text, custom={**(sup.custom or {}), "original_text": sup.text})
        )
    return kept, dropped


def segment_cuts(recordings: RecordingSet, supervisions: Iterable[SupervisionSegment]) -> CutSet:
    """One mono cut per supervision segment, named after the segment.

    A cut covers exactly its segment, on the segment's channel (one side of a two-channel
    telephone call), and holds only that segment's supervision, even where segments overlap.
    """
    cuts = CutSet.from_manifests(
        recordings=recordings, supervisions=SupervisionSet.from_segments(supervisions)
    )
    trimmed = cuts.trim_to_supervisions(keep_overlapping=False, keep_all_channels=False)
    return CutSet.from_cuts(fastcopy(cut, id=cut.supervisions[0].id) for cut in trimmed)
