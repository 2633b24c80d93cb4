"""What ``dmao transcribe`` is asked to transcribe: files, folders of audio and list files.

Each command-line argument is one of

- ``FILE``: transcribed as given (a missing or unreadable file fails on its own later, as one
  line, without stopping the others);
- ``-``: standard input, read to its end: a stream with a header (WAV, FLAC, OGG, ...), or
  headerless PCM when a :class:`~dmao.export.audio.RawFormat` is given (``--raw-format``);
  at most once (``./-`` is a file named ``-``);
- ``FOLDER`` with a ``wav.scp``: a Kaldi data directory (the layout ``dmao prepare kaldi``
  reads): one input per utterance of its ``segments`` file, else per recording of ``wav.scp``,
  named by its id. An entry may be a file, a command ending in ``|`` that writes WAV/FLAC to
  stdout, or an entry of a Kaldi archive (``<file>.ark:<offset>``: Kaldi's wave archives,
  ESPnet's ``flac.ark``; :mod:`~dmao.data.corpora.kaldi_audio`); relative paths and
  commands start from the folder above the data directory's parent (a recipe's root, for
  ``data/test``), as in ``dmao prepare kaldi``; a recording is read on channel 0, as there.
  ``text`` and the other files are not needed (``reco2file_and_channel`` names the recordings
  in CTM output). The segments of one recording read it once when they
  follow each other (Kaldi sorts them so);
- ``MANIFEST.json`` (or ``.jsonl``): a NeMo manifest (the layout ``dmao prepare nemo`` reads,
  :mod:`dmao.data.corpora.nemo`): one input per line, its ``offset``/``duration`` span of its
  ``audio_filepath`` (``text`` is not needed), named by the id ``dmao prepare nemo`` gives it,
  read on channel 0 (a tarred dataset's manifest is refused: its audio is in tar shards);
- ``FOLDER``: otherwise, every audio file below it (by suffix,
  :data:`~dmao.export.audio.AUDIO_SUFFIXES`; hidden files such as macOS's ``._x.wav`` are
  skipped), in sorted order; a folder without any is one failed input (like a bad file, it
  does not stop the others);
- ``@LIST``: a text file with one entry a line, ``PATH`` or ``ID<TAB>PATH`` (blank lines and
  lines starting with ``#`` are skipped). Relative paths are relative to the list's folder, as in
  ffmpeg's concat lists, so a list can move with its audio. Entries are taken literally: a folder
  listed there is a bad entry, not expanded.

The id of an input is its ``ID`` column or Kaldi id, else its path as written (for files found
in a folder: the folder as written joined with the file's path below it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmao.export.audio import AUDIO_SUFFIXES, RawFormat, decode_audio, load_audio

__all__ = ["LIST_PREFIX", "STDIN", "AudioInput", "InputReader", "RecordingSpan", "expand_inputs"]

LIST_PREFIX = "@"
"""An argument starting with this names a list file (write ``./@name`` for a file so named)."""
STDIN = "-"
"""The argument that stands for standard input (write ``./-`` for a file so named)."""
NEMO_SUFFIXES = (".json", ".jsonl")
"""A file argument so named is a NeMo manifest."""


@dataclass(frozen=True)
class RecordingSpan:
    """Where an utterance lies in its recording: a Kaldi data directory's utterance (a span of
    one ``wav.scp`` recording) or a NeMo manifest's line (of its audio file)."""

    recording: str
    command: str | None
    """The command whose stdout is the recording (without its ``|``), or None for a file."""
    cwd: Path
    """Where the command runs."""
    start: float = 0.0
    end: float = -1.0
    """Seconds; ``-1``: the recording's end."""
    file: str = ""
    """The recording's name in CTM files: ``reco2file_and_channel``'s, else the recording id."""
    channel: str = "A"
    """Its channel in CTM files: ``reco2file_and_channel``'s, else ``A``."""
    archive: str | None = None
    """The recording's ``<file>.ark:<offset>`` entry, or None (a file or command)."""
    read_channel: int = 0
    """The channel read (index): the first, or the one ``sph2pipe -c`` names."""


@dataclass(frozen=True)
class AudioInput:
    """One file (or Kaldi utterance) to transcribe and the id its result is reported under;
    ``error`` is set when the input is already known to be bad (a folder without audio files):
    ``FILE: reason``. For a Kaldi utterance ``path`` is its recording's file (an archive
    entry's archive), or the ``wav.scp`` of a command."""

    id: str
    path: Path
    error: str | None = None
    span: RecordingSpan | None = None
    stdin: bool = False
    """The audio is standard input (``-``; its ``path`` is ``<stdin>``)."""

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
        ValueError: a list file is unreadable or lists nothing; a Kaldi data directory's
            ``wav.scp`` or ``segments``, or a NeMo manifest, has a bad line (file and line
            named); ``-`` twice.
    """
    inputs: list[AudioInput] = []
    for argument in arguments:
        text = str(argument)
        if text == STDIN:
            if any(audio.stdin for audio in inputs):
                raise ValueError(f"'{STDIN}' (standard input) can be given once")
            inputs.append(AudioInput(STDIN, Path("<stdin>"), stdin=True))
        elif text.startswith(LIST_PREFIX):
            inputs.extend(_read_list(Path(text[len(LIST_PREFIX) :])))
        elif Path(text).suffix.lower() in NEMO_SUFFIXES and Path(text).is_file():
            inputs.extend(_nemo_utterances(Path(text)))
        elif (Path(text) / "wav.scp").is_file():
            inputs.extend(_kaldi_utterances(Path(text)))
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


def _nemo_utterances(path: Path) -> list[AudioInput]:
    from dmao.data.corpora.nemo import read_nemo_manifest

    inputs = []
    for entry in read_nemo_manifest(path, text_key=None):
        if entry.shard is not None:
            raise ValueError(
                f"{entry.where}: a line of a tarred dataset ('shard_id'); transcribe reads audio "
                "files, not tar shards: give it the manifest the dataset was tarred from, or the "
                "files `dmao prepare nemo` copies out of the shards (<out>/audio/<part>/)"
            )
        span = RecordingSpan(entry.recording, None, entry.audio.parent, entry.offset, entry.end,
                             entry.recording)  # fmt: skip
        inputs.append(AudioInput(entry.id, entry.audio, span=span))
    return inputs


def _kaldi_utterances(folder: Path) -> list[AudioInput]:
    from dmao.data.corpora.kaldi import (
        audio_base,
        audio_path,
        read_reco2file_and_channel,
        read_segments,
        read_wav_scp,
    )
    from dmao.data.corpora.kaldi_audio import archive_location

    scp = read_wav_scp(folder / "wav.scp")
    wav, commands, archives = scp.entries, scp.commands, scp.archives
    names = {}
    if (folder / "reco2file_and_channel").is_file():
        names = read_reco2file_and_channel(folder / "reco2file_and_channel")
    base = audio_base(folder.resolve().parent)
    spans = {reco: (reco, 0.0, -1.0) for reco in wav}
    if (folder / "segments").is_file():
        spans = read_segments(folder / "segments", wav)
    if not spans:
        raise ValueError(f"{folder / 'wav.scp'}: lists no recordings")
    inputs = []
    for utterance, (reco, start, end) in spans.items():
        command = wav[reco] if reco in commands else None
        archive = wav[reco] if reco in archives else None
        path = folder / "wav.scp" if command else audio_path(wav[reco], base)
        if archive:
            path = archive_location(archive, base)[0]
        file, channel = names.get(reco, (reco, "A"))
        source = RecordingSpan(reco, command, base, start, end, file, channel, archive,
                             scp.channels.get(reco, 0))  # fmt: skip
        inputs.append(AudioInput(utterance, path, span=source))
    return inputs


class InputReader:
    """Reads an input's samples at the model's rate: a file with :func:`load_audio`, a Kaldi
    utterance from its recording (kept until another recording is read, so that consecutive
    segments read it once)."""

    def __init__(self, sampling_rate: int, raw: RawFormat | None = None) -> None:
        self.sampling_rate = sampling_rate
        self.raw = raw
        self._recording: tuple[tuple[Path, str], np.ndarray] | None = None

    def read(self, audio: AudioInput) -> np.ndarray:
        """``(N,)`` float32 mono samples of ``audio``.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: unreadable audio, a failing command, or a segment outside its
                recording; one line that starts with ``audio.path`` (``<stdin>`` for ``-``).
        """
        if audio.stdin:
            data = sys.stdin.buffer.read()
            return decode_audio(data, self.sampling_rate, where=str(audio.path), raw=self.raw)
        if audio.span is None:
            return load_audio(audio.path, self.sampling_rate, raw=self.raw)
        from dmao.data.corpora.kaldi import span_in_recording

        source = audio.span
        samples = self._whole(audio.path, source)
        length = len(samples) / self.sampling_rate
        end, duration = span_in_recording(source.start, source.end, length)
        if duration is None:
            raise ValueError(
                f"{audio.path}: segment {audio.id} ({source.start:g}-{end:g} s) lies outside "
                f"recording {source.recording} ({length:.2f} s)"
            )
        first = round(source.start * self.sampling_rate)
        return samples[first : first + round(duration * self.sampling_rate)]

    def _whole(self, path: Path, source: RecordingSpan) -> np.ndarray:
        key = (path, source.recording)
        if self._recording is not None and self._recording[0] == key:
            return self._recording[1]
        self._recording = None  # a failed read must not leave the last recording behind
        if source.command is None and source.archive is None:
            samples = load_audio(path, self.sampling_rate, raw=self.raw,
                                 channel=source.read_channel)  # fmt: skip
        else:
            from dmao.data.corpora.kaldi_audio import read_archive_entry, run_audio_command

            where = f"{path}: recording {source.recording}"
            if source.archive is not None:
                stream = read_archive_entry(source.archive, source.cwd)
            else:
                stream = run_audio_command(source.command, source.cwd)
            if isinstance(stream, tuple):
                raise ValueError(f"{where}: {stream[1]}")
            samples = decode_audio(stream, self.sampling_rate, where=where, channel=0)
        self._recording = (key, samples)
        return samples
