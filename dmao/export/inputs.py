"""What ``dmao transcribe`` is asked to transcribe: files, folders of audio and list files.

Each command-line argument is one of

- ``FILE``: transcribed as given (a missing or unreadable file fails on its own later, as one
  line, without stopping the others);
- ``FOLDER``: every audio file below it (by suffix, :data:`~dmao.export.audio.AUDIO_SUFFIXES`;
  hidden files such as macOS's ``._x.wav`` are skipped), in sorted order; a folder without any
  is one failed input (like a bad file, it does not stop the others);
- ``@LIST``: a text file with one entry a line, ``PATH`` or ``ID<TAB>PATH`` (blank lines and
  lines starting with ``#`` are skipped). Relative paths are relative to the list's folder, as in
  ffmpeg's concat lists, so a list can move with its audio. Entries are taken literally: a folder
  listed there is a bad entry, not expanded.

The id of an input is its ``ID`` column, else its path as written (for files found in a folder:
the folder as written joined with the file's path below it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dmao.export.audio import AUDIO_SUFFIXES

__all__ = ["LIST_PREFIX", "AudioInput", "expand_inputs"]

LIST_PREFIX = "@"
"""An argument starting with this names a list file (write ``./@name`` for a file so named)."""


@dataclass(frozen=True)
class AudioInput:
    """One file to transcribe and the id its result is reported under; ``error`` is set when the
    input is already known to be bad (a folder without audio files): ``FILE: reason``."""

    id: str
    path: Path
    error: str | None = None

    @classmethod
    def of(cls, item: str | Path | AudioInput) -> AudioInput:
        """``item`` itself, or a path as an input whose id is the path as written."""
        if isinstance(item, AudioInput):
            return item
        return cls(str(item), Path(item))


def expand_inputs(arguments: Iterable[str | Path]) -> list[AudioInput]:
    """The inputs named by ``FILE``, ``FOLDER`` and ``@LIST`` arguments, in order.

    Raises:
        FileNotFoundError: a list file does not exist.
        ValueError: a list file is unreadable or lists nothing.
    """
    inputs: list[AudioInput] = []
    for argument in arguments:
        text = str(argument)
        if text.startswith(LIST_PREFIX):
            inputs.extend(_read_list(Path(text[len(LIST_PREFIX) :])))
        elif Path(text).is_dir():
            inputs.extend(_audio_below(Path(text), text))
        else:
            inputs.append(AudioInput(text, Path(text)))
    return inputs


def _audio_below(folder: Path, written: str) -> list[AudioInput]:
    found = sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )
    if not found:
        error = (
            f"{folder}: no audio files below this folder; expected files named "
            f"*{', *'.join(sorted(AUDIO_SUFFIXES))}"
        )
        return [AudioInput(written, folder, error)]
    return [AudioInput(str(Path(written) / rel), folder / rel) for rel in found]


def _read_list(path: Path) -> list[AudioInput]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such list file (an argument {LIST_PREFIX}LIST)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable UTF-8 list of audio files: {err}") from None
    inputs = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        utterance_id, tab, written = line.partition("\t")
        if not tab:
            utterance_id, written = entry, entry
        utterance_id, written = utterance_id.strip(), written.strip()
        if not utterance_id or not written:
            raise ValueError(f"{path}:{number}: expected PATH or ID<TAB>PATH, got {line!r}")
        inputs.append(AudioInput(utterance_id, path.parent / written))
    if not inputs:
        raise ValueError(
            f"{path}: the list names no files; expected one PATH or ID<TAB>PATH a line"
        )
    return inputs
