"""Pieces shared by the corpora whose recordings hold many segments (TED-LIUM, Switchboard)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import fastcopy

from dmao.data.sphere import read_sphere_header, shorten_error
from dmao.data.text import normalize_transcript

__all__ = ["check_sphere_files", "normalised_supervisions", "segment_cuts"]


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


def check_sphere_files(paths: Iterable[Path], *, expected_rate: int | None = None) -> None:
    """Read every SPHERE header; raise one error naming the first bad file (and how many).

    Raises:
        ValueError: unreadable/truncated/compressed-without-sph2pipe files
            (:class:`~dmao.data.sphere.SphereFormatError`) or a sampling rate other than
            ``expected_rate``.
    """
    problems = []
    for path in paths:
        try:
            header = read_sphere_header(path)
        except ValueError as err:
            problems.append(str(err))
            continue
        if header.shorten and shutil.which("sph2pipe") is None:
            problems.append(str(shorten_error(path)))
        if expected_rate is not None and header.sample_rate != expected_rate:
            problems.append(f"{path}: {header.sample_rate} Hz, expected {expected_rate} Hz")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}")
