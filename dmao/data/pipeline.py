"""From a :class:`~dmao.config.DataConfig` to ready-to-use lhotse cuts.

This is the one place that decides where a corpus comes from: the built-in synthetic corpus is
generated when it is absent; LibriSpeech-layout corpora (built-in or real) are read by
:mod:`dmao.data.manifests`, TED-LIUM 2, Switchboard, Kaldi data directories and lhotse recipe
manifests by :mod:`dmao.data.corpora`. Every kind
ends in the same cached cuts + fbank features, so training and decoding do not depend on it.

With ``data.on_the_fly_features`` the cuts are prepared without features (and any cached ones
are dropped, so that every batch is computed the same way); the data loader computes them
(:class:`dmao.data.dataset.AsrBatchDataset`). The speed-perturbed and reverberated copies and
the noise windows follow the same setting (:func:`feature_settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet

from dmao.config.schema import CORPUS_KINDS, DataConfig
from dmao.data.bad_audio import check_bad_audio_settings
from dmao.data.manifests import prepare_manifests
from dmao.data.sphere import install_audio_backend

__all__ = [
    "CORPUS_KINDS",
    "ensure_corpus",
    "feature_settings",
    "join_parts",
    "load_parts",
    "prepare_parts",
    "without_features",
]

log = logging.getLogger(__name__)


def ensure_corpus(config: DataConfig, *, num_jobs: int = 2) -> Path:
    """Return the corpus directory, synthesising the built-in corpus first when needed.

    For the other real corpora the directory is checked only when a part has to be prepared
    (cached manifests train without the corpus), by :func:`prepare_parts`.
    """
    if config.corpus not in CORPUS_KINDS:
        raise ValueError(
            f"data.corpus must be one of {', '.join(CORPUS_KINDS)}, got {config.corpus!r}"
        )
    corpus_dir = Path(config.corpus_dir)
    if config.corpus == "synthetic":
        from dmao.data.synthetic import prepare_synthetic

        # prepare_synthetic returns at once when a complete corpus with the same settings exists.
        prepare_synthetic(
            corpus_dir,
            hours=config.synthetic_hours,
            seed=config.synthetic_seed,
            num_jobs=num_jobs,
        )
    elif config.corpus == "librispeech" and not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"data.corpus_dir {corpus_dir} does not exist; expected a corpus in the LibriSpeech "
            "layout: <part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + .trans.txt"
        )
    return corpus_dir


def prepare_parts(
    config: DataConfig, parts: Sequence[str], *, num_jobs: int = 2
) -> dict[str, CutSet]:
    """``{part: CutSet}`` (with cached fbank features at ``config.sampling_rate``, without any
    with ``data.on_the_fly_features``) for ``parts`` of the configured corpus, prepared on first
    use and loaded from ``manifest_dir`` after.

    Missing or corrupt audio follows ``config.bad_audio`` / ``config.max_bad_audio_fraction``
    (:mod:`dmao.data.bad_audio`): strict raises a :class:`ValueError` listing every bad file.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("no corpus parts given")
    # .sph audio (TED-LIUM, Switchboard) needs dmao's SPHERE reader, also in data-loader workers
    # forked later for on-the-fly features.
    install_audio_backend()
    corpus_dir = ensure_corpus(config, num_jobs=num_jobs)
    check_bad_audio_settings(config.bad_audio, config.max_bad_audio_fraction)
    common = {
        "sampling_rate": config.sampling_rate,
        "num_jobs": num_jobs,
        **feature_settings(config),
    }
    return without_features(config, _prepare(config, corpus_dir, parts, common))


def feature_settings(config: DataConfig) -> dict:
    """The keyword arguments of :func:`~dmao.data.manifests.load_or_prepare` that ``config``
    sets: the bad-audio handling, and whether features are computed (not on the fly)."""
    return {
        "compute_features": not config.on_the_fly_features,
        "bad_audio": config.bad_audio,
        "max_bad_audio_fraction": config.max_bad_audio_fraction,
    }


def without_features(config: DataConfig, by_part: dict[str, CutSet]) -> dict[str, CutSet]:
    """``by_part`` as is, or with ``data.on_the_fly_features`` every cut's cached features
    dropped (cuts prepared before with features are then computed like the others)."""
    if not config.on_the_fly_features:
        return by_part
    return {
        part: CutSet.from_cuts(cut.drop_features() for cut in cuts)
        for part, cuts in by_part.items()
    }


def _prepare(config: DataConfig, corpus_dir: Path, parts: list[str], common: dict) -> dict:
    if config.corpus == "tedlium2":
        from dmao.data.corpora.tedlium import prepare_tedlium2

        return prepare_tedlium2(corpus_dir, config.manifest_dir, parts, **common)
    if config.corpus == "switchboard":
        from dmao.data.corpora.switchboard import prepare_switchboard

        return prepare_switchboard(
            corpus_dir,
            config.manifest_dir,
            parts,
            transcripts_dir=config.transcripts_dir,
            eval2000_dir=config.eval2000_dir,
            **common,
        )
    if config.corpus == "lhotse":
        from dmao.data.corpora.lhotse_manifests import prepare_lhotse

        return prepare_lhotse(corpus_dir, config.manifest_dir, parts, **common)
    if config.corpus == "parquet":
        from dmao.data.corpora.parquet import prepare_parquet

        return prepare_parquet(
            corpus_dir, config.manifest_dir, parts, text_column=config.text_column, **common
        )
    if config.corpus == "nemo":
        from dmao.data.corpora.nemo import prepare_nemo

        return prepare_nemo(corpus_dir, config.manifest_dir, parts, **common)
    if config.corpus == "kaldi":
        from dmao.data.corpora.kaldi import prepare_kaldi

        return prepare_kaldi(corpus_dir, config.manifest_dir, parts, **common)
    if config.corpus == "librispeech":
        from dmao.data.corpora.librispeech import prepare_librispeech

        return prepare_librispeech(corpus_dir, config.manifest_dir, parts, **common)
    return prepare_manifests(corpus_dir, Path(config.manifest_dir), parts, **common)


def load_parts(config: DataConfig, parts: Sequence[str], *, num_jobs: int = 2) -> CutSet:
    """Cuts of the given corpus parts (:func:`prepare_parts`), concatenated."""
    return join_parts(prepare_parts(config, parts, num_jobs=num_jobs), parts)


def join_parts(by_part: dict[str, CutSet], parts: Sequence[str]) -> CutSet:
    """``by_part[part]`` for every part of ``parts`` (at least one), concatenated in order."""
    cuts = None
    for part in parts:
        cuts = by_part[part] if cuts is None else cuts + by_part[part]
    return cuts
