"""The audio of ``wav.scp`` entries other than files: commands, ``sph2pipe`` commands (read by
dmao itself) and entries of Kaldi archives.

**Commands** (``... |``) run in the recipe's root; their stdout is the recording
(:func:`run_audio_command`).

**``sph2pipe`` commands.** Kaldi's recipes for LDC corpora (Switchboard, Fisher, Hub5'00,
CallHome, TED-LIUM) write ``<kaldi>/tools/sph2pipe_v2.5/sph2pipe -f wav -p -c 1 a.sph |``: the
program is built with Kaldi and is missing on most other machines (no PyPI or Debian package). A
command that is ``sph2pipe`` (any path) with only the options ``-f <format>``, ``-p`` and
``-c 1|2`` and one ``.sph`` file is read as that file, on the channel ``-c`` names (else the
first), by dmao's SPHERE reader (:mod:`dmao.data.sphere`: the 16-bit samples ``sph2pipe -p``
writes, mu-law and A-law through the same G.711 tables; ``-f`` only chooses the output's
container; shorten-compressed files still go through the program when it is installed). Any
other option (``-t`` or ``-s`` ranges, ``-h``, ...) keeps the command as it is.

**Archive entries** ``<file>.ark:<offset>``. Two kinds of entry are read, both found at
``offset`` (the byte after the key and its space):

- Kaldi's wave archives (``wav-copy``, ``extract-segments``, ``wav-reverberate`` writing
  ``ark,scp:``): a whole RIFF/WAV file, whose header gives its length;
- kaldiio's ``save_ark(..., write_function="soundfile")``, which ESPnet's ``format_wav_scp.sh
  --audio-format flac.ark`` (or ``wav.ark``) writes: ``AUDIO``, a length header (one byte ``n``,
  then an ``n``-byte little-endian length), then the bytes of an audio file (FLAC, WAV, ...).

An entry is returned as the bytes of the audio file it holds, unchanged, so it decodes like a
``wav.scp`` command's output (any sample format soundfile reads) and can be copied out as a file
(:func:`dmao.data.audio_files.write_audio_file`).
kaldiio's own reader is not used: it decodes only 8- and 16-bit WAV entries (Python's ``wave``)
and would mean decoding and encoding again to hand lhotse a file. Feature archives (Kaldi
matrices, ``\\0B``) are not audio and are refused with that reason.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

__all__ = [
    "ARCHIVE_ENTRY",
    "COMMAND_TIMEOUT_S",
    "archive_location",
    "command_in",
    "is_archive_entry",
    "read_archive_entry",
    "run_audio_command",
    "sph2pipe_file",
]

ARCHIVE_ENTRY = re.compile(r"^(?P<file>.+\.ark):(?P<offset>\d+)$")
"""A ``wav.scp`` entry that points into a Kaldi archive: ``<file>.ark:<byte offset>``."""
_RIFF_HEADER = 8  # "RIFF" + the 32-bit size of what follows
_AUDIO = b"AUDIO"


COMMAND_TIMEOUT_S = 600
"""Seconds a ``wav.scp`` command may run."""


def command_in(command: str, cwd: Path) -> str:
    """``command`` as a shell line that runs it in ``cwd``."""
    return f"cd {shlex.quote(str(cwd))} && {command}"


def run_audio_command(command: str, cwd: Path) -> bytes | tuple[str, str]:
    """The audio stream a ``wav.scp`` command writes (run in ``cwd``), or ``(reason, detail)``
    when it fails, runs over :data:`COMMAND_TIMEOUT_S` or writes nothing."""
    try:
        done = subprocess.run(command_in(command, cwd), shell=True, capture_output=True,
                              timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "unreadable_audio", f"command ran over {COMMAND_TIMEOUT_S} s"
    if done.returncode != 0:
        first = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[0][:200]
        return "unreadable_audio", f"command exited with status {done.returncode}: {first}"
    if not done.stdout:
        return "empty_file", "the command wrote nothing"
    return done.stdout


_SPH2PIPE_FLAGS = {"-p": 0, "-f": 1, "-c": 1}  # option: how many values follow it


def sph2pipe_file(command: str) -> tuple[str, int] | None:
    """``(file, channel index)`` when a ``wav.scp`` command (without its ``|``) is ``sph2pipe``
    reading one whole ``.sph`` file (``-c 2``: channel index 1; no ``-c``: 0); else None.

    Example: ``"/opt/kaldi/tools/sph2pipe_v2.5/sph2pipe -f wav -p -c 2 sw02001.sph"`` →
    ``("sw02001.sph", 1)``; with ``-t 0:10`` (a time range) → None.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or Path(words[0]).name != "sph2pipe":
        return None
    files, channel, i = [], 0, 1
    while i < len(words):
        word = words[i]
        if word not in _SPH2PIPE_FLAGS:
            if word.startswith("-"):
                return None
            files.append(word)
            i += 1
            continue
        values = words[i + 1 : i + 1 + _SPH2PIPE_FLAGS[word]]
        if len(values) < _SPH2PIPE_FLAGS[word]:
            return None
        if word == "-c":
            if values[0] not in ("1", "2"):
                return None
            channel = int(values[0]) - 1
        i += 1 + len(values)
    if len(files) != 1 or not files[0].lower().endswith(".sph"):
        return None
    return files[0], channel


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
