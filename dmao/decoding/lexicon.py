"""Lexicons for CTC search with an n-gram LM: the model's token symbols, each word's spelling in
them, and the lexicon file (``WORD t1 t2 ...`` per line, flashlight/torchaudio format) that
``dmao lm lexicon`` writes and :class:`dmao.decoding.lm_decoder.CTCLMDecoder` reads."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dmao.data.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer

__all__ = [
    "build_lexicon",
    "read_lexicon",
    "spell_word",
    "token_symbols",
    "word_boundary_symbol",
    "write_lexicon",
]

log = logging.getLogger(__name__)


def token_symbols(tokenizer: Tokenizer) -> list[str]:
    """The output symbols of ``tokenizer`` by id: ``<blk>``, ``|`` and characters for a
    :class:`~dmao.data.tokenizer.CharTokenizer`, the sentencepiece pieces for subwords. These are
    the token names of lexicon spellings and the words of a token-level LM."""
    if isinstance(tokenizer, CharTokenizer):
        return list(tokenizer.symbols)
    if isinstance(tokenizer, SentencePieceTokenizer):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(tokenizer.model_path))
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    raise TypeError(f"no token symbols for a tokenizer of type {type(tokenizer).__name__}")


def word_boundary_symbol(tokenizer: Tokenizer) -> str | None:
    """``|`` for character tokenizers; ``None`` for subwords, whose pieces carry the boundary."""
    return CharTokenizer.WORD_BOUNDARY if isinstance(tokenizer, CharTokenizer) else None


def spell_word(word: str, tokenizer: Tokenizer) -> list[str]:
    """The token spelling of one (normalised) word: its characters and ``|`` for a character
    tokenizer, its sentencepiece pieces for subwords.

    Raises:
        ValueError: the word holds whitespace or characters the tokenizer cannot encode.
    """
    if not word or any(ch.isspace() for ch in word):
        raise ValueError(f"{word!r} is not a single word")
    symbols = token_symbols(tokenizer)
    spelling = [symbols[i] for i in tokenizer.encode(word)]
    boundary = word_boundary_symbol(tokenizer)
    return [*spelling, boundary] if boundary is not None else spelling


def build_lexicon(words: Iterable[str], tokenizer: Tokenizer) -> dict[str, list[list[str]]]:
    """A lexicon ``{word: [spelling]}`` of the distinct ``words`` (sorted) spelled by
    :func:`spell_word`. Words the tokenizer cannot encode are skipped with a warning."""
    lexicon: dict[str, list[list[str]]] = {}
    skipped = []
    for word in sorted(set(words)):
        if tokenizer.can_encode(word):
            lexicon[word] = [spell_word(word, tokenizer)]
        else:
            skipped.append(word)
    if skipped:
        log.warning(
            "lexicon: skipped %d words the tokenizer cannot spell: %s", len(skipped), skipped[:10]
        )
    return lexicon


def write_lexicon(lexicon: Mapping[str, Sequence[Sequence[str]]], path: str | Path) -> None:
    """Write one ``WORD<TAB>t1 t2 …`` line per spelling (flashlight/torchaudio lexicon format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{word}\t{' '.join(spelling)}"
        for word, spellings in lexicon.items()
        for spelling in spellings
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_lexicon(path: str | Path) -> dict[str, list[list[str]]]:
    """Read a lexicon file (``WORD t1 t2 …`` per line, whitespace separated; a word may have
    several lines, one per spelling).

    Raises:
        ValueError: naming the file and line of a line without a spelling.
    """
    path = Path(path)
    lexicon: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}:{number}: expected 'WORD token token ...', got {line!r}")
            lexicon.setdefault(fields[0], []).append(fields[1:])
    if not lexicon:
        raise ValueError(f"{path}: the lexicon is empty")
    return lexicon
