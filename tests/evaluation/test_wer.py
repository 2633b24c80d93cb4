"""Scoring: hand-computed cases and agreement with jiwer."""

from __future__ import annotations

import math
import random

import jiwer
import pytest

from dmao.evaluation import (
    ErrorCounts,
    align_words,
    count_errors,
    format_results_table,
    score_corpus,
    write_hypotheses,
)


def _raw(text: str) -> str:
    return text


def test_all_correct() -> None:
    result = score_corpus(["the cat sat", "on the mat"], ["the cat sat", "on the mat"], _raw)
    assert result.word == ErrorCounts(0, 0, 0, ref_len=6, hyp_len=6)
    assert result.char == ErrorCounts(0, 0, 0, ref_len=17, hyp_len=17)
    assert (result.wer, result.cer, result.sentence_error_rate) == (0.0, 0.0, 0.0)
    assert result.num_utterances == 2


def test_all_deleted() -> None:
    result = score_corpus(["the cat sat", "on"], ["", ""], _raw)
    assert result.word == ErrorCounts(substitutions=0, deletions=4, insertions=0, ref_len=4)
    assert result.wer == 1.0
    assert result.char.deletions == 11 and result.cer == 1.0
    assert result.num_sentence_errors == 2


def test_insertions_only() -> None:
    result = score_corpus(["a b c"], ["x a b y c z"], _raw)
    assert result.word == ErrorCounts(0, 0, 3, ref_len=3, hyp_len=6)
    assert result.wer == 1.0
    assert result.char == ErrorCounts(0, 0, 3, ref_len=3, hyp_len=6)


def test_substitutions_deletions_and_insertions() -> None:
    # ref: the cat sat on the mat   hyp: the bat sat the mat today
    # cat->bat (S), "on" deleted (D), "today" inserted (I): 3 errors over 6 words.
    result = score_corpus(["the cat sat on the mat"], ["the bat sat the mat today"], _raw)
    assert result.word == ErrorCounts(1, 1, 1, ref_len=6, hyp_len=6)
    assert result.wer == pytest.approx(0.5)
    # Characters without spaces: "thecatsatonthemat" (17) vs "thebatsatthemattoday" -> c->b,
    # delete "on", insert "today": 1 + 2 + 5 = 8.
    assert result.char.errors == 8 and result.char.ref_len == 17


def test_empty_reference_is_scored_at_corpus_level() -> None:
    # An empty reference contributes its insertions to the numerator and nothing to the
    # denominator: (0 + 2) / (3 + 0).
    result = score_corpus(["a b c", ""], ["a b c", "x y"], _raw)
    assert result.word == ErrorCounts(0, 0, 2, ref_len=3, hyp_len=5)
    assert result.wer == pytest.approx(2 / 3)
    assert result.utterances[1].word.rate == math.inf
    assert result.num_sentence_errors == 1
    # A corpus of only empty references: 0 for an empty hypothesis, inf otherwise.
    assert score_corpus([""], [""], _raw).wer == 0.0
    assert score_corpus([""], ["x"], _raw).wer == math.inf
    assert score_corpus([], [], _raw).sentence_error_rate == 0.0


def test_word_boundary_errors_are_not_character_errors() -> None:
    result = score_corpus(["ab c"], ["a bc"], _raw)
    assert result.word.errors == 2
    assert result.char.errors == 0


def test_default_normalisation_ignores_case_and_punctuation() -> None:
    pytest.importorskip("dmao.data.text")
    result = score_corpus(["Hello, world!  It's   fine."], ["HELLO WORLD IT'S FINE"])
    assert result.word.errors == 0
    assert result.utterances[0].ref == "HELLO WORLD IT'S FINE"


def test_align_words_marks_insertions_and_deletions_with_none() -> None:
    assert align_words(["a", "b", "c"], ["a", "x", "c", "d"]) == [
        ("a", "a"),
        ("b", "x"),
        ("c", "c"),
        (None, "d"),
    ]
    assert align_words(["a", "b"], ["b"]) == [("a", None), ("b", "b")]
    assert align_words([], []) == []
    # Words that sort before the filler symbol must not be mistaken for it.
    assert align_words(["*", "!"], ["*"]) == [("*", "*"), ("!", None)]


def test_count_errors_agrees_with_alignment() -> None:
    rng = random.Random(0)
    for _ in range(50):
        ref, hyp = _random_pair(rng)
        ref_words, hyp_words = ref.split(), hyp.split()
        pairs = align_words(ref_words, hyp_words)
        counts = count_errors(ref_words, hyp_words)
        assert counts.insertions == sum(r is None for r, _ in pairs)
        assert counts.deletions == sum(h is None for _, h in pairs)
        assert counts.substitutions == sum(None not in (r, h) and r != h for r, h in pairs)


_VOCAB = "the a cat dog sat on mat ran far near big small red blue it's up".split()  # noqa: SIM905


def _random_pair(rng: random.Random) -> tuple[str, str]:
    """A reference and a hypothesis made from it by random substitutions, deletions, insertions.

    References are never empty (jiwer rejects an empty reference) but hypotheses may be.
    """
    ref = [rng.choice(_VOCAB) for _ in range(rng.randint(1, 12))]
    hyp = []
    for word in ref:
        edit = rng.random()
        if edit < 0.1:
            continue  # deletion
        hyp.append(rng.choice(_VOCAB) if edit < 0.25 else word)
        if rng.random() < 0.1:
            hyp.append(rng.choice(_VOCAB))  # insertion
    return " ".join(ref), " ".join(hyp)


# jiwer's cer keeps inner spaces as characters; ours drops them (see dmao.evaluation.wer).
_CER_WITHOUT_SPACES = jiwer.Compose(
    [jiwer.RemoveWhiteSpace(replace_by_space=False), jiwer.ReduceToListOfListOfChars()]
)


def test_agrees_with_jiwer_on_random_edits() -> None:
    rng = random.Random(1234)
    pairs = [_random_pair(rng) for _ in range(300)]
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    result = score_corpus(refs, hyps, _raw)

    words = jiwer.process_words(refs, hyps)
    assert result.wer == pytest.approx(words.wer, abs=1e-12)
    assert result.wer == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert result.word.errors == words.substitutions + words.deletions + words.insertions
    assert result.word.ref_len == words.hits + words.substitutions + words.deletions
    cer = jiwer.cer(
        refs,
        hyps,
        reference_transform=_CER_WITHOUT_SPACES,
        hypothesis_transform=_CER_WITHOUT_SPACES,
    )
    assert result.cer == pytest.approx(cer, abs=1e-12)
    # Per utterance too, where the reference is non-empty.
    for utt, ref, hyp in zip(result.utterances[:50], refs[:50], hyps[:50], strict=True):
        assert utt.word.rate == pytest.approx(jiwer.wer(ref, hyp), abs=1e-12)


def test_summary_line() -> None:
    result = score_corpus(
        ["the cat sat on the mat", "a b"], ["the bat sat the mat today", "a b"], _raw
    )
    assert result.summary() == (
        "WER 37.50 % [ 3 / 8, 1 ins, 1 del, 1 sub ] CER 42.11 % [ 8 / 19 ] SER 50.00 % [ 1 / 2 ]"
    )


def test_write_hypotheses(tmp_path) -> None:
    path = tmp_path / "decode" / "hyps.tsv"
    result = write_hypotheses(path, ["u1", "u2"], ["a b c", "d e"], ["a x c", "d e"], _raw)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\terrors\tref_words\tref\thyp"
    assert lines[1] == "u1\t1\t3\ta b c\ta x c"
    assert lines[2] == "u2\t0\t2\td e\td e"
    assert lines[3] == f"# {result.summary()}"
    with pytest.raises(ValueError, match="utterance ids"):
        write_hypotheses(path, ["u1"], ["a", "b"], ["a", "b"], _raw)


def test_format_results_table() -> None:
    dev = score_corpus(["a b c d"], ["a b c x"], _raw)
    rows = [dev.table_row("baseline", "dev"), {**dev.table_row("dmao", "test-clean"), "wer": 0.1}]
    table = format_results_table(rows)
    assert table.splitlines() == [
        "| system   | split      | WER (%) | CER (%) | #utts | #words |",
        "| -------- | ---------- | ------: | ------: | ----: | -----: |",
        "| baseline | dev        |   25.00 |   25.00 |     1 |      4 |",
        "| dmao     | test-clean |   10.00 |   25.00 |     1 |      4 |",
    ]
    with pytest.raises(KeyError, match="num_words"):
        format_results_table([{"system": "x", "split": "y", "wer": 0, "cer": 0}])


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="1 references but 2 hypotheses"):
        score_corpus(["a"], ["a", "b"], _raw)
