"""Reading an arbitrary audio file as the mono waveform a model expects.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...), NIST
SPHERE ``.sph`` files with dmao's own reader (:mod:`dmao.data.sphere`, the one corpus preparation
uses: PCM, mu-law, A-law; shorten-compressed files through ``sph2pipe`` when it is on ``PATH``),
headerless PCM (``.raw``/``.pcm``) with the sample format, rate and channels the caller states
(:class:`RawFormat`: such a file says nothing about itself), and formats libsndfile does not know
with lhotse's audio backends (audioread/ffmpeg where installed). Channels are averaged to mono,
then the signal is resampled with lhotse's ``Resample`` transform — the resampler
``prepare_manifests`` applies to training corpora at another rate (without torchaudio it runs
``scipy.signal.resample_poly``).

Every failure is a :class:`FileNotFoundError` or :class:`ValueError` whose message is one line:
``FILE: what is wrong; what was expected``.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import Recording
from lhotse.augmentation import Resample

from dmao.data.sphere import read_sphere

__all__ = [
    "AUDIO_SUFFIXES",
    "RAW_SAMPLE_FORMATS",
    "RAW_SUFFIXES",
    "RawFormat",
    "decode_audio",
    "load_audio",
]

log = logging.getLogger(__name__)

RAW_SUFFIXES = (".raw", ".pcm")
"""Headerless PCM: read only with a :class:`RawFormat`."""

RAW_SAMPLE_FORMATS: dict[str, tuple[str, str, int]] = {
    # ffmpeg's names (`ffmpeg -f s16le`, `sox -t s16`) → (libsndfile subtype, byte order, bytes)
    "s8": ("PCM_S8", "FILE", 1),
    "u8": ("PCM_U8", "FILE", 1),
    "s16le": ("PCM_16", "LITTLE", 2),
    "s16be": ("PCM_16", "BIG", 2),
    "s24le": ("PCM_24", "LITTLE", 3),
    "s24be": ("PCM_24", "BIG", 3),
    "s32le": ("PCM_32", "LITTLE", 4),
    "s32be": ("PCM_32", "BIG", 4),
    "f32le": ("FLOAT", "LITTLE", 4),
    "f32be": ("FLOAT", "BIG", 4),
    "f64le": ("DOUBLE", "LITTLE", 8),
    "f64be": ("DOUBLE", "BIG", 8),
    "mulaw": ("ULAW", "FILE", 1),
    "alaw": ("ALAW", "FILE", 1),
}
"""Sample formats of headerless PCM, by ffmpeg's name."""

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".sph", ".aif", ".aiff", ".au", ".snd"}
    | {".w64", ".rf64", ".caf", ".m4a", ".aac", ".wma", ".webm", *RAW_SUFFIXES}
)
"""What a folder given to ``dmao transcribe`` is searched for (other files, such as
LibriSpeech's ``.trans.txt``, are left alone)."""

_RAW_USAGE = "--raw-format s16le --raw-sample-rate 16000 [--raw-channels N]"


@dataclass(frozen=True)
class RawFormat:
    """How a headerless PCM file stores its samples.

    Args:
        sample_format: a key of :data:`RAW_SAMPLE_FORMATS` (``s16le``, ``f32le``, ``mulaw``, ...).
        sample_rate_hz: samples per second per channel.
        channels: interleaved channels.
    """

    sample_format: str
    sample_rate_hz: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_format not in RAW_SAMPLE_FORMATS:
            raise ValueError(
                f"raw sample format must be one of {', '.join(RAW_SAMPLE_FORMATS)}, "
                f"got {self.sample_format!r}"
            )
        if self.sample_rate_hz <= 0:
            raise ValueError(f"raw sample rate must be > 0 Hz, got {self.sample_rate_hz}")
        if self.channels < 1:
            raise ValueError(f"raw channels must be >= 1, got {self.channels}")

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return RAW_SAMPLE_FORMATS[self.sample_format][2] * self.channels

    def describe(self) -> str:
        return f"{self.sample_format}, {self.sample_rate_hz} Hz, {self.channels} channel(s)"


def load_audio(
    path: str | Path,
    sampling_rate: int,
    *,
    raw: RawFormat | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """The audio of ``path`` as mono float32 samples at ``sampling_rate``.

    Args:
        path: an audio file in any format soundfile or lhotse can read, any rate and channels;
            or headerless PCM named ``*.raw``/``*.pcm`` (needs ``raw``).
        sampling_rate: the rate to resample to, in Hz.
        raw: how ``.raw``/``.pcm`` files store their samples (other files ignore it).
        channel: the channel to keep (0 = the first); None averages them.

    Returns:
        ``(N,)`` float32 samples in [-1, 1] (the channel mean, or the one ``channel``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, empty, not readable audio, headerless PCM without
            ``raw`` (or not a whole number of its frames), or holds no or non-finite samples.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.is_dir():
        raise ValueError(f"{path}: a folder; expected an audio file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; expected an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes); expected audio")
    if path.suffix.lower() in RAW_SUFFIXES:
        samples, source_rate = _read_raw(path, raw)
    else:
        samples, source_rate = _read(path)  # (C, N)
    return _mono(samples, source_rate, sampling_rate, str(path), channel)


def decode_audio(
    data: bytes,
    sampling_rate: int,
    *,
    where: str,
    channel: int | None = None,
    raw: RawFormat | None = None,
) -> np.ndarray:
    """Audio held in memory (a WAV/FLAC/... stream, e.g. what a Kaldi ``wav.scp`` command
    writes or a pipe into ``dmao transcribe -``) as mono float32 samples at ``sampling_rate``,
    like :func:`load_audio`.

    Args:
        data: the encoded stream, or headerless PCM when ``raw`` is given.
        sampling_rate: the rate to resample to, in Hz.
        where: what the stream is, for messages (``where: reason``).
        channel: the channel to keep; None averages them.
        raw: read ``data`` as headerless PCM in this format.

    Returns:
        ``(N,)`` float32 samples in [-1, 1].

    Raises:
        ValueError: no bytes, not audio libsndfile reads (or not whole frames of ``raw``), or
            no, or non-finite, samples.
    """
    if not data:
        raise ValueError(f"{where}: empty (0 bytes); expected audio")
    if raw is not None:
        samples, rate = _read_raw(data, raw, where)
        return _mono(samples, rate, sampling_rate, where, channel)
    try:
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (N, C)
    except (sf.SoundFileError, RuntimeError) as err:
        raise ValueError(f"{where}: not readable audio ({_soundfile_reason(err)})") from None
    return _mono(np.ascontiguousarray(frames.T), int(rate), sampling_rate, where, channel)


def _mono(
    samples: np.ndarray, source_rate: int, sampling_rate: int, where: str, channel: int | None
) -> np.ndarray:
    """``samples (C, N)`` checked, made mono (channel mean or ``channel``) and resampled."""
    if samples.shape[1] == 0:
        raise ValueError(f"{where}: holds no audio samples")
    if channel is not None and not 0 <= channel < samples.shape[0]:
        raise ValueError(
            f"{where}: has {samples.shape[0]} channel(s); channel {channel} was asked for"
        )
    if not np.isfinite(samples).all():
        raise ValueError(f"{where}: holds NaN or infinite samples; expected finite audio")
    if channel is None:
        mono = samples.mean(axis=0, dtype=np.float64).astype(np.float32)  # (N,)
    else:
        mono = samples[channel].astype(np.float32, copy=False)
    if source_rate != sampling_rate:
        mono = Resample(source_rate, sampling_rate)(mono[None, :])[0].astype(np.float32)
    return mono


def _read_raw(
    source: Path | bytes, raw: RawFormat | None, where: str | None = None
) -> tuple[np.ndarray, int]:
    """``(samples (C, N) float32, rate)`` of headerless PCM, a file or bytes (``where`` names
    them in messages; default the path)."""
    where = where or str(source)
    if raw is None:
        raise ValueError(
            f"{where}: headerless PCM has no header to say its sample format and rate; "
            f"give them with {_RAW_USAGE}"
        )
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size % raw.frame_bytes:
        # Checked because libsndfile silently drops a partial last frame: a remainder means
        # the stated format (sample width or channel count) is not the file's.
        raise ValueError(
            f"{where}: {size} bytes is not a whole number of {raw.frame_bytes}-byte frames; "
            f"expected headerless PCM as {raw.describe()}"
        )
    subtype, endian, _ = RAW_SAMPLE_FORMATS[raw.sample_format]
    try:
        data, rate = sf.read(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            dtype="float32",
            always_2d=True,
            format="RAW",
            subtype=subtype,
            endian=endian,
            samplerate=raw.sample_rate_hz,
            channels=raw.channels,
        )  # (N, C)
    except (sf.SoundFileError, RuntimeError) as err:
        raise ValueError(
            f"{where}: not readable as headerless PCM ({raw.describe()}): {_soundfile_reason(err)}"
        ) from None
    return np.ascontiguousarray(data.T), int(rate)


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (C, N) float32, rate)`` from soundfile, else from lhotse's backends."""
    if path.suffix.lower() == ".sph":
        try:
            samples, rate = read_sphere(path)
        except ValueError as err:  # SphereFormatError: "<path>: <reason>"
            reason = str(err).removeprefix(f"{path}: ")
            raise ValueError(f"{path}: not readable SPHERE audio: {_one_line(reason)}") from None
        return samples.astype(np.float32, copy=False), int(rate)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (N, C)
        return np.ascontiguousarray(data.T), int(rate)
    except (sf.SoundFileError, RuntimeError) as sf_error:  # LibsndfileError is a RuntimeError
        reason = _soundfile_reason(sf_error)
    try:
        with _quiet_fallback():
            recording = Recording.from_file(path)
            return recording.load_audio().astype(np.float32), int(recording.sampling_rate)
    except Exception as lhotse_error:  # lhotse raises AudioLoadingError and backend errors
        # lhotse's message spans many lines (one per backend tried, then a hint about an
        # environment variable) and adds nothing to libsndfile's reason for the formats a user
        # is likely to have; it is kept whole in the debug log (`dmao -v`).
        log.debug("%s: lhotse could not read it either: %s", path, lhotse_error)
    raise ValueError(
        f"{path}: not readable audio ({reason}); expected a format libsndfile reads (WAV, FLAC, "
        f"OGG, MP3, ...), NIST SPHERE, or headerless PCM named {'/'.join(RAW_SUFFIXES)}"
    )


def _soundfile_reason(err: Exception) -> str:
    """libsndfile's reason without the path it repeats (``Error opening 'x.wav': ...``)."""
    reason = err.error_string if isinstance(err, sf.LibsndfileError) else str(err)
    reason = _one_line(reason).removeprefix("Error : ").rstrip(".")  # "Error : flac decoder..."
    return reason or type(err).__name__


def _one_line(text: str) -> str:
    """``text``'s non-empty lines joined by "; " (messages must stay one line)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class _DropBelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextmanager
def _quiet_fallback() -> Iterator[None]:
    """No INFO records lhotse logs on the root logger (``logging.info("Using audioread...")``)
    and no warnings from its backends while it tries a file: a file it cannot read either is
    reported as one line, not three."""
    root = logging.getLogger()
    quiet = _DropBelowWarning()
    root.addFilter(quiet)  # a logger's filters see only records logged on that logger itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(quiet)
