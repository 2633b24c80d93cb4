"""LM training text: user text files, a run's training transcripts, and their token spellings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from dmao.data.text import normalize_transcript
from dmao.data.tokenizer import Tokenizer

__all__ = ["read_sentences", "run_training_sentences", "token_sentences"]

log = logging.getLogger(__name__)


def read_sentences(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, each normalised like the training targets
    (:func:`dmao.data.text.normalize_transcript`), so LM words match the decoder's words."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LM text file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        sentences = [s for s in (normalize_transcript(line) for line in f) if s]
    if not sentences:
        raise ValueError(f"{path} holds no text (after normalisation)")
    return sentences


def run_training_sentences(run_dir: str | Path) -> list[str]:
    """The normalised transcripts of a run's training parts (``data.train_parts`` of its
    ``config.yaml``), read from the manifests (prepared if missing, as training does)."""
    from dmao.config import load_run_config
    from dmao.data.manifests import cut_transcript
    from dmao.data.pipeline import load_parts

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    cuts = load_parts(config.data, config.data.train_parts)
    sentences = [s for s in (cut_transcript(cut) for cut in cuts) if s]
    if not sentences:
        raise ValueError(f"the training parts {config.data.train_parts} of {run_dir} are empty")
    return sentences


def token_sentences(sentences: Iterable[str], tokenizer: Tokenizer) -> list[list[str]]:
    """Each sentence as the tokenizer's symbols (``|`` between the words of a character
    tokenizer, ``▁``-pieces for BPE): the text of a token LM for lexicon-free decoding.
    Sentences the tokenizer cannot encode are skipped with a warning."""
    from dmao.decoding.lm_decoder import token_symbols

    symbols = token_symbols(tokenizer)
    out, skipped = [], 0
    for sentence in sentences:
        if not tokenizer.can_encode(sentence):
            skipped += 1
            continue
        out.append([symbols[i] for i in tokenizer.encode(sentence)])
    if skipped:
        log.warning("token LM text: skipped %d sentences the tokenizer cannot encode", skipped)
    return out
