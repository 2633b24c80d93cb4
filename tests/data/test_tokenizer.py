from __future__ import annotations

import json
import random

import pytest

from dmao.data.text import normalize_transcript
from dmao.data.tokenizer import (
    BLANK_ID,
    BPETokenizer,
    CharTokenizer,
    SentencePieceTokenizer,
    UnigramTokenizer,
    load_tokenizer,
    train_tokenizer,
)

_WORD_LIST = (
    "THE A OF AND TO IN HE WAS THAT IT HIS HAD WITH AS FOR YOU BUT NOT SHE HER ALL AT BY THEY SO "
    "ONE WERE MY HIM WHICH FROM ME SAID BE THERE HAVE WHEN WHAT AN THIS ARE OR UPON MAN LITTLE "
    "DON'T CAN'T ISN'T O'BRIEN SHALL WOULD KNOW GOOD THOUGHT JUMPED QUICKLY OVER LAZY FOX ZEBRA "
    "EXCEPT VERY WITHOUT MISSUS MISTER ELEVEN TWELVE"
)
_WORDS = _WORD_LIST.split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def training_texts() -> list[str]:
    return _sentences(400, seed=0)


SUBWORDS = {"bpe": BPETokenizer, "unigram": UnigramTokenizer}
VOCAB = {"bpe": 120, "unigram": 90}  # unigram keeps fewer pieces of this small text (<= 98)


@pytest.fixture(scope="module", params=sorted(SUBWORDS))
def bpe(request, training_texts, tmp_path_factory) -> SentencePieceTokenizer:
    """Each sentencepiece kind in turn (the ``bpe`` tests run for ``unigram`` too)."""
    kind = request.param
    tokenizer = train_tokenizer(
        kind, training_texts, tmp_path_factory.mktemp(kind), vocab_size=VOCAB[kind]
    )
    assert type(tokenizer) is SUBWORDS[kind] and tokenizer.kind == kind
    return tokenizer


@pytest.fixture(scope="module")
def char(training_texts, tmp_path_factory) -> CharTokenizer:
    tokenizer = train_tokenizer("char", training_texts, tmp_path_factory.mktemp("char"))
    assert isinstance(tokenizer, CharTokenizer)
    return tokenizer


# --- character tokenizer -------------------------------------------------------------------------


def test_char_vocabulary_layout(char: CharTokenizer, training_texts) -> None:
    letters = sorted(set("".join(training_texts)) - {" "})
    assert char.symbols == ["<blk>", "|", *letters]
    assert char.vocab_size == len(letters) + 2
    assert char.blank_id == BLANK_ID == 0
    assert char.unk_id is None
    assert char.encode("A B") == [char.symbols.index("A"), 1, char.symbols.index("B")]


def test_char_round_trip(char: CharTokenizer, training_texts) -> None:
    for text in training_texts + _sentences(100, seed=1):
        ids = char.encode(text)
        assert BLANK_ID not in ids
        assert char.decode(ids) == text


def test_char_unknown_characters(char: CharTokenizer) -> None:
    assert char.can_encode("THE FOX")
    assert not char.can_encode("THE F\u00d6X")
    assert not char.can_encode("CHAPTER 7")
    with pytest.raises(ValueError, match=r"\['7'\].*filter such utterances"):
        char.encode("CHAPTER 7")


def test_char_decode_skips_blanks_and_stray_boundaries(char: CharTokenizer) -> None:
    ids = char.encode("HE WAS")
    noisy = [0, 1, *ids[:2], 0, 1, 1, 0, *ids[3:], 1, 0]
    assert char.decode(noisy) == "HE WAS"
    with pytest.raises(ValueError, match="out of range"):
        char.decode([char.vocab_size])


def test_char_save_load(char: CharTokenizer, tmp_path) -> None:
    char.save(tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["kind"] == "char"
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, CharTokenizer)
    assert loaded.symbols == char.symbols
    assert loaded.encode("THE FOX") == char.encode("THE FOX")


def test_char_training_normalises_text(tmp_path) -> None:
    tokenizer = train_tokenizer("char", ["hello, world!", "well-known"], tmp_path)
    assert tokenizer.symbols == ["<blk>", "|", "D", "E", "H", "K", "L", "N", "O", "R", "W"]


# --- BPE tokenizer -------------------------------------------------------------------------------


def test_bpe_vocabulary_layout(bpe: SentencePieceTokenizer) -> None:
    assert bpe.vocab_size == VOCAB[bpe.kind]
    assert bpe.blank_id == 0
    assert bpe.unk_id == 1
    assert bpe._sp.id_to_piece(0) == "<blk>"


def test_bpe_round_trip_without_unk(bpe: SentencePieceTokenizer, training_texts) -> None:
    for text in training_texts + _sentences(200, seed=2):
        ids = bpe.encode(text)
        assert bpe.blank_id not in ids
        assert bpe.unk_id not in ids
        assert all(0 < i < bpe.vocab_size for i in ids)
        assert bpe.decode(ids) == text
    # Merges were learned: frequent words are shorter than their spelling.
    assert len(bpe.encode("THE THE THE")) < len("THE THE THE")


def test_bpe_known_characters_in_new_words_never_give_unk(bpe: SentencePieceTokenizer) -> None:
    # character_coverage=1.0: any word spelled with training characters encodes without <unk>.
    text = "ZAX QUOTH BEWILDERMENT'S"
    assert bpe.can_encode(text)
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_unknown_characters(bpe: SentencePieceTokenizer) -> None:
    assert not bpe.can_encode("THE F\u00d6X")
    assert not bpe.can_encode("CHAPTER 7")
    with pytest.raises(ValueError, match=r"encodes to <unk>.*'7'"):
        bpe.encode("CHAPTER 7")


def test_bpe_decode_skips_blanks(bpe: SentencePieceTokenizer) -> None:
    ids = bpe.encode("HE WAS THERE")
    assert bpe.decode([0, *ids[:1], 0, 0, *ids[1:], 0]) == "HE WAS THERE"
    with pytest.raises(ValueError, match="out of range"):
        bpe.decode([bpe.vocab_size])


def test_bpe_save_load(bpe: SentencePieceTokenizer, tmp_path, training_texts) -> None:
    bpe.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config == {"kind": bpe.kind, "model": f"{bpe.kind}.model", "vocab_size": VOCAB[bpe.kind]}
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(bpe)
    for text in training_texts[:50]:
        assert loaded.encode(text) == bpe.encode(text)


def test_bpe_training_is_deterministic(
    training_texts, tmp_path, bpe: SentencePieceTokenizer
) -> None:
    again = train_tokenizer(bpe.kind, training_texts, tmp_path, vocab_size=bpe.vocab_size)
    for text in training_texts[:50]:
        assert again.encode(text) == bpe.encode(text)


def test_bpe_trains_on_raw_text_through_normalisation(tmp_path) -> None:
    raw = [f"{s.lower()}, isn\u2019t it?" for s in _sentences(200, seed=3)]
    tokenizer = train_tokenizer("bpe", raw, tmp_path, vocab_size=80)
    for text in raw:
        normalised = normalize_transcript(text)
        assert tokenizer.decode(tokenizer.encode(normalised)) == normalised


# --- errors --------------------------------------------------------------------------------------


def test_train_tokenizer_argument_errors(tmp_path, training_texts) -> None:
    with pytest.raises(ValueError, match="'char', 'bpe' or 'unigram'"):
        train_tokenizer("wordpiece", training_texts, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a vocab_size"):
        train_tokenizer("bpe", training_texts, tmp_path)
    with pytest.raises(ValueError, match="vocab_size is set by the characters"):
        train_tokenizer("char", training_texts, tmp_path, vocab_size=30)
    with pytest.raises(ValueError, match=r"vocab_size=5000.*smaller vocab_size"):
        train_tokenizer("bpe", training_texts[:20], tmp_path, vocab_size=5000)
    with pytest.raises(ValueError, match="transcripts are empty"):
        train_tokenizer("char", ["...", ""], tmp_path)
    with pytest.raises(ValueError, match="transcripts are empty"):
        train_tokenizer("bpe", ["..."], tmp_path, vocab_size=10)


def test_load_tokenizer_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json does not exist"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "words"}')
    with pytest.raises(ValueError, match="field 'kind' must be 'char' or 'bpe' or 'unigram', got"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "char", "symbols": ["A", "B"]}')
    with pytest.raises(ValueError, match="symbols must start with"):
        load_tokenizer(tmp_path)


def test_a_run_trains_and_decodes_with_a_unigram_tokenizer(tiny_corpus, tmp_path) -> None:
    from conftest import tiny_train_overrides, train_tiny_run

    from dmao.decoding.decode_run import decode_split

    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "tokenizer.kind=unigram",
        "tokenizer.vocab_size=40",
        "train.max_steps=2",
        "train.valid_every_steps=2",
        "train.checkpoint_every_steps=2",
    ]
    run = train_tiny_run(tmp_path / "run", overrides)
    tokenizer = load_tokenizer(run / "tokenizer")
    assert type(tokenizer) is UnigramTokenizer and tokenizer.vocab_size == 40
    result = decode_split(run, "test", method="beam", beam_size=2, progress_bar=False)
    assert result.score.word.ref_len > 0
