"""Arguments shared by the commands that read a trained run (``dmao decode``, ``dmao tune``,
``dmao export``): which checkpoint (``--checkpoint`` / ``--avg``), how the CTC prior is estimated
and how errors are counted."""

from __future__ import annotations

import argparse

__all__ = ["add_align_argument", "add_checkpoint_arguments", "add_prior_utterances_argument"]


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


def add_prior_utterances_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--prior-utterances N``: training utterances the CTC prior is estimated from."""
    p.add_argument(
        "--prior-utterances",
        type=int,
        default=None,
        metavar="N",
        help="training utterances the CTC prior is estimated from (default 1000)",
    )


def add_align_argument(p: argparse.ArgumentParser) -> None:
    """``--align kaldialign|sclite``: how errors are counted."""
    p.add_argument(
        "--align",
        choices=("kaldialign", "sclite"),
        default="kaldialign",
        help="count errors by minimum edit distance (default) or as NIST sclite does",
    )
