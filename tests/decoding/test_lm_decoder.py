"""LM beam search (flashlight-text + KenLM) on hand-made CTC log-probabilities.

The acoustic evidence of the word after THE is ambiguous between CAT and KAT, with KAT slightly
ahead (so greedy decoding reads KAT); the LM, built from a handful of sentences, only knows CAT.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from dmao.data.tokenizer import CharTokenizer
from dmao.decoding.ctc import greedy_decode
from dmao.decoding.lexicon import (
    build_lexicon,
    read_lexicon,
    spell_word,
    token_symbols,
    write_lexicon,
)
from dmao.decoding.lm_decoder import CTCLMDecoder, LMDecoderOptions
from dmao.lm.ngram import NgramCounts, estimate_kneser_ney, write_arpa
from dmao.lm.text import token_sentences

LM_TEXT = ["THE CAT SAT", "THE CAT", "A CAT SAT", "THE HAT", "A HAT SAT", "THE CAT SAT ON A HAT"]
TOKENIZER = CharTokenizer("ACEHKNOST")  # ids: 0 blank, 1 |, then A C E H K N O S T
WIDE = {"beam_size": 200, "beam_threshold": 1000.0}


def _frames(spec: list[dict[str, float]]) -> torch.Tensor:
    """``(T, V)`` log-probabilities: each frame gives some symbols a probability, the rest share
    what is left equally."""
    symbols = token_symbols(TOKENIZER)
    rows = []
    for probs in spec:
        rest = (1.0 - sum(probs.values())) / (len(symbols) - len(probs))
        rows.append([math.log(probs.get(s, rest)) for s in symbols])
    return torch.tensor(rows, dtype=torch.float32)


def _clear(symbol: str) -> dict[str, float]:
    return {symbol: 0.9}


# T H E _ | _ (K|C) A T _ S A T: greedy reads "THE KAT SAT".
AMBIGUOUS = _frames(
    [
        *map(_clear, ["T", "H", "E", "<blk>", "|", "<blk>"]),
        {"K": 0.5, "C": 0.4},
        *map(_clear, ["A", "T", "|", "S", "A", "T"]),
    ]
)


def _greedy(log_probs: torch.Tensor) -> str:
    ids = greedy_decode(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
    return TOKENIZER.decode(ids)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """A word 3-gram with its lexicon and a character 4-gram, from LM_TEXT."""
    root = tmp_path_factory.mktemp("lm")
    words = [s.split() for s in LM_TEXT]
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(words, 3)), root / "word.arpa")
    chars = token_sentences(LM_TEXT, TOKENIZER)
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(chars, 4)), root / "char.arpa")
    # KAT is in the lexicon but not in the LM text, so only the LM can rule it out.
    lexicon = build_lexicon([*" ".join(LM_TEXT).split(), "KAT"], TOKENIZER)
    write_lexicon(lexicon, root / "lexicon.txt")
    return root


def _decoder(lms, lexicon: bool, **options) -> CTCLMDecoder:
    return CTCLMDecoder.from_tokenizer(
        TOKENIZER,
        lms / ("word.arpa" if lexicon else "char.arpa"),
        lms / "lexicon.txt" if lexicon else None,
        LMDecoderOptions(**options),
    )


def test_greedy_reads_the_acoustically_stronger_spelling():
    assert _greedy(AMBIGUOUS) == "THE KAT SAT"


@pytest.mark.parametrize("lexicon", [True, False], ids=["lexicon", "lexicon-free"])
def test_lm_picks_the_in_vocabulary_spelling(lms, lexicon):
    hypothesis = _decoder(lms, lexicon, lm_weight=1.0, beam_size=20).decode(AMBIGUOUS)
    assert hypothesis.text == "THE CAT SAT"
    assert len(hypothesis.frame_tokens) == AMBIGUOUS.shape[0]
    assert hypothesis.lm_score < 0  # a log10 probability


@pytest.mark.parametrize("lexicon", [True, False], ids=["lexicon", "lexicon-free"])
def test_lm_weight_zero_and_wide_beam_equal_greedy(lms, lexicon):
    decoder = _decoder(lms, lexicon, lm_weight=0.0, **WIDE)
    hypothesis = decoder.decode(AMBIGUOUS)
    assert hypothesis.text == _greedy(AMBIGUOUS) == "THE KAT SAT"
    # The best path itself is the frame-wise argmax; its score the sum of the maxima.
    assert hypothesis.frame_tokens == AMBIGUOUS.argmax(-1).tolist()
    assert hypothesis.score == pytest.approx(float(AMBIGUOUS.max(-1).values.sum()), abs=1e-4)


def test_lexicon_free_equals_greedy_on_random_posteriors(lms):
    """Without a lexicon nothing constrains the path: best path = greedy on any posteriors."""
    decoder = _decoder(lms, False, lm_weight=0.0, **WIDE)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        logits = 3 * torch.randn(15, TOKENIZER.vocab_size, generator=generator)
        log_probs = logits.log_softmax(-1)
        assert decoder.decode(log_probs).text == _greedy(log_probs)


# C A T (| or blank) S A T: a boundary is slightly more likely than none.
CATSAT = _frames([*map(_clear, "CAT"), {"|": 0.5, "<blk>": 0.4}, *map(_clear, "SAT")])


def test_word_score_and_sil_score_trade_word_count(lms):
    """A word penalty (lexicon) or boundary penalty (lexicon-free) turns "CAT SAT" into the
    one-word "CATSAT" that the acoustics slightly disfavour; no penalty keeps the acoustics."""
    symbols = token_symbols(TOKENIZER)
    lexicon = build_lexicon(["CAT", "SAT", "CATSAT", "THE"], TOKENIZER)

    def lexicon_decoder(word_score: float) -> CTCLMDecoder:
        options = LMDecoderOptions(lm_weight=0.0, word_score=word_score, **WIDE)
        return CTCLMDecoder(symbols, 0, lms / "word.arpa", lexicon, "|", options)

    assert lexicon_decoder(0.0).decode(CATSAT).text == "CAT SAT"
    assert lexicon_decoder(-5.0).decode(CATSAT).text == "CATSAT"
    assert _decoder(lms, False, lm_weight=0.0, sil_score=0.0, **WIDE).decode(CATSAT).text == (
        "CAT SAT"
    )
    assert _decoder(lms, False, lm_weight=0.0, sil_score=-5.0, **WIDE).decode(CATSAT).text == (
        "CATSAT"
    )


@pytest.mark.parametrize("lexicon", [True, False], ids=["lexicon", "lexicon-free"])
def test_with_options_searches_as_a_decoder_built_with_them(lms, lexicon):
    """`dmao tune` loads the LM once and changes only the search settings: each result must be
    that of a decoder loaded anew with those settings, and the original must stay as it was."""
    base = _decoder(lms, lexicon, lm_weight=1.0, beam_size=20)
    before = base.decode(AMBIGUOUS)
    # Random posteriors: no two paths tie, so the search's result is unique (on the hand-made
    # frames, whose unnamed symbols share one probability, flashlight breaks ties arbitrarily).
    generator = torch.Generator().manual_seed(1)
    utterances = [(2 * torch.randn(12, 11, generator=generator)).log_softmax(-1) for _ in range(6)]
    for settings in (
        {"lm_weight": 0.0, "sil_score": -5.0},
        {"lm_weight": 2.0, "word_score": -1.0} if lexicon else {"lm_weight": 2.0, "sil_score": 1.0},
        {"lm_weight": 0.5, "beam_size": 3, "beam_threshold": 5.0},
    ):
        options = LMDecoderOptions(**settings)
        other, fresh = base.with_options(options), _decoder(lms, lexicon, **settings)
        assert other.options == options
        for log_probs in utterances:
            ours, theirs = other.decode(log_probs), fresh.decode(log_probs)
            assert (ours.text, ours.frame_tokens) == (theirs.text, theirs.frame_tokens)
            assert ours.score == pytest.approx(theirs.score)
    after = base.decode(AMBIGUOUS)
    assert (after.text, after.score) == (before.text, before.score)
    assert base.decode(CATSAT).text == "CAT SAT"


@pytest.mark.parametrize("lexicon", [True, False], ids=["lexicon", "lexicon-free"])
def test_nbest_starts_with_the_best_and_has_different_texts(lms, lexicon):
    decoder = _decoder(lms, lexicon, lm_weight=1.0, beam_size=20)
    nbest = decoder.decode_nbest(AMBIGUOUS, 5)
    assert nbest[0] == decoder.decode(AMBIGUOUS)
    assert nbest[0].text == "THE CAT SAT"
    assert 1 < len(nbest) <= 5
    assert len({h.text for h in nbest}) == len(nbest)
    assert all(len(h.frame_tokens) == AMBIGUOUS.shape[0] for h in nbest)
    if lexicon:  # the acoustically preferred spelling is the runner-up the LM pushed down
        assert "THE KAT SAT" in [h.text for h in nbest]
    with pytest.raises(ValueError, match="n must be at least 1"):
        decoder.decode_nbest(AMBIGUOUS, 0)


def test_batch_decoding_respects_lengths(lms):
    decoder = _decoder(lms, True, lm_weight=1.0)
    batch = torch.stack([AMBIGUOUS, AMBIGUOUS])
    out = decoder.decode_batch(batch, torch.tensor([AMBIGUOUS.shape[0], 9]))
    assert [h.text for h in out] == ["THE CAT SAT", "THE CAT"]
    assert decoder.decode(AMBIGUOUS[:0]).text == ""


def test_lexicon_files_round_trip(lms, tmp_path):
    lexicon = read_lexicon(lms / "lexicon.txt")
    assert lexicon["CAT"] == [["C", "A", "T", "|"]] == [spell_word("CAT", TOKENIZER)]
    write_lexicon(lexicon, tmp_path / "again.txt")
    assert read_lexicon(tmp_path / "again.txt") == lexicon
    (tmp_path / "bad.txt").write_text("CAT C A T |\nDOG\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        read_lexicon(tmp_path / "bad.txt")


def test_mismatched_lm_and_lexicon_are_refused(lms):
    # A token LM with a lexicon (or a word LM without one) would score everything as <unk>.
    with pytest.raises(ValueError, match="word LM"):
        CTCLMDecoder.from_tokenizer(TOKENIZER, lms / "char.arpa", lms / "lexicon.txt")
    with pytest.raises(ValueError, match="token LM"):
        CTCLMDecoder.from_tokenizer(TOKENIZER, lms / "word.arpa", None)
    with pytest.raises(FileNotFoundError, match="dmao lm build"):
        CTCLMDecoder.from_tokenizer(TOKENIZER, lms / "missing.arpa", None)


@pytest.mark.parametrize("lexicon", [True, False], ids=["lexicon", "lexicon-free"])
def test_kenlm_loading_prints_nothing_on_the_console(lms, lexicon, capfd, caplog):
    """KenLM writes a build-a-binary hint and a progress bar to file descriptor 2 while it reads
    an ARPA file (past sys.stderr, so capfd, not capsys); that goes to the debug log, and the
    descriptor is restored afterwards."""
    caplog.set_level("DEBUG", logger="dmao.decoding.lm_decoder")
    assert _decoder(lms, lexicon).decode(AMBIGUOUS).text
    assert capfd.readouterr().err == ""
    printed = [r.getMessage() for r in caplog.records if "printed" in r.getMessage()]
    assert len(printed) == 1 and "----5---10" in printed[0], printed
    os.write(2, b"still the console\n")
    assert capfd.readouterr().err == "still the console\n"


def test_orders_above_what_kenlm_loads_are_a_clear_error(tmp_path):
    """flashlight-text's KenLM stops at 6-grams; a 7-gram file is refused before loading."""
    chars = token_sentences(LM_TEXT, TOKENIZER)
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(chars, 7)), tmp_path / "c7.arpa")
    with pytest.raises(ValueError, match=r"7-gram LM.*up to 6"):
        CTCLMDecoder.from_tokenizer(TOKENIZER, tmp_path / "c7.arpa", None)
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(chars, 6)), tmp_path / "c6.arpa")
    assert CTCLMDecoder.from_tokenizer(TOKENIZER, tmp_path / "c6.arpa", None).decode(AMBIGUOUS).text


def test_bpe_models_decode_with_and_without_lexicon(tmp_path):
    """Sentencepiece pieces: no boundary token (the blank stands in for flashlight's silence),
    the lexicon spells words in pieces, the token LM's words are the pieces."""
    from dmao.data.tokenizer import BPETokenizer

    text = [*LM_TEXT, "THE HAT SAT ON THE CAT", "A CAT ON A HAT"] * 3
    tokenizer = BPETokenizer.train(text, tmp_path / "bpe", vocab_size=24)
    symbols = token_symbols(tokenizer)
    ids = tokenizer.encode("THE CAT SAT")
    # One confident frame per piece with a blank between: greedy reads the sentence back.
    rows = []
    for piece in ids:
        for token in (piece, tokenizer.blank_id):
            row = torch.full((len(symbols),), math.log(0.1 / (len(symbols) - 1)))
            row[token] = math.log(0.9)
            rows.append(row)
    log_probs = torch.stack(rows)
    word_lm, token_lm = tmp_path / "w.arpa", tmp_path / "t.arpa"
    sentences = [s.split() for s in text]
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(sentences, 2)), word_lm)
    pieces = token_sentences(text, tokenizer)
    write_arpa(estimate_kneser_ney(NgramCounts.from_sentences(pieces, 3)), token_lm)
    lexicon_path = tmp_path / "lexicon.txt"
    write_lexicon(build_lexicon(" ".join(text).split(), tokenizer), lexicon_path)
    assert read_lexicon(lexicon_path)["CAT"] == [[symbols[i] for i in tokenizer.encode("CAT")]]
    for lexicon in (lexicon_path, None):
        lm = word_lm if lexicon else token_lm
        for weight in (0.0, 1.0):
            options = LMDecoderOptions(lm_weight=weight, **WIDE)
            decoder = CTCLMDecoder.from_tokenizer(tokenizer, lm, lexicon, options)
            assert decoder.decode(log_probs).text == "THE CAT SAT"
