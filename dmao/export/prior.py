"""The CTC prior inside an export folder (``dmao export --prior-scale S``).

With an n-gram LM, dividing the label prior out of a CTC model's posteriors
(:mod:`dmao.decoding.prior`) is worth several WER points (BENCHMARKS.md, "CTC prior": test WER
67.84 → 58.40 % on the small recipe). ``dmao decode --prior-scale S`` estimates it from the
training data, which an export does not have, so ``dmao export --prior-scale S`` estimates it
there (or reuses ``RUN/ctc_prior.pt`` when it is for the exported checkpoint) and stores it::

    ctc_prior.json   {"log_prior": [V floats]}: natural-log prior of every label, blank first

``manifest.json`` records it under ``"prior"``: the file, the default scale, and where it came
from (the checkpoint's file name, the training parts, the number of utterances and frames).
``dmao transcribe`` then searches ``log_probs - S · log_prior`` (``--prior-scale`` overrides S,
0 turns it off), as ``dmao decode --prior-scale S`` does; pauses in long files are still found
in the model's own posteriors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dmao.decoding.prior import CTCPrior
from dmao.export.files import read_json, write_json
from dmao.export.language_model import read_decode_result

if TYPE_CHECKING:
    from dmao.export.artefact import ExportedModel

__all__ = [
    "PRIOR_JSON",
    "ExportedPrior",
    "bundle_prior",
    "bundled_prior",
    "prior_scale_from_decode",
    "search_prior_scale",
]

PRIOR_JSON = "ctc_prior.json"


@dataclass(frozen=True)
class ExportedPrior:
    """The CTC prior an export carries and the scale it was exported with."""

    log_prior: torch.Tensor
    """``(V,)`` float32 natural-log prior, blank = 0."""
    scale: float
    """The default prior scale ``S`` (``dmao export --prior-scale``)."""


def bundle_prior(prior: CTCPrior, scale: float, export_dir: Path) -> dict[str, Any]:
    """Write ``prior`` as ``export_dir/ctc_prior.json`` and return its manifest record.

    Args:
        prior: the prior of the exported weights (:func:`dmao.decoding.prior.ctc_prior_for_run`).
        scale: the default scale, > 0.
    """
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"a prior scale must be a positive number, got {scale}")
    write_json(export_dir / PRIOR_JSON, {"log_prior": prior.log_prior.float().tolist()})
    return {
        "file": PRIOR_JSON,
        "scale": scale,
        "checkpoint": prior.checkpoint,
        "parts": list(prior.parts),
        "num_utterances": prior.num_utterances,
        "num_frames": prior.num_frames,
    }


def bundled_prior(
    directory: Path, manifest: Mapping[str, Any], manifest_name: str, vocab_size: int
) -> ExportedPrior | None:
    """The prior recorded in an export's ``manifest`` (None when it has none).

    The file's size and hash are checked with the rest of the export (:func:`load_exported`);
    this checks what it holds.

    Raises:
        ValueError: the record or the file is not a prior of ``vocab_size`` finite numbers.
    """
    record = manifest.get("prior")
    if record is None:
        return None
    source = f"{directory / manifest_name} 'prior'"
    try:
        name, scale = record["file"], float(record["scale"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: expected 'file' and a numeric 'scale' ({err!r})") from err
    if not isinstance(name, str) or name not in manifest.get("files", {}):
        raise ValueError(f"{source}: {name!r} is not a file of the export's file table")
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"{source}: scale must be a positive number, got {scale}")
    path = directory / name
    values = read_json(path).get("log_prior")
    try:
        log_prior = torch.tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: expected 'log_prior', a list of numbers ({err!r})") from err
    if log_prior.shape != (vocab_size,) or not torch.isfinite(log_prior).all():
        raise ValueError(
            f"{path}: expected 'log_prior' as {vocab_size} finite numbers (one per label), got "
            f"shape {tuple(log_prior.shape)}"
        )
    return ExportedPrior(log_prior, scale)


def prior_scale_from_decode(result: str | Path) -> float | None:
    """The prior scale a ``dmao decode`` result was decoded with (its ``result.json`` or folder;
    ``dmao decode --prior-scale``), or None when it used no prior.

    Raises:
        FileNotFoundError, ValueError: as :func:`~dmao.export.language_model.read_decode_result`.
    """
    _, data = read_decode_result(result)
    record = data.get("prior") if isinstance(data, dict) else None
    scale = record.get("scale") if isinstance(record, dict) else None
    return float(scale) if isinstance(scale, (int, float)) and scale > 0 else None


def search_prior_scale(exported: ExportedModel, scale: float | None, method: str) -> float:
    """The prior scale to search with: ``scale``; else the export's with its default method (a
    prior chosen for an LM search makes greedy decoding worse: docs/export.md), 0 otherwise."""
    if scale is None:
        default = exported.prior is not None and method == exported.decode_method
        return exported.prior.scale if default else 0.0
    if not scale >= 0:
        raise ValueError(f"prior_scale must be >= 0, got {scale}")
    if scale and exported.prior is None:
        raise ValueError(
            f"export {exported.directory} has no CTC prior: export with `dmao export "
            "--prior-scale S`, or transcribe without --prior-scale"
        )
    return float(scale)
