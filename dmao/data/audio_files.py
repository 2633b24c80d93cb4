"""Audio held as bytes (an entry of a Kaldi archive, a cell of a Parquet file) written out as the
file it is, since lhotse reads a recording from a file, a command or a URL."""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import quote

import soundfile as sf

__all__ = ["audio_info", "write_audio_file"]


def audio_info(data: bytes, what: str) -> sf._SoundFileInfo | tuple[str, str]:
    """soundfile's header of an audio file held in ``data``, or ``(reason, detail)`` (the
    reasons of :mod:`dmao.data.bad_audio`) when it is empty, not audio or holds no samples;
    ``what`` names the bytes in the detail (``"archive entry"``)."""
    if not data:
        return "empty_file", f"the {what} holds 0 bytes"
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as err:  # soundfile's errors for bytes that are not audio
        return "unreadable_audio", f"the {what} is not audio: {err}"
    return info if info.frames else ("empty_audio", "0 samples")


def write_audio_file(data: bytes, folder: Path, name: str) -> Path:
    """Write an audio file held in ``data`` as ``folder/<name>.<ext>`` (``name``
    percent-quoted, the suffix from the file's format: ``.wav``, ``.flac``, ...), its bytes
    unchanged, and return its path. Written under a temporary name and renamed, so a file with
    that name is always whole.

    Raises:
        ValueError: ``data`` is not a file soundfile can read (callers check with
            :func:`audio_info` first).
    """
    try:
        kind = sf.info(io.BytesIO(data)).format
    except Exception as err:  # soundfile's errors for bytes that are not audio
        raise ValueError(f"{name}: not audio: {err}") from err
    suffix = {"WAVEX": "wav"}.get(kind, kind.lower())  # WAVE_FORMAT_EXTENSIBLE is a .wav too
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{quote(name, safe='')}.{suffix}"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path
