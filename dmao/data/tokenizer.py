"""CTC output units: characters or sentencepiece subwords (BPE or unigram), with the CTC blank at
id 0 in all.

Every tokeniser works on normalised transcripts (:func:`dmao.data.text.normalize_transcript`), for
which ``decode(encode(text)) == text``. A tokeniser is saved as a folder holding ``tokenizer.json``
(``{"kind": "char" | "bpe" | "unigram", ...}``) plus, for subwords, the sentencepiece model;
:func:`load_tokenizer` reads any kind back. ``bpe`` is icefall's choice, ``unigram`` ESPnet's
default (``bpemode=unigram``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from dmao.data.text import normalize_transcript

__all__ = [
    "BLANK_ID",
    "BPETokenizer",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "UnigramTokenizer",
    "load_tokenizer",
    "train_tokenizer",
]

BLANK_ID = 0
_CONFIG_NAME = "tokenizer.json"


class Tokenizer(ABC):
    """Text ↔ label ids for CTC. Id 0 is the CTC blank and never part of an encoded text."""

    kind: str
    blank_id: int = BLANK_ID

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of output units including the blank (the CTC output layer size)."""

    @property
    @abstractmethod
    def unk_id(self) -> int | None:
        """Id of the unknown-unit symbol, or None when the tokeniser has none."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Label ids of a normalised transcript; raises ValueError if it cannot be represented."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of label ids. Blanks are skipped; the result has single spaces between words."""

    @abstractmethod
    def can_encode(self, text: str) -> bool:
        """True when every character of ``text`` maps to known units (no unknown symbol)."""

    @abstractmethod
    def save(self, out_dir: Path | str) -> None:
        """Write the tokeniser into ``out_dir`` so that :func:`load_tokenizer` restores it."""


class CharTokenizer(Tokenizer):
    """One unit per character, with ``"|"`` as the word boundary (the space).

    Ids: 0 = blank, 1 = ``"|"``, then the characters in sorted order. There is no unknown symbol
    (``unk_id is None``): a text with an unseen character is rejected by :meth:`encode` and
    reported by :meth:`can_encode`, so it can be filtered out and counted rather than trained on.
    """

    kind = "char"
    BLANK = "<blk>"
    WORD_BOUNDARY = "|"

    def __init__(self, characters: Iterable[str]) -> None:
        """Args: characters: the non-space characters to give ids to (duplicates are ignored)."""
        chars = sorted(set(characters) - {" "})
        for ch in chars:
            if len(ch) != 1 or ch == self.WORD_BOUNDARY:
                raise ValueError(
                    f"CharTokenizer symbols must be single characters other than "
                    f"{self.WORD_BOUNDARY!r}, got {ch!r}"
                )
        self.symbols: list[str] = [self.BLANK, self.WORD_BOUNDARY, *chars]
        self._id_of = {ch: i for i, ch in enumerate(self.symbols) if i != self.blank_id}
        self._id_of[" "] = self._id_of.pop(self.WORD_BOUNDARY)

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """Build the symbol set from (normalised) training transcripts."""
        chars: set[str] = set()
        for text in texts:
            chars.update(normalize_transcript(text))
        if not chars - {" "}:
            raise ValueError("cannot build a CharTokenizer: the training transcripts are empty")
        return cls(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @property
    def unk_id(self) -> int | None:
        return None

    def can_encode(self, text: str) -> bool:
        return all(ch in self._id_of for ch in text)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._id_of[ch] for ch in text]
        except KeyError as e:
            unknown = sorted({ch for ch in text if ch not in self._id_of})
            raise ValueError(
                f"characters {unknown} of {text!r} are not in the CharTokenizer's symbols "
                f"(built from the training transcripts); filter such utterances first"
            ) from e

    def decode(self, ids: Sequence[int]) -> str:
        pieces = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"id {i} out of range for a vocabulary of {len(self.symbols)}")
            if i != self.blank_id:
                pieces.append(self.symbols[i])
        # Word boundaries at the ends or repeated (possible in model output) collapse away.
        return " ".join("".join(pieces).replace(self.WORD_BOUNDARY, " ").split())

    def save(self, out_dir: Path | str) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, "symbols": self.symbols}
        (out_dir / _CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, in_dir: Path | str) -> CharTokenizer:
        config = _read_config(Path(in_dir), expected_kind=cls.kind)
        symbols = config["symbols"]
        if symbols[:2] != [cls.BLANK, cls.WORD_BOUNDARY]:
            raise ValueError(
                f"{Path(in_dir) / _CONFIG_NAME}: symbols must start with "
                f"[{cls.BLANK!r}, {cls.WORD_BOUNDARY!r}], got {symbols[:2]}"
            )
        tokenizer = cls(symbols[2:])
        if tokenizer.symbols != symbols:
            raise ValueError(f"{Path(in_dir) / _CONFIG_NAME}: symbols must be sorted and unique")
        return tokenizer


class SentencePieceTokenizer(Tokenizer):
    """Sentencepiece subwords (:class:`BPETokenizer`, :class:`UnigramTokenizer`). Sentencepiece's
    own ids are used unchanged:

    the blank is sentencepiece's padding symbol, placed at id 0 (``pad_id=0``, piece ``"<blk>"``,
    a control symbol that encoding never produces and decoding skips); ``<unk>`` is id 1; there
    are no BOS/EOS symbols. So ``vocab_size`` is the sentencepiece vocabulary size and no id
    shifting is needed anywhere. Training uses ``character_coverage=1.0`` (every character of the
    training text becomes a unit, so known characters never encode to ``<unk>``),
    ``byte_fallback=False`` and the ``identity`` normalisation rule (the text is normalised by
    :func:`~dmao.data.text.normalize_transcript` already; sentencepiece's NFKC rule could
    otherwise make the tokeniser disagree with the scorer).
    """

    kind: str
    MODEL_NAME: str
    MODEL_TYPE: str
    """Sentencepiece's ``model_type``."""

    def __init__(self, model_path: Path | str) -> None:
        """Args: model_path: a sentencepiece model trained by :meth:`train`."""
        self.model_path = Path(model_path)
        self._sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        if self._sp.pad_id() != BLANK_ID or self._sp.unk_id() == BLANK_ID:
            raise ValueError(
                f"{self.model_path}: expected a sentencepiece model with pad_id=0 (the CTC blank) "
                f"and unk_id != 0, got pad_id={self._sp.pad_id()}, unk_id={self._sp.unk_id()}; "
                f"train it with {type(self).__name__}.train"
            )

    @classmethod
    def train(
        cls, texts: Iterable[str], out_dir: Path | str, *, vocab_size: int
    ) -> SentencePieceTokenizer:
        """Train a model on (normalised) transcripts; writes ``out_dir/<MODEL_NAME>``.

        Args:
            texts: training transcripts; normalised here, empty ones skipped.
            out_dir: folder for the model (created if missing).
            vocab_size: total number of units, blank and ``<unk>`` included.

        Raises:
            ValueError: no text, or ``vocab_size`` is larger than the text supports.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        sentences = [t for t in (normalize_transcript(x) for x in texts) if t]
        if not sentences:
            raise ValueError(
                f"cannot train a {cls.kind} tokenizer: the training transcripts are empty"
            )
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_prefix=str(out_dir / Path(cls.MODEL_NAME).stem),
                model_type=cls.MODEL_TYPE,
                vocab_size=vocab_size,
                character_coverage=1.0,
                byte_fallback=False,
                normalization_rule_name="identity",
                pad_id=BLANK_ID,
                pad_piece=CharTokenizer.BLANK,
                unk_id=1,
                bos_id=-1,
                eos_id=-1,
                # Deterministic: one thread, and no random sub-sampling of the input sentences.
                num_threads=1,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise ValueError(
                f"sentencepiece could not train a {cls.kind} model with vocab_size={vocab_size} on "
                f"{len(sentences)} transcripts ({e}); a smaller vocab_size may fit this text"
            ) from e
        return cls(out_dir / cls.MODEL_NAME)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int | None:
        return self._sp.unk_id()

    def can_encode(self, text: str) -> bool:
        return self.unk_id not in self._sp.encode(text)

    def encode(self, text: str) -> list[int]:
        ids = self._sp.encode(text)
        if self.unk_id in ids:
            # character_coverage=1.0 made every training character a piece of its own.
            unknown = sorted(
                {ch for ch in text if ch != " " and self._sp.piece_to_id(ch) == self.unk_id}
            )
            raise ValueError(
                f"{text!r} encodes to <unk> (characters not seen in {self.kind} training, e.g. "
                f"{unknown[:5]}); filter such utterances first"
            )
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} out of range for a vocabulary of {self.vocab_size}")
        return " ".join(self._sp.decode([i for i in ids if i != self.blank_id]).split())

    def save(self, out_dir: Path | str) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / self.MODEL_NAME
        if target.resolve() != self.model_path.resolve():
            target.write_bytes(self.model_path.read_bytes())
        config = {"kind": self.kind, "model": self.MODEL_NAME, "vocab_size": self.vocab_size}
        (out_dir / _CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n")

    @classmethod
    def load(cls, in_dir: Path | str) -> SentencePieceTokenizer:
        config = _read_config(Path(in_dir), expected_kind=cls.kind)
        tokenizer = cls(Path(in_dir) / config["model"])
        if tokenizer.vocab_size != config["vocab_size"]:
            raise ValueError(
                f"{Path(in_dir) / _CONFIG_NAME} says vocab_size={config['vocab_size']} but "
                f"{tokenizer.model_path} has {tokenizer.vocab_size} pieces"
            )
        return tokenizer


class BPETokenizer(SentencePieceTokenizer):
    """Sentencepiece BPE (icefall's LibriSpeech recipes: 500 units)."""

    kind = "bpe"
    MODEL_NAME = "bpe.model"
    MODEL_TYPE = "bpe"


class UnigramTokenizer(SentencePieceTokenizer):
    """Sentencepiece unigram language-model segmentation (ESPnet's default ``bpemode``)."""

    kind = "unigram"
    MODEL_NAME = "unigram.model"
    MODEL_TYPE = "unigram"


_KINDS: dict[str, type[CharTokenizer] | type[SentencePieceTokenizer]] = {
    CharTokenizer.kind: CharTokenizer,
    BPETokenizer.kind: BPETokenizer,
    UnigramTokenizer.kind: UnigramTokenizer,
}


def _read_config(in_dir: Path, expected_kind: str | None = None) -> dict:
    path = in_dir / _CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no tokenizer in {in_dir}: {path} does not exist (write one with train_tokenizer)"
        )
    config = json.loads(path.read_text())
    kind = config.get("kind")
    if kind not in _KINDS or (expected_kind is not None and kind != expected_kind):
        expected = expected_kind or " or ".join(repr(k) for k in _KINDS)
        raise ValueError(f"{path}: field 'kind' must be {expected}, got {kind!r}")
    return config


def load_tokenizer(in_dir: Path | str) -> Tokenizer:
    """Load a tokeniser saved by :meth:`Tokenizer.save` (either kind, read from tokenizer.json)."""
    kind = _read_config(Path(in_dir))["kind"]
    return _KINDS[kind].load(in_dir)


def train_tokenizer(
    kind: Literal["char", "bpe", "unigram"],
    texts: Iterable[str],
    out_dir: Path | str,
    *,
    vocab_size: int | None = None,
) -> Tokenizer:
    """Train a tokeniser on training transcripts and save it to ``out_dir``.

    Args:
        kind: ``"char"`` (characters + word boundary), ``"bpe"`` or ``"unigram"`` (sentencepiece
            subwords).
        texts: training transcripts (normalised here; already-normalised text is unchanged).
        out_dir: where the tokeniser is saved; :func:`load_tokenizer` reads it back.
        vocab_size: subwords only (required there): total units including blank and ``<unk>``.

    Returns:
        The trained tokeniser.
    """
    if kind == "char":
        if vocab_size is not None:
            raise ValueError(
                f"vocab_size is set by the characters of the text for kind='char', "
                f"got vocab_size={vocab_size}"
            )
        tokenizer: Tokenizer = CharTokenizer.train(texts)
    elif kind in ("bpe", "unigram"):
        if vocab_size is None:
            raise ValueError(f"kind={kind!r} needs a vocab_size (e.g. 500 for LibriSpeech 960 h)")
        tokenizer = _KINDS[kind].train(texts, out_dir, vocab_size=vocab_size)
    else:
        raise ValueError(f"tokenizer kind must be 'char', 'bpe' or 'unigram', got {kind!r}")
    tokenizer.save(out_dir)
    return tokenizer
