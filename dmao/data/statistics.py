"""Per-bin feature statistics of a corpus (for global mean/variance normalisation)."""

from __future__ import annotations

import logging

import torch
from lhotse import CutSet

from dmao.data.bad_audio import audio_error_message
from dmao.data.features import fbank_extractor

__all__ = ["feature_statistics"]

log = logging.getLogger(__name__)


def feature_statistics(cuts: CutSet, *, max_cuts: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``(F,)`` of the features of the first ``max_cuts`` cuts.

    Uses the cached features when the cuts have them, else extracts fbank on the fly with the
    same settings as training; a cut whose audio then fails to load is passed over with a warning
    (training leaves it out of its batch too). The first cuts (not a random sample) keep this
    deterministic.
    """
    total = None
    total_sq = None
    frames = 0
    extractor = None
    for i, cut in enumerate(cuts):
        if i >= max_cuts:
            break
        if cut.has_features:
            feats = torch.from_numpy(cut.load_features())
        else:
            extractor = extractor or fbank_extractor(cut.sampling_rate)
            try:
                audio = cut.load_audio()[0]
            except Exception as err:  # any reader error: the cut cannot be used
                log.warning("feature statistics: %s passed over, audio not loadable: %s",
                            cut.id, audio_error_message(err))  # fmt: skip
                continue
            feats = torch.from_numpy(extractor.extract(audio, cut.sampling_rate))
        feats = feats.to(torch.float64)  # (T, F); float64 so long sums do not lose precision
        total = feats.sum(0) if total is None else total + feats.sum(0)
        total_sq = (feats**2).sum(0) if total_sq is None else total_sq + (feats**2).sum(0)
        frames += feats.shape[0]
    if frames == 0:
        raise ValueError("cannot compute feature statistics: no cuts / no frames")
    mean = total / frames
    std = (total_sq / frames - mean**2).clamp_min(0.0).sqrt()
    return mean.to(torch.float32), std.to(torch.float32)
