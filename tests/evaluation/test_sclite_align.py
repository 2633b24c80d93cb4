"""sclite's weighted alignment: hand cases, and utterance-by-utterance parity with the real
``sclite`` (Debian ``sctk``) on random high-error pairs where kaldialign counts differently."""

from __future__ import annotations

import random
import re
import subprocess

import kaldialign
import pytest

from dmao.evaluation import count_errors, score_corpus
from dmao.evaluation.sclite import (
    SCLITE_MISSING,
    find_sclite,
    sclite_utterance_counts,
    score_with_sclite,
    write_trn,
)
from dmao.evaluation.sclite_align import sclite_alignment, sclite_edit_counts

needs_sclite = pytest.mark.skipif(find_sclite() is None, reason=SCLITE_MISSING)

# Found by a random search: the plain edit distance is 4 (3 substitutions, 1 deletion), while
# sclite's cheapest alignment (cost 15 = 3 deletions + 2 insertions, tied with 3 × 4 + 3) is
# reported with 5 errors, as the sclite binary does.
HIGH_ERROR_REF = "A A CAT A BIG"
HIGH_ERROR_HYP = "CAT BIG DOG A"


def _raw(text: str) -> str:
    return text


def test_weighted_costs_prefer_insertion_plus_deletion_to_two_substitutions() -> None:
    # A B C -> D A E: three substitutions cost 12, insertion + substitution + deletion 10.
    assert sclite_alignment("ABC", "DAE") == [(None, "D"), ("A", "A"), ("B", None), ("C", "E")]
    assert sclite_edit_counts("ABC", "DAE") == (1, 1, 1)


def test_sclite_can_count_more_errors_than_the_edit_distance() -> None:
    ref, hyp = HIGH_ERROR_REF.split(), HIGH_ERROR_HYP.split()
    ours = count_errors(ref, hyp, aligner="sclite")
    plain = count_errors(ref, hyp)
    assert (ours.substitutions, ours.deletions, ours.insertions) == (0, 3, 2)
    assert (plain.substitutions, plain.deletions, plain.insertions) == (3, 1, 0)
    result = score_corpus([HIGH_ERROR_REF], [HIGH_ERROR_HYP], _raw, aligner="sclite")
    assert result.aligner == "sclite" and result.word.errors == 5 and result.wer == 1.0


def test_ties_are_broken_as_sclite_does() -> None:
    # sclite -c on HELLO / HELO prints "h e L l o" over "h e * l o": the first L is deleted.
    assert sclite_alignment("HELLO", "HELO") == [
        ("H", "H"),
        ("E", "E"),
        ("L", None),
        ("L", "L"),
        ("O", "O"),
    ]


def test_edge_cases() -> None:
    assert sclite_alignment([], []) == []
    assert sclite_alignment(["A"], []) == [("A", None)]
    assert sclite_alignment([], ["A", "B"]) == [(None, "A"), (None, "B")]
    assert sclite_edit_counts(["A", "B"], ["A", "B"]) == (0, 0, 0)
    with pytest.raises(ValueError, match="aligner must be one of"):
        count_errors(["A"], ["B"], aligner="jiwer")


def _random_pairs(seed: int, count: int, vocab: list[str], max_len: int) -> tuple[dict, dict]:
    """``count`` reference/hypothesis pairs drawn independently from a small vocabulary: most
    words are errors, so many alignments are tied and the aligners' choices show."""
    rng = random.Random(seed)
    refs, hyps = {}, {}
    for index in range(count):
        utt_id = f"spk{index % 7}-utt{index:04d}"
        refs[utt_id] = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, max_len)))
        hyps[utt_id] = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, max_len)))
    refs["spk0-hand"], hyps["spk0-hand"] = HIGH_ERROR_REF, HIGH_ERROR_HYP
    return refs, hyps


_PRA_BLOCK = re.compile(r"^id: \((\S+)\)\nScores:[^\n]*\nREF: ([^\n]*)\nHYP: ([^\n]*)$", re.M)


def _sclite_alignments(ref_trn, hyp_trn) -> dict[str, list[tuple[str | None, str | None]]]:
    """The REF/HYP lines of sclite's ``pra`` report, as (ref word, hyp word) pairs."""
    command = [*find_sclite(), "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn"]
    out = subprocess.run(
        [*command, "-i", "rm", "-o", "pra", "stdout"], capture_output=True, text=True, check=True
    ).stdout
    alignments = {}
    for utt_id, ref_line, hyp_line in _PRA_BLOCK.findall(out):

        def word(token: str) -> str | None:
            return None if set(token) == {"*"} else token.upper()  # correct words print lower

        alignments[utt_id] = [
            (word(r), word(h)) for r, h in zip(ref_line.split(), hyp_line.split(), strict=True)
        ]
    return alignments


@needs_sclite
@pytest.mark.parametrize("characters", [False, True], ids=["words", "characters"])
def test_counts_equal_the_sclite_binary_per_utterance(tmp_path, characters) -> None:
    vocab = ["A", "BIG", "CAT", "DOG", "EATS"] if not characters else ["AB", "BA", "C", "ABC"]
    refs, hyps = _random_pairs(seed=1 + characters, count=600, vocab=vocab, max_len=10)
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    theirs = sclite_utterance_counts(
        tmp_path / "ref.trn", tmp_path / "hyp.trn", characters=characters
    )
    assert set(theirs) == set(refs)
    kaldialign_differs = 0
    for utt_id in refs:
        ref, hyp = refs[utt_id].split(), hyps[utt_id].split()
        if characters:
            ref, hyp = "".join(ref), "".join(hyp)
        ours = count_errors(ref, hyp, aligner="sclite")
        correct = len(ref) - ours.substitutions - ours.deletions
        expected = (correct, ours.substitutions, ours.deletions, ours.insertions)
        assert theirs[utt_id] == expected, (utt_id, refs[utt_id], hyps[utt_id])
        plain = kaldialign.edit_distance(ref, hyp)
        kaldialign_differs += (plain["sub"], plain["del"], plain["ins"]) != expected[1:]
    # The pairs do exercise the difference: the unit-cost counts differ on some of them.
    assert kaldialign_differs >= 10
    # And the corpus totals of score_corpus equal sclite's summary.
    ids = sorted(refs)
    ours = score_corpus([refs[i] for i in ids], [hyps[i] for i in ids], _raw, aligner="sclite")
    summary = score_with_sclite(tmp_path / "ref.trn", tmp_path / "hyp.trn", characters=characters)
    counts = ours.char if characters else ours.word
    assert (summary.substitutions, summary.deletions, summary.insertions) == (
        counts.substitutions,
        counts.deletions,
        counts.insertions,
    )
    assert summary.num_words == counts.ref_len


@needs_sclite
def test_alignments_equal_the_sclite_binary(tmp_path) -> None:
    refs, hyps = _random_pairs(seed=3, count=400, vocab=["A", "BIG", "CAT", "DOG"], max_len=9)
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    theirs = _sclite_alignments(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    compared = 0
    for utt_id, alignment in theirs.items():
        assert alignment == sclite_alignment(refs[utt_id].split(), hyps[utt_id].split()), utt_id
        compared += 1
    assert compared >= 390  # sclite prints no REF/HYP lines for an empty pair
