"""LibriSpeech (openslr 12) from a local copy: where its parts are, and which to prepare.

The reading itself is :func:`dmao.data.manifests.prepare_manifests` (lhotse's own LibriSpeech
recipe), which the built-in synthetic corpus shares, since it is written in the same layout. This
module adds what only the real corpus needs: the tarballs unpack into ``LibriSpeech/``, and a copy
may hold any subset of the seven official parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lhotse import CutSet

from dmao.data.manifests import LIBRISPEECH_LAYOUT, prepare_manifests

__all__ = ["LIBRISPEECH_PARTS", "prepare_librispeech", "resolve_librispeech_dir"]

LIBRISPEECH_PARTS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def resolve_librispeech_dir(corpus_dir: Path | str) -> Path:
    """``corpus_dir`` itself or its ``LibriSpeech`` sub-folder (where the tarballs unpack)."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(
            f"LibriSpeech corpus directory {corpus_dir} does not exist; expected the parts in "
            f"the layout {LIBRISPEECH_LAYOUT}"
        )
    if (corpus_dir / "LibriSpeech").is_dir():
        return corpus_dir / "LibriSpeech"
    return corpus_dir


def prepare_librispeech(
    corpus_dir: Path | str,
    out_dir: Path | str,
    parts: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, CutSet]:
    """LibriSpeech parts → cuts with cached fbank features (``{part: CutSet}``).

    Args:
        corpus_dir: the folder holding the parts, or the folder holding ``LibriSpeech/``.
        out_dir: manifest directory.
        parts: part folder names; ``None``: every official part present.
        **options: :func:`~dmao.data.manifests.prepare_manifests`'s keyword arguments
            (``sampling_rate``, ``num_jobs``, ``bad_audio``, ...).

    Raises:
        FileNotFoundError: no such directory, or (``parts=None``) no official part in it.
    """
    corpus_dir = resolve_librispeech_dir(corpus_dir)
    if parts is None:
        parts = [p for p in LIBRISPEECH_PARTS if (corpus_dir / p).is_dir()]
        if not parts:
            raise FileNotFoundError(
                f"no LibriSpeech part found in {corpus_dir}; expected sub-folders such as "
                + ", ".join(LIBRISPEECH_PARTS)
            )
    return prepare_manifests(corpus_dir, out_dir, parts, **options)
