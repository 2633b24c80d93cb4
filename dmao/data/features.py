"""The one log-mel fbank front end (cached, on-the-fly and at decoding) and its parallel extraction.

:func:`fbank_extractor` is METHOD.md §6's feature: 80 mel bins, 25 ms windows every 10 ms.
:func:`store_features` stores features for a :class:`~lhotse.CutSet` as lilcom archives, in
worker processes from :func:`feature_executor`, and returns the cuts that got none (unreadable
audio, non-finite features) for the caller to report (:mod:`dmao.data.bad_audio`).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter
from lhotse.audio.utils import AudioLoadingError
from lhotse.cut import Cut

from dmao.data.sphere import install_audio_backend

__all__ = [
    "FRAME_SHIFT_S",
    "NUM_MEL_BINS",
    "FiniteFbank",
    "NonFiniteFeaturesError",
    "fbank_extractor",
    "feature_executor",
    "store_features",
]

# METHOD.md §6: 80-dim log-mel features, 25 ms windows every 10 ms, 60–7600 Hz at 16 kHz.
NUM_MEL_BINS = 80
FRAME_SHIFT_S = 0.01
_FRAME_LENGTH_S = 0.025
_LOW_FREQ_HZ = 60.0
# Kaldi convention (which lhotse follows): a non-positive high_freq is an offset from Nyquist.
# -400 gives 7600 Hz at 16 kHz and stays valid at 8 kHz (3600 Hz), where a fixed 7600 would not.
_HIGH_FREQ_OFFSET_HZ = -400.0


def fbank_extractor(sampling_rate: int = 16000) -> Fbank:
    """The one feature extractor used for cached features, on-the-fly features and decoding.

    lhotse's Kaldi-compatible fbank (``lhotse.Fbank``): 80 mel bins, 25 ms povey window, 10 ms
    shift, pre-emphasis 0.97, DC offset removal, power spectrum, 60 Hz to Nyquist − 400 Hz
    (7600 Hz at 16 kHz), no dither (so features are deterministic), ``snip_edges=False`` (so a cut
    of ``d`` seconds has ``round(d / 0.01)`` frames, the count lhotse's manifests assume).
    Output of ``extract(samples, sampling_rate)``: ``(num_frames, 80)`` float32 natural-log mel
    energies, floored at float32 eps.
    """
    config = FbankConfig(
        sampling_rate=sampling_rate,
        frame_length=_FRAME_LENGTH_S,
        frame_shift=FRAME_SHIFT_S,
        num_filters=NUM_MEL_BINS,
        low_freq=_LOW_FREQ_HZ,
        high_freq=_HIGH_FREQ_OFFSET_HZ,
        dither=0.0,
        snip_edges=False,
    )
    return Fbank(config)


@contextmanager
def feature_executor(num_jobs: int) -> Iterator[ProcessPoolExecutor | None]:
    """One process pool for all parts (spawning costs seconds per pool), or None for 1 job.

    lhotse would start its own "spawn" pool per call; ours additionally pins each worker to one
    torch thread, so ``num_jobs`` processes do not each start a thread per core, and installs
    dmao's audio backend in it.
    """
    if num_jobs <= 1:
        yield None
        return
    with ProcessPoolExecutor(
        num_jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_feature_worker,
    ) as executor:
        yield executor


def _init_feature_worker() -> None:
    """One torch thread per worker; the same audio backend as the parent (spawned processes
    start with lhotse's default, which cannot read .sph without sph2pipe)."""
    torch.set_num_threads(1)
    install_audio_backend()
    logging.getLogger().addFilter(_drop_lhotse_suppressed)


def store_features(
    cuts: CutSet,
    out_dir: Path,
    part: str,
    sampling_rate: int,
    num_jobs: int,
    executor: ProcessPoolExecutor | None,
) -> tuple[CutSet, list[Cut]]:
    """Features for ``cuts`` (sorted by id) and the cuts that got none (undecodable audio,
    non-finite features), which lhotse drops with only a log line."""
    num_jobs = min(num_jobs, len(cuts)) if executor is not None else 1
    # lhotse warns about torch threads in this (parent) process whenever num_jobs > 1, although
    # the parent only waits: drop to one thread for the call (the workers are pinned already).
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger().addFilter(_drop_lhotse_suppressed)
    try:
        with_features = cuts.compute_and_store_features(
            extractor=FiniteFbank(fbank_extractor(sampling_rate).config),
            # One lilcom archive (num_jobs == 1) or a folder of them (one per process).
            storage_path=out_dir / f"feats_{part}",
            num_jobs=num_jobs,
            storage_type=LilcomChunkyWriter,
            executor=executor if num_jobs > 1 else None,
            progress_bar=False,
        )
    finally:
        torch.set_num_threads(num_threads)
        logging.getLogger().removeFilter(_drop_lhotse_suppressed)
    # lhotse drops, with only a log line, cuts whose audio cannot be read: the caller reports
    # them (a silently smaller training set is worse than a stopped preparation).
    kept = set(with_features.ids)
    lost = [cut for cut in cuts if cut.id not in kept]
    # Parallel extraction returns the cuts grouped by worker: restore the sorted order.
    return CutSet.from_cuts(sorted(with_features, key=lambda cut: cut.id)), lost


def _drop_lhotse_suppressed(record: logging.LogRecord) -> bool:
    """Logging filter: lhotse's "[Suppressed AudioLoadingError] ..." warning for a dropped cut
    (the bad-audio log reports each such cut once, with its reason)."""
    return not str(record.msg).startswith("[Suppressed ")


class NonFiniteFeaturesError(AudioLoadingError):
    """Features of a cut are NaN/inf (NaN or inf samples). An :class:`AudioLoadingError`, so
    lhotse's feature extraction drops the cut as it does undecodable audio (lilcom would
    otherwise crash the whole extraction on the NaN)."""


class FiniteFbank(Fbank):
    """:func:`fbank_extractor` that refuses non-finite output (same name and config, so the
    stored features are those of ``Fbank``)."""

    def extract(self, samples: np.ndarray | torch.Tensor, sampling_rate: int) -> np.ndarray:
        feats = super().extract(samples, sampling_rate)
        if not np.isfinite(np.asarray(feats)).all():
            raise NonFiniteFeaturesError("fbank features are NaN or inf (NaN or inf samples?)")
        return feats
