"""Additive noise for training (``data.noise_dir``), as icefall's LibriSpeech recipes use MUSAN.

A folder of noise recordings (MUSAN's ``noise``, ``music`` and ``speech`` parts, or any folder of
``.wav``/``.flac``/``.ogg``/``.sph`` files, searched recursively) is cut into windows of
:data:`WINDOW_SECONDS` (the last, shorter window of a file kept if it lasts
:data:`MIN_WINDOW_SECONDS`), and the windows' fbank features are computed once and cached in
``data.manifest_dir`` as the part ``noise_<hash of the folder's path>``, through the same caching,
bad-audio and atomic-writing steps as every corpus (:func:`dmao.data.manifests.load_or_prepare`:
a file that cannot be read is listed with its reason; ``data.bad_audio: skip`` leaves it out).

During training each utterance gets noise with probability ``data.noise_prob`` at a
signal-to-noise ratio drawn uniformly from ``data.noise_snr`` (dB): random windows, each from a
random offset, laid end to end until they cover the utterance (lhotse's
:meth:`~lhotse.CutSet.mix`; with cached features lhotse mixes the fbank energies, so no audio is
read). The draws of a batch are seeded by the batch's cut ids and the sampler seed
(:class:`NoiseMixer`), like SpecAugment's, so a resumed run, or one with loader workers, mixes
exactly what an uninterrupted one mixes. Dev and test are never mixed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet, MonoCut, Recording

from dmao.config.schema import DataConfig
from dmao.data.audio_folder import audio_files, folder_digest, readable_audio_files
from dmao.data.bad_audio import BadAudioLog
from dmao.data.manifests import load_or_prepare
from dmao.data.pipeline import feature_settings, without_features

__all__ = [
    "MIN_WINDOW_SECONDS",
    "WINDOW_SECONDS",
    "NoiseMixer",
    "check_noise_config",
    "check_noise_settings",
    "noise_mixer",
    "noise_part",
    "prepare_noise",
]

WINDOW_SECONDS = 10.0
"""Noise recordings are cut into windows this long (icefall's MUSAN preparation)."""
MIN_WINDOW_SECONDS = 1.0
"""A file's last window, or a file, shorter than this is not used."""


def check_noise_settings(prob: float, snr: Sequence[float]) -> tuple[float, float]:
    """``data.noise_snr`` as a ``(low, high)`` pair, or a :class:`ValueError` naming the field."""
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"data.noise_prob: expected a probability in [0, 1], got {prob!r}")
    values = list(snr)
    if (
        len(values) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values)
        or values[0] > values[1]
    ):
        raise ValueError(
            f"data.noise_snr: expected [low, high] in dB with low <= high, e.g. [10, 20]; "
            f"got {values}"
        )
    return float(values[0]), float(values[1])


def check_noise_config(config: DataConfig) -> None:
    """Refuse impossible noise settings, a missing ``noise_dir`` or one without audio files
    before anything is prepared (one line naming the field)."""
    check_noise_settings(config.noise_prob, config.noise_snr)
    if config.noise_dir:
        audio_files(Path(config.noise_dir), "data.noise_dir")


def noise_part(noise_dir: Path | str) -> str:
    """The cache name of a noise folder's windows: ``noise_<8 hex digits of its path>``."""
    return f"noise_{folder_digest(noise_dir)}"


def _windows(recording: Recording) -> list[MonoCut]:
    cuts = []
    start = 0.0
    while recording.duration - start >= MIN_WINDOW_SECONDS:
        duration = min(WINDOW_SECONDS, recording.duration - start)
        cut_id = f"{recording.id}-{round(start * 100):07d}"  # start in centiseconds
        cuts.append(MonoCut(cut_id, start, duration, channel=0, recording=recording))
        start += WINDOW_SECONDS
    return cuts


def prepare_noise(config: DataConfig, *, num_jobs: int = 2) -> CutSet:
    """The windows of ``config.noise_dir`` with cached features (loaded when cached).

    Raises:
        ValueError: the folder is missing or holds no audio, or bad audio (``data.bad_audio``:
            strict) — every bad file listed, also in ``<manifest_dir>/bad_audio.json``.
    """
    if not config.noise_dir:
        raise ValueError("data.noise_dir is not set")
    noise_dir = Path(config.noise_dir)
    part = noise_part(noise_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        files = readable_audio_files(noise_dir, "data.noise_dir", part, bad, what="noise files")
        windows = []
        for path, file_id in files.items():
            windows.extend(_windows(Recording.from_file(path, recording_id=file_id)))
        if not windows:
            raise ValueError(
                f"data.noise_dir: no noise file below {noise_dir} lasts {MIN_WINDOW_SECONDS} s"
            )
        return {part: CutSet.from_cuts(windows)}

    windows = load_or_prepare(
        config.manifest_dir,
        [part],
        read,
        sampling_rate=config.sampling_rate,
        num_jobs=num_jobs,
        **feature_settings(config),
    )
    return without_features(config, windows)[part].to_eager()


@dataclass(frozen=True)
class NoiseMixer:
    """Mixes noise windows into training cuts (see the module's docstring)."""

    noise: CutSet
    """Noise windows with cached features (:func:`prepare_noise`)."""
    prob: float = 0.5
    """Chance that an utterance gets noise."""
    snr: tuple[float, float] = (10.0, 20.0)
    """Range of the signal-to-noise ratio in dB, drawn uniformly per utterance."""

    def __call__(self, cuts: CutSet, seed: int) -> CutSet:
        """``cuts`` with noise mixed into some (ids, order and durations kept); the same
        ``(cuts, seed)`` always gives the same mix."""
        rng = random.Random(f"dmao-noise-{seed}")
        return cuts.mix(
            self.noise,
            duration=None,
            snr=self.snr,
            preserve_id="left",
            mix_prob=self.prob,
            seed=rng,
            random_mix_offset=True,
        ).to_eager()


def noise_mixer(config: DataConfig, *, num_jobs: int = 2) -> NoiseMixer | None:
    """The :class:`NoiseMixer` ``config`` asks for (None without ``data.noise_dir`` or with
    ``data.noise_prob`` 0); prepares the noise features when they are not cached."""
    snr = check_noise_settings(config.noise_prob, config.noise_snr)
    if not config.noise_dir or config.noise_prob == 0:
        return None
    return NoiseMixer(prepare_noise(config, num_jobs=num_jobs), config.noise_prob, snr)
