"""Reading an arbitrary audio file as the mono waveform a model expects.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...), NIST
SPHERE ``.sph`` files with dmao's own reader (:mod:`dmao.data.sphere`, the one corpus preparation
uses: PCM, mu-law, A-law; shorten-compressed files through ``sph2pipe`` when it is on ``PATH``),
and formats libsndfile does not know with lhotse's audio backends (audioread/ffmpeg where
installed). Channels are averaged to mono, then the signal
is resampled with lhotse's ``Resample`` transform — the resampler ``prepare_manifests`` applies to
training corpora at another rate (without torchaudio it runs ``scipy.signal.resample_poly``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import Recording
from lhotse.augmentation import Resample

from dmao.data.sphere import read_sphere

__all__ = ["load_audio"]


def load_audio(path: str | Path, sampling_rate: int) -> np.ndarray:
    """The audio of ``path`` as mono float32 samples at ``sampling_rate``.

    Args:
        path: an audio file in any format soundfile or lhotse can read, any rate and channels.
        sampling_rate: the rate to resample to, in Hz.

    Returns:
        ``(N,)`` float32 samples in [-1, 1] (the channel mean).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, not readable audio, or holds no samples.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such audio file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    samples, source_rate = _read(path)  # (C, N)
    if samples.shape[1] == 0:
        raise ValueError(f"{path}: the file holds no audio samples")
    mono = samples.mean(axis=0, dtype=np.float64).astype(np.float32)  # (N,)
    if source_rate != sampling_rate:
        mono = Resample(source_rate, sampling_rate)(mono[None, :])[0].astype(np.float32)
    return mono


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (C, N) float32, rate)`` from soundfile, else from lhotse's backends."""
    if path.suffix.lower() == ".sph":
        try:
            samples, rate = read_sphere(path)
        except ValueError as err:  # SphereFormatError: "<path>: <reason>"
            reason = str(err).removeprefix(f"{path}: ")
            raise ValueError(f"{path}: not readable SPHERE audio: {reason}") from None
        return samples.astype(np.float32, copy=False), int(rate)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (N, C)
        return np.ascontiguousarray(data.T), int(rate)
    except sf.LibsndfileError as sf_error:
        first_error = sf_error
    try:
        recording = Recording.from_file(path)
        return recording.load_audio().astype(np.float32), int(recording.sampling_rate)
    except Exception as lhotse_error:  # lhotse raises AudioLoadingError and backend errors
        raise ValueError(
            f"{path}: not readable audio; soundfile: {first_error}; lhotse: "
            f"{str(lhotse_error).splitlines()[0]}"
        ) from None
