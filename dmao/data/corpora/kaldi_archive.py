"""Audio stored in Kaldi archives: ``wav.scp`` entries ``<file>.ark:<offset>``.

Two kinds of entry are read, both found at ``offset`` (the byte after the key and its space):

- Kaldi's wave archives (``wav-copy``, ``extract-segments``, ``wav-reverberate`` writing
  ``ark,scp:``): a whole RIFF/WAV file, whose header gives its length;
- kaldiio's ``save_ark(..., write_function="soundfile")``, which ESPnet's ``format_wav_scp.sh
  --audio-format flac.ark`` (or ``wav.ark``) writes: ``AUDIO``, a length header (one byte ``n``,
  then an ``n``-byte little-endian length), then the bytes of an audio file (FLAC, WAV, ...).

An entry is returned as the bytes of the audio file it holds, unchanged, so it decodes like a
``wav.scp`` command's output (any sample format soundfile reads) and can be copied out as a file.
kaldiio's own reader is not used: it decodes only 8- and 16-bit WAV entries (Python's ``wave``)
and would mean decoding and encoding again to hand lhotse a file. Feature archives (Kaldi
matrices, ``\\0B``) are not audio and are refused with that reason.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from urllib.parse import quote

import soundfile as sf

__all__ = [
    "ARCHIVE_ENTRY",
    "archive_location",
    "extract_archive_entry",
    "is_archive_entry",
    "read_archive_entry",
]

ARCHIVE_ENTRY = re.compile(r"^(?P<file>.+\.ark):(?P<offset>\d+)$")
"""A ``wav.scp`` entry that points into a Kaldi archive: ``<file>.ark:<byte offset>``."""
_RIFF_HEADER = 8  # "RIFF" + the 32-bit size of what follows
_AUDIO = b"AUDIO"


def is_archive_entry(entry: str) -> bool:
    """Whether a ``wav.scp`` entry (not a command) is ``<file>.ark:<offset>``."""
    return ARCHIVE_ENTRY.match(entry) is not None


def archive_location(entry: str, base: Path) -> tuple[Path, int]:
    """``(archive file, byte offset)`` of ``<file>.ark:<offset>``, a relative file below ``base``.

    Raises:
        ValueError: ``entry`` is not an archive entry.
    """
    match = ARCHIVE_ENTRY.match(entry)
    if match is None:
        raise ValueError(f"{entry!r} is not an archive entry <file>.ark:<offset>")
    path = Path(match["file"])
    return (path if path.is_absolute() else base / path), int(match["offset"])


def read_archive_entry(entry: str, base: Path) -> bytes | tuple[str, str]:
    """The audio file stored at ``entry`` (``<file>.ark:<offset>``, a relative file below
    ``base``), or ``(reason, detail)`` (the reasons of :mod:`dmao.data.bad_audio`) when the
    archive is missing, the offset lies past its end, the bytes there are no audio entry, or
    the entry is cut short."""
    path, offset = archive_location(entry, base)
    try:
        with open(path, "rb") as fd:
            fd.seek(offset)
            head = fd.read(_RIFF_HEADER)
            if head[:4] == b"RIFF":
                size = int.from_bytes(head[4:8], "little")
                data = head + fd.read(size)
                wanted = size + _RIFF_HEADER
            elif head[:5] == _AUDIO:
                width = head[5]
                fd.seek(offset + len(_AUDIO) + 1)
                size = int.from_bytes(fd.read(width), "little")
                data = fd.read(size)
                wanted = size
            elif not head:
                return "unreadable_audio", f"offset {offset} is at or past the end of {path}"
            else:
                kind = "a Kaldi matrix/vector (features?)" if head[:2] == b"\0B" else repr(head)
                return "unreadable_audio", (
                    f"no audio entry at offset {offset} of {path} (expected RIFF or AUDIO, "
                    f"found {kind})"
                )
    except FileNotFoundError:
        return "missing_audio", f"archive {path} is not on disk"
    except OSError as err:
        return "unreadable_audio", f"{path}: {err}"
    if wanted == 0:
        return "empty_file", f"the entry at offset {offset} of {path} holds 0 bytes"
    if len(data) < wanted:
        return "unreadable_audio", (
            f"the entry at offset {offset} of {path} is cut short: {len(data)} of {wanted} bytes"
        )
    return data


def extract_archive_entry(data: bytes, folder: Path, recording: str) -> Path:
    """Write an entry's audio file (:func:`read_archive_entry`) as ``folder/<recording>.<ext>``
    (the id percent-quoted, the suffix from the file's format: ``.wav``, ``.flac``, ...) and
    return its path. Written under a temporary name and renamed, so a file with that name is
    always whole.

    Raises:
        ValueError: ``data`` is not a file soundfile can read (the caller probed it first).
    """
    try:
        kind = sf.info(io.BytesIO(data)).format
    except Exception as err:  # soundfile's errors for bytes that are not audio
        raise ValueError(f"recording {recording}: the archive entry is not audio: {err}") from err
    suffix = {"WAVEX": "wav"}.get(kind, kind.lower())  # WAVE_FORMAT_EXTENSIBLE is a .wav too
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{quote(recording, safe='')}.{suffix}"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path
