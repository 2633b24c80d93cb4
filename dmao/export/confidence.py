"""Calibrated word confidences in an export (``dmao export --confidence-from RESULT``).

A word's raw confidence (:mod:`dmao.decoding.confidence`) ranks words well but is not a
probability. ``dmao decode`` fits Platt scaling to the decoded split's words
(:func:`dmao.evaluation.confidence.fit_calibration`) and records it in its ``result.json``
(``word_confidence.calibration``); ``dmao export --confidence-from DEV_RESULT`` (and
``--lm-from``, which names such a result anyway) copies it into ``manifest.json``::

    "confidence": {"search": "lm", "measure": "entropy(a=1)/mean", "a": 2.1, "b": 1.3,
                   "split": "dev", "num_words": 1588, "source": "dev-lm"}

``dmao transcribe`` then maps each word's confidence through it — when it searches as the
calibrated decode did (greedy, beam or LM) and computes confidences with the same measure
(another search, or ``--confidence-*`` options that change the measure, give raw confidences) —
so that 0.8 reads as "right 8 times in 10" on data like the dev set. BENCHMARKS.md ("Word
confidence"): test NCE 0.21 → 0.29 (greedy) and −0.23 → 0.13 (LM) with the dev fit. An older
dmao ignores the record and gives raw confidences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmao.config.schema import DECODE_METHODS
from dmao.evaluation.confidence import Calibration
from dmao.export.language_model import read_decode_result

__all__ = ["ExportedCalibration", "bundled_calibration", "calibration_from_decode"]

RECORD = "confidence"


@dataclass(frozen=True)
class ExportedCalibration:
    """The word-confidence calibration of an export, and the search and measure it was fitted
    for."""

    search: str
    """``greedy``, ``beam`` or ``lm``: the search of the decode it was fitted on."""
    measure: str
    """:attr:`dmao.decoding.confidence.ConfidenceMeasure.label`, e.g. ``entropy(a=1)/min``."""
    calibration: Calibration
    split: str
    num_words: int


def calibration_from_decode(result: str | Path) -> dict[str, Any] | None:
    """The manifest record of a ``dmao decode`` result's calibration (its ``result.json`` or
    folder), or None when it has none (decoded by an older dmao, or all words right or wrong).

    Raises:
        FileNotFoundError, ValueError: as :func:`~dmao.export.language_model.read_decode_result`.
    """
    path, data = read_decode_result(result)
    record = data.get("word_confidence") if isinstance(data, dict) else None
    fit = record.get("calibration") if isinstance(record, dict) else None
    if not isinstance(fit, dict):
        return None
    method = str(data.get("method", ""))
    manifest_record = {
        "search": next((s for s in DECODE_METHODS if method.startswith(s)), method),
        "measure": record.get("measure"),
        "a": fit.get("a"),
        "b": fit.get("b"),
        "split": data.get("split"),
        "num_words": record.get("num_words"),
        "source": path.parent.name,
    }
    _parse(manifest_record, f"{path}: word_confidence")
    return manifest_record


def bundled_calibration(manifest: Mapping[str, Any], where: str) -> ExportedCalibration | None:
    """The export's calibration (its manifest's ``confidence`` record), or None.

    Raises:
        ValueError: naming ``where`` (the manifest file) for a malformed record.
    """
    record = manifest.get(RECORD)
    if record is None:
        return None
    return _parse(record, f"{where}: '{RECORD}'")


def _parse(record: Any, where: str) -> ExportedCalibration:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where} must be an object, got {type(record).__name__}")
    search, measure = record.get("search"), record.get("measure")
    a, b = record.get("a"), record.get("b")
    numbers = all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (a, b)
    )
    if search not in DECODE_METHODS or not isinstance(measure, str) or not measure or not numbers:
        raise ValueError(
            f"{where}: expected a search ({', '.join(DECODE_METHODS)}), a measure name and finite "
            f"numbers a, b, got search={search!r}, measure={measure!r}, a={a!r}, b={b!r}"
        )
    return ExportedCalibration(
        search=search,
        measure=measure,
        calibration=Calibration(float(a), float(b)),
        split=str(record.get("split") or "?"),
        num_words=int(record.get("num_words") or 0),
    )
