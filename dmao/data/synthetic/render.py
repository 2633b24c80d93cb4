"""Rendering one utterance of the synthetic corpus: espeak-ng speech, silence, level and noise.

:func:`render` turns a :class:`RenderJob` into 16 kHz int16 samples; every random number comes
from the job's own seed, so the bytes do not depend on which process renders it or in what order.
:func:`run_jobs` writes a list of jobs as FLAC files, in worker processes when there are enough.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soundfile as sf

from dmao.data.synthetic.espeak import get_synthesizer, resample

__all__ = [
    "MIN_JOBS_FOR_WORKERS",
    "PAD_SECONDS",
    "PEAK_LEVEL",
    "SAMPLE_RATE",
    "RenderJob",
    "render",
    "run_jobs",
    "synthesize_job",
]

SAMPLE_RATE = 16000
PAD_SECONDS = (0.05, 0.3)  # leading and trailing silence, drawn uniformly
PEAK_LEVEL = (0.3, 0.9)  # peak amplitude of the speech, drawn uniformly


@dataclass(frozen=True)
class RenderJob:
    path: str
    spoken: str
    voice: str
    rate_wpm: int
    pitch: int
    pitch_range: int
    seed: tuple[int, ...]  # np.random.SeedSequence entropy of this utterance
    noise_snr_db: tuple[float, float] | None


def _pink_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Unit-RMS 1/f noise: white noise shaped in the frequency domain by 1/sqrt(f)."""
    # FFTs of utterance lengths with large prime factors were 7 ms each; a 5-smooth length is fast.
    num_fft = scipy.fft.next_fast_len(num_samples, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(num_fft))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0  # keep DC finite; it is removed below anyway
    noise = scipy.fft.irfft(spectrum / np.sqrt(freqs), n=num_fft)[:num_samples]
    noise -= noise.mean()
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def render(job: RenderJob) -> np.ndarray:
    """One utterance at 16 kHz as ``(num_samples,)`` int16: speech, padding, level, noise."""
    rng = np.random.default_rng(job.seed)
    # Draw every number whatever the options, so noise on/off changes nothing else.
    pad_before, pad_after = rng.uniform(*PAD_SECONDS, size=2)
    peak_level = rng.uniform(*PEAK_LEVEL)
    snr_fraction = rng.uniform()
    pink = rng.uniform() < 0.5
    espeak_seed = int(rng.integers(0, 2**31))
    engine = get_synthesizer()
    native = engine.synthesize(
        job.spoken, job.voice, job.rate_wpm, job.pitch, job.pitch_range, rand_seed=espeak_seed
    )
    if native.size == 0 or not np.any(native):
        raise RuntimeError(f"espeak produced silence for {job.path} ({job.voice}): {job.spoken!r}")
    speech = resample(native / 32768.0, engine.sample_rate, SAMPLE_RATE)
    speech *= peak_level / np.max(np.abs(speech))
    audio = np.concatenate(
        [
            np.zeros(round(pad_before * SAMPLE_RATE)),
            speech,
            np.zeros(round(pad_after * SAMPLE_RATE)),
        ]
    )
    if job.noise_snr_db is not None:
        low, high = job.noise_snr_db
        snr_db = low + (high - low) * snr_fraction
        noise = _pink_noise(rng, audio.size) if pink else rng.standard_normal(audio.size)
        speech_power = float(np.mean(speech**2))  # the padding is not part of the signal
        audio += noise * math.sqrt(speech_power / 10.0 ** (snr_db / 10.0))
        peak = float(np.max(np.abs(audio)))
        if peak > 0.99:  # rare at SNR >= 15 dB; scale rather than clip
            audio *= 0.99 / peak
    return np.round(audio * 32767.0).astype(np.int16)


def synthesize_job(job: RenderJob) -> tuple[str, int]:
    """Render and write one FLAC (atomically: temporary name, then rename).

    Returns ``(path, num_samples)``.
    """
    audio = render(job)
    tmp = job.path + ".tmp"
    sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, job.path)
    return job.path, int(audio.size)


# Starting a worker costs about a second (importing scipy.signal dominates), about what one process
# needs to synthesise 150 utterances; below this many jobs, synthesise in this process.
MIN_JOBS_FOR_WORKERS = 300


def run_jobs(jobs: list[RenderJob], num_jobs: int) -> Iterator[tuple[str, int]]:
    if num_jobs <= 1 or len(jobs) < MIN_JOBS_FOR_WORKERS:
        yield from map(synthesize_job, jobs)
        return
    # "spawn": each worker loads its own espeak-ng (the library is process-global and not
    # thread-safe) and nothing inherited from the parent (threads, torch state) can bite.
    # Recycling workers bounds a small leak of ~2 KB per library reload (measured).
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(32, len(jobs) // (4 * num_jobs)))
    with context.Pool(num_jobs, maxtasksperchild=1000) as pool:
        yield from pool.imap_unordered(synthesize_job, jobs, chunksize=chunksize)
