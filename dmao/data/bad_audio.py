"""Corrupt audio at corpus preparation: find every bad file, then stop (strict) or skip it.

Preparation (:func:`dmao.data.manifests.load_or_prepare`) is the one place where audio is read;
training reads the cached features. Bad audio is found in two stages:

1. **Pre-scan**, before lhotse's recipe runs: every listed file's header is read in a thread pool
   (:func:`probe_audio`: ``soundfile.info``, or dmao's SPHERE header reader for ``.sph``). It finds
   ``missing_audio``, ``empty_file`` (0 bytes), ``unreadable_audio`` (no readable header, unknown
   format), ``unsupported_format`` (shorten-compressed SPHERE without ``sph2pipe``) and
   ``empty_audio`` (0 samples). It opens each file once and reads only its header, so it stays
   cheap for a 280k-file corpus.
2. **Feature extraction**: a cut whose samples cannot be decoded (truncated or corrupt data:
   ``unreadable_audio``) or whose samples are NaN/inf (``non_finite_samples``; fbank features of
   such audio are NaN) gets no features and is reported with the library's error message.

The reason names are those of ``dmao validate`` (:mod:`dmao.data.validation`). A sampling rate
other than the configured one is not bad audio: the cut is resampled.

What happens then is ``data.bad_audio``:

- ``strict`` (default): every bad file of every requested part is written to
  ``<manifest_dir>/bad_audio.json`` and one :class:`ValueError` lists them; no cuts file is
  written for a part with bad audio, so training never starts on it. Pre-scan problems stop the
  preparation before the (long) feature extraction; files whose data only fails to decode are
  then found by the next run's extraction (``dmao validate`` decodes every file up front).
- ``skip``: each bad utterance is logged once (path + reason), left out (its cut is absent, so
  transcripts and audio stay aligned) and recorded in ``bad_audio.json``; a part whose bad
  fraction exceeds ``data.max_bad_audio_fraction`` stops the preparation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
from lhotse import RecordingSet
from lhotse.utils import fastcopy

from dmao.config.schema import BAD_AUDIO_MODES
from dmao.data.sphere import read_sphere_header, shorten_error

__all__ = [
    "BAD_AUDIO_MODES",
    "REPORT_NAME",
    "BadAudio",
    "BadAudioLog",
    "audio_error_message",
    "check_bad_audio_settings",
    "probe_audio",
    "scan_audio",
    "staged_tree",
    "unstage_recordings",
]

log = logging.getLogger(__name__)

REPORT_NAME = "bad_audio.json"
_MAX_LISTED = 20
STAGING_DIR = ".bad_audio_staging"
_SCAN_CHUNK = 256


@dataclass(frozen=True)
class BadAudio:
    """One utterance (or, for TED-LIUM/Switchboard, one recording) whose audio cannot be used."""

    part: str
    utterance_id: str
    """The cut id; for a recording holding many segments, the recording id."""
    path: str
    reason: str
    """``missing_audio``, ``empty_file``, ``unreadable_audio``, ``unsupported_format``,
    ``empty_audio`` or ``non_finite_samples`` (the vocabulary of ``dmao validate``)."""
    detail: str
    """The library's error message, or what was found."""
    utterances: int = 1
    """Utterances lost with it (the segments of a bad recording)."""

    def line(self) -> str:
        return f"{self.part} {self.utterance_id}: {self.reason}: {self.path}: {self.detail}"


def check_bad_audio_settings(mode: str, max_fraction: float) -> None:
    """Raise a :class:`ValueError` naming the setting when ``data.bad_audio`` or
    ``data.max_bad_audio_fraction`` is out of range."""
    if mode not in BAD_AUDIO_MODES:
        raise ValueError(
            f"data.bad_audio must be one of {', '.join(BAD_AUDIO_MODES)}, got {mode!r}"
        )
    if isinstance(max_fraction, bool) or not isinstance(max_fraction, (int, float)):
        raise ValueError(
            f"data.max_bad_audio_fraction must be a number in [0, 1], got {max_fraction!r}"
        )
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"data.max_bad_audio_fraction must be in [0, 1], got {max_fraction}")


def probe_audio(path: Path | str) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``path`` is not usable audio, judged from its header; else None.

    Reads the file's header only (``soundfile.info``; :func:`~dmao.data.sphere.read_sphere_header`
    for ``.sph``), so truncated sample data is not found here (feature extraction finds it).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing_audio", "listed in the transcript but not on disk"
    except OSError as err:
        return "unreadable_audio", str(err)
    if not stat.S_ISREG(st.st_mode):
        return "unreadable_audio", "not a regular file"
    if st.st_size == 0:
        return "empty_file", "0 bytes"
    if path.suffix.lower() == ".sph":
        try:
            header = read_sphere_header(path)
        except ValueError as err:
            return "unreadable_audio", str(err)
        if (
            header.shorten
            and shutil.which("sph2pipe") is None
            and not os.environ.get("LHOTSE_AUDIO_BACKEND")
        ):
            return "unsupported_format", str(shorten_error(path))
        frames = header.sample_count
    else:
        try:
            frames = sf.info(str(path)).frames
        except Exception as err:  # soundfile raises LibsndfileError/RuntimeError for bad headers
            return "unreadable_audio", str(err).strip() or type(err).__name__
    if frames == 0:
        return "empty_audio", "0 samples"
    return None


def audio_error_message(err: Exception) -> str:
    """One line for logs and reports: the decoder's own message from lhotse's multi-line
    AudioLoadingError ("Reading audio from ... failed. Details: Exception #0 (<backend>): <class
    'soundfile.LibsndfileError'>: Error : flac decoder lost sync. ..." → "LibsndfileError: Error :
    flac decoder lost sync."), else the error's type and first line (at most 200 characters)."""
    text = str(err).strip()
    for line in text.splitlines():
        if line.startswith("Exception #"):
            head, sep, message = line.partition("'>: ")
            if sep:
                return f"{head.rsplit('.', 1)[-1]}: {message.strip()}"
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else repr(err)


def _probe_chunk(paths: Sequence[Path]) -> list[tuple[str, str] | None]:
    return [probe_audio(p) for p in paths]


def scan_audio(paths: Sequence[Path], *, num_threads: int = 16) -> dict[Path, tuple[str, str]]:
    """:func:`probe_audio` for every path, in a thread pool (libsndfile and ``stat`` release the
    GIL, so threads overlap the file-system waits). Returns ``{path: (reason, detail)}`` for the
    bad ones only."""
    paths = list(paths)
    chunks = [paths[i : i + _SCAN_CHUNK] for i in range(0, len(paths), _SCAN_CHUNK)]
    bad: dict[Path, tuple[str, str]] = {}
    with ThreadPoolExecutor(max(1, min(num_threads, len(chunks)))) as pool:
        for chunk, results in zip(chunks, pool.map(_probe_chunk, chunks), strict=True):
            for path, result in zip(chunk, results, strict=True):
                if result is not None:
                    bad[path] = result
    return bad


class BadAudioLog:
    """The bad audio of one preparation call, by part, and the ``data.bad_audio`` decision.

    Args:
        out_dir: the manifest directory; the report is ``out_dir/bad_audio.json``.
        mode: ``strict`` or ``skip`` (``data.bad_audio``).
        max_fraction: ``data.max_bad_audio_fraction``, the error budget of a part in skip mode.
    """

    def __init__(self, out_dir: Path | str, mode: str = "strict", max_fraction: float = 0.01):
        check_bad_audio_settings(mode, max_fraction)
        self.out_dir = Path(out_dir)
        self.mode = mode
        self.max_fraction = float(max_fraction)
        self.entries: dict[str, dict[str, BadAudio]] = {}
        self.listed: dict[str, int] = {}

    @property
    def skip(self) -> bool:
        return self.mode == "skip"

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_NAME

    def add(self, entry: BadAudio) -> None:
        """Record a bad utterance (once: a second reason for the same id is ignored); skip mode
        logs it here, so each is logged exactly once."""
        by_id = self.entries.setdefault(entry.part, {})
        if entry.utterance_id in by_id:
            return
        by_id[entry.utterance_id] = entry
        if self.skip:
            log.warning(
                "bad audio, leaving out %s %s (%d utterance(s)): %s: %s: %s",
                entry.part,
                entry.utterance_id,
                entry.utterances,
                entry.reason,
                entry.path,
                entry.detail,
            )

    def excluded(self, part: str) -> set[str]:
        """Ids recorded as bad in ``part``."""
        return set(self.entries.get(part, {}))

    def num_bad(self, part: str) -> int:
        """Utterances of ``part`` lost to bad audio."""
        return sum(e.utterances for e in self.entries.get(part, {}).values())

    def all_entries(self, parts: Iterable[str] | None = None) -> list[BadAudio]:
        parts = sorted(self.entries) if parts is None else parts
        return [e for p in parts for e in sorted(self.entries.get(p, {}).values(), key=_entry_key)]

    def over_budget(self, part: str) -> bool:
        listed = self.listed.get(part, 0)
        return listed > 0 and self.num_bad(part) / listed > self.max_fraction

    def failed_parts(self, parts: Iterable[str]) -> list[str]:
        """Parts that must not be written: any bad audio (strict), over budget (skip)."""
        if self.skip:
            return [p for p in parts if self.over_budget(p)]
        return [p for p in parts if self.entries.get(p)]

    def check(self, parts: Sequence[str], *, stage: str) -> None:
        """Write the report and raise when :meth:`failed_parts` is not empty.

        Raises:
            ValueError: strict: listing every bad file (up to ~20 lines, then the report path);
                skip: naming each part over budget with its counts and the budget.
        """
        parts = list(dict.fromkeys([*parts, *self.entries]))
        failed = self.failed_parts(parts)
        if not failed:
            return
        report = self.write_report(parts)
        if not self.skip:
            bad = self.all_entries(parts)
            lines = [e.line() for e in bad[:_MAX_LISTED]]
            if len(bad) > _MAX_LISTED:
                lines.append(f"... and {len(bad) - _MAX_LISTED} more, see {report}")
            counts = ", ".join(
                f"{p}: {self.num_bad(p)} of {self.listed.get(p, '?')}" for p in failed
            )
            raise ValueError(
                f"bad audio found in the {stage} ({counts} utterances; data.bad_audio=strict, "
                f"report: {report}):\n  "
                + "\n  ".join(lines)
                + "\nFix or remove these files, or set data.bad_audio=skip (CLI: --bad-audio "
                "skip) to leave them out, up to data.max_bad_audio_fraction of a part."
                + (
                    " The pre-scan reads headers only; truncated or NaN audio is found by the "
                    "feature extraction that follows (`dmao validate` decodes every file now)."
                    if stage.startswith("pre-scan")
                    else ""
                )
            )
        msgs = [
            f"part {p!r}: {self.num_bad(p)} of {self.listed[p]} utterances "
            f"({100 * self.num_bad(p) / self.listed[p]:.1f}%) have bad audio"
            for p in failed
        ]
        raise ValueError(
            "; ".join(msgs)
            + f", more than the error budget data.max_bad_audio_fraction={self.max_fraction} "
            f"(data.bad_audio=skip); see {report}"
        )

    def write_report(self, parts: Sequence[str]) -> Path:
        """Write ``bad_audio.json``: this call's entries for ``parts`` replace the report's
        earlier ones for those parts; other parts' entries are kept."""
        kept: list[dict] = []
        counts: dict[str, dict] = {}
        if self.report_path.is_file():
            try:
                old = json.loads(self.report_path.read_text())
                kept = [e for e in old.get("bad_audio", []) if e.get("part") not in parts]
                counts = {p: c for p, c in old.get("parts", {}).items() if p not in parts}
            except (ValueError, AttributeError):
                log.warning("replacing unreadable %s", self.report_path)
        for part in parts:
            counts[part] = {
                "utterances": self.listed.get(part),
                "bad_utterances": self.num_bad(part),
                "mode": self.mode,
                "max_bad_audio_fraction": self.max_fraction,
            }
        entries = kept + [asdict(e) for e in self.all_entries(parts)]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.report_path.with_name(f".{REPORT_NAME}.tmp")
        tmp.write_text(json.dumps({"parts": counts, "bad_audio": entries}, indent=1) + "\n")
        os.replace(tmp, self.report_path)
        return self.report_path


def _entry_key(entry: BadAudio) -> str:
    return entry.utterance_id


@contextmanager
def staged_tree(
    out_dir: Path | str,
    links: Iterable[tuple[Path, Path]],
    texts: Iterable[tuple[Path, str]] = (),
) -> Iterator[Path]:
    """A temporary copy of a corpus layout without the excluded files, for lhotse recipes that
    read a directory themselves (and would crash on, or silently keep, a bad file).

    Creates ``<out_dir>/.bad_audio_staging``, holding a symlink at each relative path of ``links``
    (``(real file, relative path)``) and a text file at each of ``texts`` (``(relative path,
    content)``, e.g. a filtered transcript); yields its absolute path and removes it on exit.
    Recordings read from it are pointed back at the real files by :func:`unstage_recordings`.
    """
    root = Path(os.path.abspath(Path(out_dir) / STAGING_DIR))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        for real, rel in links:
            link = root / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.abspath(real))
        for rel, content in texts:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def unstage_recordings(recordings: RecordingSet, staging: Path, real_root: Path) -> RecordingSet:
    """``recordings`` read from a :func:`staged_tree` with each file source pointed back at the
    real file (``real_root`` / its path relative to ``staging``)."""

    def real(source: str) -> str:
        return str(Path(real_root) / Path(os.path.abspath(source)).relative_to(staging))

    return RecordingSet.from_recordings(
        fastcopy(rec, sources=[fastcopy(src, source=real(src.source)) for src in rec.sources])
        for rec in recordings
    )
