"""Any corpus as Kaldi data directories (the layout Kaldi, ESPnet and k2 recipes write) → cuts.

Layout: ``data.corpus_dir`` (e.g. an ESPnet recipe's ``data/``) holds one folder per part::

    <corpus_dir>/<part>/wav.scp   <recording-id> <audio file>   or   <recording-id> <command> |
                                  or   <recording-id> <archive>.ark:<offset>
    <corpus_dir>/<part>/text      <utterance-id> <transcript>
    <corpus_dir>/<part>/segments  optional: <utterance-id> <recording-id> <start s> <end s>
    <corpus_dir>/<part>/utt2spk   optional: <utterance-id> <speaker-id>

Without ``segments`` every utterance is a whole recording (utterance id = recording id), as in
Kaldi. A relative audio path, and a command's working directory, is the folder that holds
``corpus_dir`` (a recipe's ``data/`` sits in the folder its paths are relative to). A command
(``flac -c -d -s a.flac |``, ``sph2pipe -f wav -p -t 0:10 a.sph |``) must write a WAV/FLAC
stream to stdout; it is run once here to read its rate and length, and again for the features.
A multi-channel recording is read on channel 0 (write ``sox a.wav -t wav - remix 2 |`` for
another). Read by dmao itself (:mod:`~dmao.data.corpora.kaldi_audio`): a ``sph2pipe`` command
of a whole ``.sph`` file (Kaldi's ``sph2pipe -f wav -p -c 2 a.sph |``) is the file on its
channel (no ``sph2pipe`` needed); an entry of a Kaldi archive (Kaldi's wave archives, ESPnet's
``flac.ark``) is copied out once, its bytes unchanged, to
``<manifests>/audio/<part>/<recording-id>.<wav|flac|...>``, since lhotse reads a recording from
a file or a command. A segment may end up to 0.5 s past its recording, which shortens it (Kaldi's
``extract-segments --max-overshoot``); an end of ``-1`` is the recording's end.

Lines are checked before anything is read (each problem names its file and line); lhotse's own
``load_kaldi_data_dir`` is not used, since it assumes one sampling rate for all files, drops up to
20 % of unreadable recordings with a warning only, and needs ``utt2spk`` to read ``text`` without
``segments``. Transcripts: Kaldi's non-speech tokens (``[noise]``, ``<unk>``, ``{breath}``) are
removed (:func:`normalize_kaldi`), then :func:`~dmao.data.text.normalize_transcript`; an utterance
left empty is dropped. Bad audio follows ``data.bad_audio`` like every corpus: a bad recording is
one entry that stands for all its utterances.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment
from lhotse.audio import AudioSource

from dmao.data.audio_files import audio_info, write_audio_file
from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio
from dmao.data.corpora.common import normalised_supervisions, recordings_from_files, segment_cuts
from dmao.data.corpora.kaldi_audio import (
    command_in,
    is_archive_entry,
    read_archive_entry,
    run_audio_command,
    sph2pipe_file,
)
from dmao.data.manifests import load_or_prepare

__all__ = [
    "KALDI_LAYOUT",
    "MAX_OVERSHOOT_S",
    "KaldiPart",
    "WavScp",
    "audio_base",
    "audio_path",
    "kaldi_parts",
    "normalize_kaldi",
    "prepare_kaldi",
    "read_kaldi_part",
    "read_reco2file_and_channel",
    "read_segments",
    "read_wav_scp",
    "run_audio_command",
    "span_in_recording",
]

log = logging.getLogger(__name__)

KALDI_LAYOUT = (
    "<corpus_dir>/<part>/wav.scp ('<recording-id> <file>', '<recording-id> <command> |' or "
    "'<recording-id> <archive>.ark:<offset>') and "
    "<corpus_dir>/<part>/text ('<utterance-id> <transcript>'), optionally segments "
    "('<utterance-id> <recording-id> <start> <end>') and utt2spk"
)
MAX_OVERSHOOT_S = 0.5
"""How far a segment may end past its recording (Kaldi's ``extract-segments`` default)."""
_MARKER = re.compile(r"^(\[[^\]]*\]|<[^>]*>|\{[^}]*\})$")


def normalize_kaldi(text: str) -> str:
    """Drop Kaldi's non-speech tokens, before :func:`~dmao.data.text.normalize_transcript`.

    A whole token in brackets is a marker, not a word: ``[noise]``, ``[laughter]``, ``<unk>``,
    ``<sil>``, ``{breath}`` (the conventions of Kaldi's and ESPnet's recipes). Example: ``"[noise]
    hello <unk> world"`` → ``"hello world"``. Brackets inside a word are left to
    ``normalize_transcript`` (which drops the bracket characters).
    """
    return " ".join(token for token in text.split() if not _MARKER.match(token))


@dataclass(frozen=True)
class WavScp:
    """A ``wav.scp``: each recording's entry and what kind of entry it is."""

    entries: dict[str, str]
    """``{recording id: file path, command (without its ``|``) or archive entry}``; a
    ``sph2pipe`` command that reads a whole ``.sph`` file is its file
    (:func:`~dmao.data.corpora.kaldi_audio.sph2pipe_file`)."""
    commands: frozenset[str]
    """The recording ids whose entry is a command."""
    archives: frozenset[str]
    """The recording ids whose entry is ``<file>.ark:<offset>``."""
    channels: dict[str, int]
    """The recordings read on another channel than the first (``sph2pipe -c 2``): index."""

    def path(self, recording: str, base: Path) -> Path:
        """The audio file of a recording that is a file, a relative one below ``base``."""
        return audio_path(self.entries[recording], base)

    def files(self) -> list[str]:
        """The ids of the recordings that are files (not commands, not archive entries)."""
        return [r for r in self.entries if r not in self.commands and r not in self.archives]

    def stream(self, recording: str, base: Path) -> bytes | tuple[str, str]:
        """The audio file a command or archive entry gives (:func:`run_audio_command`,
        :func:`~dmao.data.corpora.kaldi_audio.read_archive_entry`), or ``(reason, detail)``."""
        if recording in self.archives:
            return read_archive_entry(self.entries[recording], base)
        return run_audio_command(self.entries[recording], base)

    def where(self, recording: str, base: Path) -> str:
        """How problems name a recording's audio: its file, ``<command> |`` or the entry."""
        if recording in self.commands:
            return f"{self.entries[recording]} |"
        if recording in self.archives:
            return self.entries[recording]
        return str(self.path(recording, base))

    def channel_problem(self, recording: str, channels: int) -> str | None:
        """Why a recording of ``channels`` channels lacks the one its ``sph2pipe -c`` reads."""
        wanted = self.channels.get(recording, 0)
        if wanted < channels:
            return None
        return (
            f"has {channels} channel(s); wav.scp's sph2pipe -c {wanted + 1} reads channel "
            f"{wanted + 1}"
        )


@dataclass(frozen=True)
class KaldiPart:
    """One Kaldi data directory, checked: its tables by id (file order kept)."""

    folder: Path
    scp: WavScp
    text: dict[str, str]
    segments: dict[str, tuple[str, float, float]] | None
    """``{utterance id: (recording id, start, end)}``, end ``-1`` for the recording's end."""
    speakers: dict[str, str]

    @property
    def wav(self) -> dict[str, str]:
        """``wav.scp``'s entries by recording id (:attr:`WavScp.entries`)."""
        return self.scp.entries

    def spans(self) -> dict[str, tuple[str, float, float]]:
        """``{utterance id: (recording id, start, end)}``; whole recordings (end ``-1``) without
        ``segments``."""
        return self.segments or {u: (u, 0.0, -1.0) for u in self.text}

    def utterance_counts(self) -> Counter[str]:
        """``{recording id: number of its utterances}``."""
        if self.segments is None:
            return Counter(u for u in self.text if u in self.wav)
        return Counter(reco for reco, _, _ in self.segments.values())


def _table(path: Path, min_fields: int, expected: str) -> dict[str, tuple[int, list[str]]]:
    """``{first field: (line number, other fields)}`` of a Kaldi table; blank lines are passed."""
    rows: dict[str, tuple[int, list[str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields:
            raise ValueError(f"{path}:{number}: expected '{expected}', got {line!r}")
        if fields[0] in rows:
            raise ValueError(
                f"{path}:{number}: id {fields[0]} appears twice (first on line "
                f"{rows[fields[0]][0]})"
            )
        rows[fields[0]] = (number, fields[1:])
    return rows


def _mismatch(what: str, a: str, only_a: set[str], b: str, only_b: set[str]) -> str | None:
    problems = [
        f"{len(ids)} {what} in {here} but not in {there} (e.g. {', '.join(sorted(ids)[:3])})"
        for ids, here, there in ((only_a, a, b), (only_b, b, a))
        if ids
    ]
    return "; ".join(problems) or None


def read_wav_scp(path: Path) -> WavScp:
    """A ``wav.scp``: each entry a file, a command (kept without its trailing ``|``) or
    ``<file>.ark:<offset>``; a ``sph2pipe`` command of a whole ``.sph`` file becomes the file
    (on the channel its ``-c`` names).

    Raises:
        ValueError: a malformed line or a repeated id, with the file and line.
    """
    wav, commands, archives, channels = {}, set(), set(), {}
    rows = _table(path, 2, "<recording-id> <file> | <recording-id> <command> |")
    for reco, (_, rest) in rows.items():
        entry = " ".join(rest)
        if entry.endswith("|"):
            entry = entry[:-1].strip()
            sphere = sph2pipe_file(entry)
            if sphere is None:
                commands.add(reco)
            else:
                entry = sphere[0]
                if sphere[1]:
                    channels[reco] = sphere[1]
        elif is_archive_entry(entry):
            archives.add(reco)
        wav[reco] = entry
    return WavScp(wav, frozenset(commands), frozenset(archives), channels)


def read_segments(path: Path, recordings: Collection[str]) -> dict[str, tuple[str, float, float]]:
    """``{utterance id: (recording id, start, end)}`` of a ``segments`` file (end ``-1``: the
    recording's end).

    Raises:
        ValueError: a malformed line, a repeated id, a start or end that is not a number or
            runs backwards, or a recording not in ``recordings`` (file and line named).
    """
    segments = {}
    for utt, (number, rest) in _table(path, 4, "<utt> <recording> <start> <end>").items():
        try:
            start, end = float(rest[1]), float(rest[2])
        except ValueError:
            message = f"{path}:{number}: start and end must be numbers, got {rest[1:3]}"
            raise ValueError(message) from None
        if start < 0 or (end != -1 and end <= start):
            raise ValueError(f"{path}:{number}: segment {utt} runs from {start} to {end}")
        if rest[0] not in recordings:
            raise ValueError(f"{path}:{number}: recording {rest[0]} is not in wav.scp")
        segments[utt] = (rest[0], start, end)
    return segments


def read_reco2file_and_channel(path: Path) -> dict[str, tuple[str, str]]:
    """``{recording id: (file name, channel)}`` of a ``reco2file_and_channel`` file (what
    sclite's CTM and STM files call a recording: ``sw02001 sw02001 A``).

    Raises:
        ValueError: a line without three fields or a repeated id (file and line named).
    """
    rows = _table(path, 3, "<recording-id> <file> <channel>")
    return {reco: (rest[0], rest[1]) for reco, (_, rest) in rows.items()}


def read_kaldi_part(folder: Path | str) -> KaldiPart:
    """Read and check one Kaldi data directory (no audio is touched).

    Raises:
        FileNotFoundError: no such folder, or no ``wav.scp`` / ``text`` in it.
        ValueError: a malformed line (file and line named), a repeated id, utterances in
            ``text`` and ``segments`` (or, without segments, ``wav.scp``) that do not match, or a
            segment of a recording that ``wav.scp`` does not have.
    """
    folder = Path(folder)
    for name in ("wav.scp", "text"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} does not exist; expected {KALDI_LAYOUT}")
    scp = read_wav_scp(folder / "wav.scp")
    wav = scp.entries
    text = {u: " ".join(rest) for u, (_, rest) in _table(folder / "text", 1, "<utt> words").items()}
    segments = None
    if (folder / "segments").is_file():
        segments = read_segments(folder / "segments", wav)
        problem = _mismatch(
            "utterances", "text", text.keys() - segments.keys(), "segments",
            segments.keys() - text.keys(),
        )  # fmt: skip
    else:
        problem = _mismatch(
            "ids", "text", text.keys() - wav.keys(), "wav.scp (no segments file: one utterance "
            "per recording)", wav.keys() - text.keys(),
        )  # fmt: skip
    if problem:
        raise ValueError(f"{folder}: {problem}")
    speakers = {}
    if (folder / "utt2spk").is_file():
        speakers = {u: r[0] for u, (_, r) in _table(folder / "utt2spk", 2, "<utt> <spk>").items()}
    return KaldiPart(folder, scp, text, segments, speakers)


def kaldi_parts(corpus_dir: Path | str) -> list[str]:
    """The parts ``corpus_dir`` holds: its sub-folders with a ``wav.scp``, sorted."""
    return sorted(p.parent.name for p in Path(corpus_dir).glob("*/wav.scp"))


def audio_base(corpus_dir: Path | str) -> Path:
    """Where relative ``wav.scp`` paths and commands start: the folder holding ``corpus_dir``."""
    return Path(corpus_dir).resolve().parent


def audio_path(entry: str, base: Path) -> Path:
    """The file a ``wav.scp`` file entry names: as written if absolute, else below ``base``
    (:func:`audio_base`)."""
    path = Path(entry)
    return path if path.is_absolute() else base / path


def _probe_stream(
    kaldi: KaldiPart, reco: str, base: Path, extract_to: Path
) -> sf._SoundFileInfo | Path | tuple[str, str]:
    """A command's stream info, an archive entry's extracted file (below ``extract_to``), or
    ``(reason, detail)`` when the command fails or the entry is missing, cut short or no audio."""
    stream = kaldi.scp.stream(reco, base)
    if isinstance(stream, tuple):
        return stream
    archive = reco in kaldi.scp.archives
    info = audio_info(stream, "archive entry" if archive else "command's output")
    if isinstance(info, tuple) or not archive:
        return info
    return write_audio_file(stream, extract_to, reco)


def _recordings(
    part: str, kaldi: KaldiPart, base: Path, bad: BadAudioLog, num_jobs: int, extract_to: Path
) -> dict[str, Recording]:
    """The part's readable recordings (archive entries copied out below ``extract_to``); the
    others recorded in ``bad`` (one entry each)."""
    plain = {r: kaldi.scp.path(r, base) for r in kaldi.scp.files()}
    found = scan_audio(list(plain.values()))
    streams = sorted(kaldi.scp.commands | kaldi.scp.archives)
    with ThreadPoolExecutor(max(1, num_jobs)) as pool:
        infos = pool.map(lambda reco: _probe_stream(kaldi, reco, base, extract_to), streams)
        probed = dict(zip(streams, infos, strict=True))
    files = plain | {reco: path for reco, path in probed.items() if isinstance(path, Path)}
    counts = kaldi.utterance_counts()
    readable = []
    for reco in kaldi.wav:
        problem = found.get(plain[reco]) if reco in plain else probed[reco]
        if isinstance(problem, tuple):
            bad.add(BadAudio(part, reco, kaldi.scp.where(reco, base), *problem,
                             utterances=counts[reco]))  # fmt: skip
        else:
            readable.append(reco)
    recordings = recordings_from_files({r: files[r] for r in readable if r in files})
    for reco in readable:
        if reco in files:
            continue
        info = probed[reco]
        source = AudioSource(type="command", channels=list(range(info.channels)),
                             source=command_in(kaldi.wav[reco], base))  # fmt: skip
        recordings[reco] = Recording(
            id=reco, sources=[source], sampling_rate=info.samplerate,
            num_samples=info.frames, duration=info.frames / info.samplerate,
        )  # fmt: skip
    for reco in kaldi.scp.channels:  # sph2pipe -c 2 of a file with one channel
        channels = recordings[reco].num_channels if reco in recordings else None
        problem = channels is not None and kaldi.scp.channel_problem(reco, channels)
        if problem:
            del recordings[reco]
            bad.add(BadAudio(part, reco, kaldi.scp.where(reco, base), "unreadable_audio", problem,
                             utterances=counts[reco]))  # fmt: skip
    return {reco: recordings[reco] for reco in readable if reco in recordings}


def span_in_recording(start: float, end: float, length: float) -> tuple[float, float | None]:
    """``(end, duration)`` of a segment of a recording of ``length`` seconds: an ``end`` of ``-1``
    is the recording's end; an end up to :data:`MAX_OVERSHOOT_S` past it is shortened to it;
    ``duration`` is None when the segment starts at or after the end or ends further out."""
    end = length if end == -1 else end
    if start >= length or end > length + MAX_OVERSHOOT_S:
        return end, None
    return end, min(end, length) - start


def _supervisions(kaldi: KaldiPart, recordings: dict[str, Recording]) -> list[SupervisionSegment]:
    """One supervision per utterance of a readable recording, on channel 0 (or the one its
    ``sph2pipe -c`` names).

    Raises:
        ValueError: segments that start after their recording ends or end more than
            :data:`MAX_OVERSHOOT_S` past it (all listed).
    """
    out, problems = [], []
    for utt, (reco, start, end) in kaldi.spans().items():
        if reco not in recordings:
            continue
        length = recordings[reco].duration
        end, duration = span_in_recording(start, end, length)
        if duration is None:
            problems.append(f"{utt} ({start:g}–{end:g} s of {reco}, which lasts {length:.2f} s)")
            continue
        out.append(
            SupervisionSegment(
                id=utt, recording_id=reco, start=start, duration=duration,
                channel=kaldi.scp.channels.get(reco, 0), text=kaldi.text[utt],
                speaker=kaldi.speakers.get(utt),
            )
        )  # fmt: skip
    if problems:
        raise ValueError(
            f"{kaldi.folder / 'segments'}: {len(problems)} segment(s) outside their recording: "
            f"{', '.join(problems[:5])}{', ...' if len(problems) > 5 else ''}"
        )
    return out


def prepare_kaldi(
    corpus_dir: Path | str, out_dir: Path | str, parts: Sequence[str], **options: Any
) -> dict[str, CutSet]:
    """Kaldi data directories ``corpus_dir/<part>`` → cuts (one per utterance) with cached fbank.

    Cut ids are the utterance ids; ``custom["original_text"]`` keeps the ``text`` line. Idempotent
    per part, like :func:`~dmao.data.manifests.prepare_manifests`; ``options`` are
    :func:`~dmao.data.manifests.load_or_prepare`'s keyword arguments (``sampling_rate``,
    ``num_jobs``, which also runs the commands, ``bad_audio``, ...).

    Raises:
        FileNotFoundError: ``corpus_dir`` or a part's folder or table is missing.
        ValueError: malformed tables (:func:`read_kaldi_part`), segments outside their
            recording, bad audio (strict: all listed) or more of it than the budget (skip).
    """
    corpus_dir = Path(corpus_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        if not corpus_dir.is_dir():  # only here: cached parts load without the corpus
            raise FileNotFoundError(f"data.corpus_dir {corpus_dir} does not exist; expected "
                                    f"{KALDI_LAYOUT}")  # fmt: skip
        base = audio_base(corpus_dir)
        tables = {}
        for part in missing:
            if not (corpus_dir / part).is_dir():
                found = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir())
                raise FileNotFoundError(f"Kaldi data directory {corpus_dir / part} does not "
                                        f"exist (folders there: {found or 'none'})")  # fmt: skip
            tables[part] = read_kaldi_part(corpus_dir / part)
        recordings = {}
        for part, kaldi in tables.items():
            bad.listed[part] = len(kaldi.text)
            recordings[part] = _recordings(part, kaldi, base, bad, options.get("num_jobs", 2),
                                           Path(out_dir) / "audio" / part)  # fmt: skip
        bad.check(missing, stage="pre-scan of the audio")
        by_part = {}
        for part, kaldi in tables.items():
            supervisions, dropped = normalised_supervisions(
                _supervisions(kaldi, recordings[part]), normalize_kaldi
            )
            log.info("Kaldi data dir %s: %d utterances, %d empty after normalisation dropped",
                     kaldi.folder, len(supervisions), dropped)  # fmt: skip
            by_part[part] = segment_cuts(
                RecordingSet.from_recordings(recordings[part].values()), supervisions
            )
        return by_part

    return load_or_prepare(out_dir, parts, read, **options)
