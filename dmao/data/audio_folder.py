"""Folders of audio files used beside a corpus: noise recordings (``data.noise_dir``,
:mod:`dmao.data.noise`) and room impulse responses (``data.rir_dir``, :mod:`dmao.data.reverb`).

Every file with an :data:`AUDIO_SUFFIXES` suffix below the folder is used, searched recursively
and sorted by path; a file is named by its path below the folder with its suffix (``a.wav`` and
``a.flac`` are two recordings). Before use the headers are pre-scanned like a corpus's audio
(:func:`dmao.data.bad_audio.scan_audio`): a file that cannot be read is listed with its reason,
and ``data.bad_audio: skip`` leaves it out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio

__all__ = ["AUDIO_SUFFIXES", "audio_files", "folder_digest", "readable_audio_files"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".sph")
"""Files below such a folder read as audio."""


def folder_digest(folder: Path | str) -> str:
    """8 hex digits of the folder's absolute path: names what is cached from it."""
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:8]


def audio_files(folder: Path, field: str) -> list[Path]:
    """The files with an :data:`AUDIO_SUFFIXES` suffix below ``folder``, sorted by path, or a
    :class:`ValueError` naming the setting ``field`` when there is no such folder or file."""
    if not folder.is_dir():
        raise ValueError(f"{field}: {folder} is not a folder")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )
    if not files:
        raise ValueError(f"{field}: no audio files ({', '.join(AUDIO_SUFFIXES)}) below {folder}")
    return files


def readable_audio_files(
    folder: Path, field: str, part: str, bad: BadAudioLog, *, what: str
) -> dict[Path, str]:
    """``{path: id}`` of the audio files below ``folder`` whose headers read, the others recorded
    in ``bad`` under ``part`` (strict: a :class:`ValueError` listing every one; skip: left out
    within the error budget). ``what`` names the files in the error ("noise files")."""
    files = audio_files(folder, field)
    bad.listed[part] = len(files)
    ids = {path: path.relative_to(folder).as_posix() for path in files}
    for path, (reason, detail) in scan_audio(files).items():
        bad.add(BadAudio(part, ids[path], str(path), reason, detail))
    bad.check([part], stage=f"pre-scan of the {what}")
    excluded = bad.excluded(part)
    return {path: file_id for path, file_id in ids.items() if file_id not in excluded}
