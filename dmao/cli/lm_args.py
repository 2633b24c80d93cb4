"""The n-gram LM options that ``dmao export`` (to store an LM in an export) and ``dmao
transcribe`` (to decode with one) share: ``--lm``, ``--lexicon`` and the search settings."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_lm_arguments", "lm_search_settings", "lm_settings_given"]

# dest → (flag, type, help); the dests are the LMDecoderOptions / DecodeConfig field names.
_SEARCH_FLAGS: dict[str, tuple[str, type, str]] = {
    "lm_weight": ("--lm-weight", float, "weight of the LM's log10 score"),
    "word_score": ("--word-score", float, "score added per word (word LM with a lexicon)"),
    "sil_score": ("--sil-score", float, "score added per word-boundary frame"),
    "beam_threshold": ("--beam-threshold", float, "prune hypotheses this far below the best"),
    "beam_size_token": ("--beam-size-token", int, "tokens tried per frame (default all)"),
}


def add_lm_arguments(group: argparse._ArgumentGroup) -> None:
    """``--lm FILE``, ``--lexicon FILE`` and the search settings of docs/decoding.md (the beam
    size is each command's ``--beam-size``)."""
    group.add_argument(
        "--lm",
        dest="lm_path",
        default=None,
        metavar="FILE",
        help="n-gram LM, ARPA or KenLM binary (`dmao lm build`): a word LM with --lexicon, a "
        "token LM without",
    )
    group.add_argument("--lexicon", dest="lexicon_path", default=None, metavar="FILE")
    for dest, (flag, kind, text) in _SEARCH_FLAGS.items():
        group.add_argument(flag, dest=dest, type=kind, default=None, help=text)


def lm_search_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The search settings given on the command line (``--beam-size`` included), by field name."""
    settings = {dest: getattr(args, dest) for dest in _SEARCH_FLAGS}
    settings["beam_size"] = getattr(args, "beam_size", None)
    return {key: value for key, value in settings.items() if value is not None}


def lm_settings_given(args: argparse.Namespace) -> list[str]:
    """The LM flags given (for the error when they cannot apply), ``--beam-size`` excluded."""
    given = ["--lm"] if args.lm_path is not None else []
    given += ["--lexicon"] if args.lexicon_path is not None else []
    return given + [flag for dest, (flag, _, _) in _SEARCH_FLAGS.items() if getattr(args, dest)
                    is not None]  # fmt: skip
