"""Modified Kneser-Ney estimation and ARPA files: hand-computed values, normalisation, KenLM."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from dmao.lm.ngram import (
    BOS,
    EOS,
    FALLBACK_DISCOUNTS,
    UNK,
    NgramCounts,
    _discounts,
    estimate_kneser_ney,
    read_arpa,
    write_arpa,
)

SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat ran",
    "the cat ran home",
    "a dog sat",
    "the mat is red",
    "the cat sat",
    "a red cat sat on a red mat",
]


def _model(order: int, sentences=SENTENCES):
    return estimate_kneser_ney(NgramCounts.from_sentences([s.split() for s in sentences], order))


def test_bigram_values_match_a_hand_computation():
    """Sentences "A B", "A", "B": every discount falls back to (0.5, 1, 1.5); see the comments for
    the arithmetic of interpolated modified Kneser-Ney."""
    model = _model(2, ["A B", "A", "B"])
    assert model.discounts == [FALLBACK_DISCOUNTS, FALLBACK_DISCOUNTS]
    p = {g: 10**v for g, v in model.log10_probs[0].items()}
    # Continuation counts A:1 (after <s>), B:2 (after A, <s>), </s>:2; total 5;
    # gamma = (0.5 + 1 + 1) / 5 = 0.5, shared uniformly over 4 words (A, B, </s>, <unk>).
    assert p[("A",)] == pytest.approx(0.5 / 5 + 0.5 / 4, rel=1e-6)
    assert p[("B",)] == pytest.approx(1.0 / 5 + 0.5 / 4, rel=1e-6)
    assert p[(EOS,)] == pytest.approx(1.0 / 5 + 0.5 / 4, rel=1e-6)
    assert p[(UNK,)] == pytest.approx(0.5 / 4, rel=1e-6)
    bigram = {g: 10**v for g, v in model.log10_probs[1].items()}
    # After <s>: A twice, B once; gamma(<s>) = (1 + 0.5) / 3 = 0.5.
    assert bigram[(BOS, "A")] == pytest.approx(1 / 3 + 0.5 * 0.225, rel=1e-6)
    assert bigram[(BOS, "B")] == pytest.approx(0.5 / 3 + 0.5 * 0.325, rel=1e-6)
    assert 10 ** model.log10_backoffs[0][(BOS,)] == pytest.approx(0.5, rel=1e-6)
    # An unseen bigram backs off: p(A | B) = gamma(B) p(A) = (1 / 2) * 0.225.
    assert 10 ** model.log10_prob("A", ["B"]) == pytest.approx(0.5 * 0.225, rel=1e-6)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_context_sums_to_one(order, tmp_path):
    path = tmp_path / "lm.arpa"
    write_arpa(_model(order), path)
    model = read_arpa(path)
    vocabulary = [w for w in model.vocabulary if w != BOS]
    assert UNK in vocabulary and EOS in vocabulary
    contexts = [()] + [g for n in range(order - 1) for g in model.log10_probs[n] if g[-1] != EOS]
    contexts += [("zebra", "the"), ("red", "red", "red")]  # unseen words and histories
    for context in contexts:
        total = sum(10 ** model.log10_prob(w, list(context)) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-5), context


def test_counts_of_counts_give_chen_goodman_discounts():
    """t1..t4 = 10, 5, 3, 2 n-grams seen once..four times (plus some seen more often):
    Y = 10 / (10 + 2 * 5) = 0.5 and D_k = k - (k + 1) Y t_{k+1} / t_k."""
    sizes = {1: 10, 2: 5, 3: 3, 4: 2, 9: 4}
    adjusted = Counter({(f"w{k}_{i}",): k for k, n in sizes.items() for i in range(n)})
    d1, d2, d3 = _discounts(adjusted, 1)
    assert d1 == pytest.approx(1 - 2 * 0.5 * 5 / 10)
    assert d2 == pytest.approx(2 - 3 * 0.5 * 3 / 5)
    assert d3 == pytest.approx(3 - 4 * 0.5 * 2 / 3)
    # No n-gram seen four times: D3+ cannot be estimated, the whole order falls back.
    del adjusted[("w4_0",)], adjusted[("w4_1",)]
    assert _discounts(adjusted, 1) == FALLBACK_DISCOUNTS


def test_kenlm_scores_our_arpa_file_like_our_reader(tmp_path):
    kenlm = pytest.importorskip("kenlm", reason="the kenlm module is not installed")
    path = tmp_path / "lm.arpa"
    write_arpa(_model(3), path)
    ours, theirs = read_arpa(path), kenlm.Model(str(path))
    for sentence in [*SENTENCES, "the dog ran home", "zebra cat", "the the the"]:
        assert theirs.score(sentence, bos=True, eos=True) == pytest.approx(
            ours.log10_sentence(sentence.split()), abs=1e-5
        )


def test_flashlight_kenlm_loads_our_arpa_file(tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = tmp_path / "lm.arpa"
    write_arpa(_model(3), path)
    words = Dictionary()
    for word in ("the", "cat", "sat"):
        words.add_entry(word)
    lm = KenLM(str(path), words)
    state, score = lm.score(lm.start(False), words.get_index("the"))
    # flashlight reports KenLM's log10 score.
    assert score == pytest.approx(read_arpa(path).log10_prob("the", [BOS]), abs=1e-5)
    _, score = lm.score(state, words.get_index("cat"))
    assert score == pytest.approx(read_arpa(path).log10_prob("cat", [BOS, "the"]), abs=1e-5)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="order must be >= 2"):
        NgramCounts.from_sentences([["a"]], 1)
    with pytest.raises(ValueError, match="reserved"):
        NgramCounts.from_sentences([["a", "</s>"]], 2)
    with pytest.raises(ValueError, match="no non-empty sentence"):
        NgramCounts.from_sentences([[]], 2)
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\\end\\\n")
    with pytest.raises(ValueError, match="ngram 1=2, found 1"):
        read_arpa(bad)
    assert math.isfinite(read_arpa(_write(tmp_path)).log10_prob("never-seen", []))


def _write(tmp_path):
    path = tmp_path / "ok.arpa"
    write_arpa(_model(2), path)
    return path
