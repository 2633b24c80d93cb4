"""The word-confidence options that ``dmao decode`` and ``dmao transcribe`` share."""

from __future__ import annotations

import argparse
from dataclasses import replace

from dmao.decoding.confidence import AGGREGATIONS, MEASURES, ConfidenceMeasure

__all__ = ["add_confidence_arguments", "confidence_from_args"]


def add_confidence_arguments(p: argparse.ArgumentParser, *, calibration: bool = False) -> None:
    """``--confidence-measure``, ``--confidence-alpha``, ``--confidence-aggregation`` (each
    defaulting to the search's default, :meth:`ConfidenceMeasure.for_method`); with
    ``calibration`` also ``--raw-confidence`` (no export calibration)."""
    group = p.add_argument_group(
        "word confidence (in the CTM; docs/decoding.md, 'Word confidence')"
    )
    group.add_argument(
        "--confidence-measure",
        choices=MEASURES,
        default=None,
        help="per frame: normalised entropy (default) or best-label probability",
    )
    group.add_argument(
        "--confidence-alpha",
        type=float,
        default=None,
        metavar="A",
        help="entropy's alpha: 1 = Gibbs (default), else Tsallis (NeMo's default: 0.33)",
    )
    group.add_argument(
        "--confidence-aggregation",
        choices=AGGREGATIONS,
        default=None,
        help="a word's frames to one value (default: mean after an LM search, else min)",
    )
    if calibration:
        group.add_argument(
            "--raw-confidence",
            action="store_true",
            help="do not map confidences through the export's calibration (dmao export "
            "--confidence-from)",
        )


def confidence_from_args(args: argparse.Namespace, method: str) -> ConfidenceMeasure:
    """The measure the options ask for, the rest from the default of ``method``."""
    given = {
        "measure": args.confidence_measure,
        "alpha": args.confidence_alpha,
        "aggregation": args.confidence_aggregation,
    }
    return replace(
        ConfidenceMeasure.for_method(method), **{k: v for k, v in given.items() if v is not None}
    )
