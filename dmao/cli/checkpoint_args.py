"""The ``--checkpoint`` / ``--avg`` pair that ``dmao decode`` and ``dmao export`` share."""

from __future__ import annotations

import argparse

__all__ = ["add_checkpoint_arguments"]


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """``--checkpoint best|last|FILE`` (default best; with ``--avg`` the newest checkpoint of
    the average, default last) and ``--avg N`` (icefall-style checkpoint averaging)."""
    p.add_argument(
        "--checkpoint",
        default=None,
        help="best (default), last, or a file; with --avg the newest checkpoint averaged "
        "(default last)",
    )
    p.add_argument(
        "--avg",
        type=int,
        default=None,
        metavar="N",
        help="average the newest N step checkpoints that share the final architecture "
        "(docs/decoding.md)",
    )
