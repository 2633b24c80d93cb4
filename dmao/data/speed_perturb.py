"""Speed perturbation of the training data (``data.speed_perturb``), as icefall and ESPnet do it.

The training parts are extended with copies of every utterance played at other speeds (the
common "3-way" recipe: factors 0.9 and 1.1 beside the original, Ko et al., Interspeech 2015).
A copy at factor f lasts 1/f as long and has its pitch and tempo changed together, like
``sox speed`` (lhotse's :meth:`~lhotse.cut.MonoCut.perturb_speed`, resampled by lhotse itself,
no torchaudio). Its cut id is ``<id>_sp<f>`` and its transcript is the original's.

The copies get their own fbank features, computed once and cached beside the part they come from
as the "part" ``<part>_sp<f>`` (``cuts_<part>_sp<f>.jsonl.gz`` and its feature archives in
``data.manifest_dir``), through the same caching, bad-audio and atomic-writing steps as every
corpus (:func:`dmao.data.manifests.load_or_prepare`). Dev and test are never perturbed, and the
tokeniser is trained on the original transcripts only. An epoch then holds (1 + number of
factors) times the audio; recipes count optimizer steps, so their length does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet

from dmao.config.schema import DataConfig
from dmao.data.bad_audio import BadAudioLog
from dmao.data.manifests import load_or_prepare
from dmao.data.pipeline import feature_settings, join_parts, without_features

__all__ = ["check_speed_factors", "perturb_parts", "perturbed_part", "speed_perturbed"]


def check_speed_factors(factors: Sequence[float]) -> list[float]:
    """``factors`` as floats, or a :class:`ValueError` naming ``data.speed_perturb``."""
    values = list(factors)
    if any(
        isinstance(f, bool) or not isinstance(f, int | float) or not 0.5 <= f <= 2.0 or f == 1.0
        for f in values
    ) or len(set(values)) != len(values):
        raise ValueError(
            "data.speed_perturb: expected distinct speed factors between 0.5 and 2.0 other than "
            f"1.0 (the original is always kept), e.g. [0.9, 1.1]; got {values}"
        )
    return [float(f) for f in values]


def perturbed_part(part: str, factor: float) -> str:
    """The cache name of ``part`` at speed ``factor``: ``train`` at 0.9 → ``train_sp0.9``."""
    return f"{part}_sp{factor:g}"


def perturb_parts(
    manifest_dir: Path | str,
    originals: dict[str, CutSet],
    factors: Sequence[float],
    *,
    sampling_rate: int = 16000,
    num_jobs: int = 2,
    compute_features: bool = True,
    bad_audio: str = "strict",
    max_bad_audio_fraction: float = 0.01,
) -> dict[str, CutSet]:
    """``{<part>_sp<f>: CutSet}``: every part of ``originals`` (prepared cuts) at every factor,
    with features cached in ``manifest_dir``, loaded when their cuts file exists.

    The keyword arguments are :func:`~dmao.data.manifests.load_or_prepare`'s.
    """
    factors = check_speed_factors(factors)
    source = {
        perturbed_part(part, factor): (part, factor) for part in originals for factor in factors
    }

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        copies = {}
        for name in missing:
            part, factor = source[name]
            bad.listed[name] = len(originals[part])
            # drop_features first: perturb_speed would otherwise detach them in place, from the
            # original cuts, and warn once per cut.
            copies[name] = CutSet.from_cuts(
                cut.drop_features().perturb_speed(factor) for cut in originals[part]
            )
        return copies

    return load_or_prepare(
        manifest_dir,
        list(source),
        read,
        sampling_rate=sampling_rate,
        num_jobs=num_jobs,
        compute_features=compute_features,
        bad_audio=bad_audio,
        max_bad_audio_fraction=max_bad_audio_fraction,
    )


def speed_perturbed(
    config: DataConfig, originals: dict[str, CutSet], *, num_jobs: int = 2
) -> CutSet:
    """The cuts of the prepared parts ``originals`` (``{part: CutSet}``, from
    :func:`~dmao.data.pipeline.prepare_parts`) at every factor of ``config.speed_perturb``, with
    cached features: a copy whose cuts file exists is loaded, the others are built and their
    features computed (:func:`perturb_parts`). Returns the copies only, concatenated in the order
    part (as in ``originals``), then factor; an empty :class:`~lhotse.CutSet` when
    ``config.speed_perturb`` is empty.
    """
    factors = check_speed_factors(config.speed_perturb)
    if not factors:
        return CutSet.from_cuts([])
    by_name = perturb_parts(
        config.manifest_dir,
        originals,
        factors,
        sampling_rate=config.sampling_rate,
        num_jobs=num_jobs,
        **feature_settings(config),
    )
    return join_parts(
        without_features(config, by_name),
        [perturbed_part(p, f) for p in originals for f in factors],
    )
