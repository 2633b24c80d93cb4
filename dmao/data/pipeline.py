"""From a :class:`~dmao.config.DataConfig` to ready-to-use lhotse cuts.

This is the one place that decides where a corpus comes from: the built-in synthetic corpus is
generated when it is absent; every corpus (built-in or a real LibriSpeech copy) is then read through
the same LibriSpeech-layout manifest code in :mod:`dmao.data.manifests`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet

from dmao.config.schema import DataConfig
from dmao.data.manifests import prepare_manifests

__all__ = ["CORPUS_KINDS", "ensure_corpus", "load_parts"]

log = logging.getLogger(__name__)

CORPUS_KINDS = ("synthetic", "librispeech")


def ensure_corpus(config: DataConfig, *, num_jobs: int = 2) -> Path:
    """Return the corpus directory, synthesising the built-in corpus first when needed."""
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
    elif not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"data.corpus_dir {corpus_dir} does not exist; expected a corpus in the LibriSpeech "
            "layout: <part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + .trans.txt"
        )
    return corpus_dir


def load_parts(config: DataConfig, parts: Sequence[str], *, num_jobs: int = 2) -> CutSet:
    """Cuts (with cached fbank features) of the given corpus parts, concatenated."""
    corpus_dir = ensure_corpus(config, num_jobs=num_jobs)
    by_part = prepare_manifests(
        corpus_dir, Path(config.manifest_dir), list(parts), num_jobs=num_jobs
    )
    cuts = None
    for part in parts:
        cuts = by_part[part] if cuts is None else cuts + by_part[part]
    if cuts is None:
        raise ValueError("no corpus parts given")
    return cuts
