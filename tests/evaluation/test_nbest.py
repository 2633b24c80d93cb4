"""N-best lists: the oracle WER (the best hypothesis of each list, counted by hand here) and the
nbest.txt file format."""

from __future__ import annotations

import pytest

from dmao.evaluation.nbest import oracle_score, read_nbest, write_nbest


def test_oracle_takes_the_fewest_errors_of_each_list():
    refs = ["A B C D", "X Y", "P Q"]
    nbests = [
        [("A B E D", -1.0), ("A B C", -2.0), ("A B C D", -3.0)],  # 1, 1, 0 errors → rank 3
        [("x y", -0.5), ("X", -0.7)],  # normalised like every score: 0 errors → rank 1
        [("P R", -0.1), ("S Q", -0.2)],  # 1 and 1: the tie goes to the higher rank
    ]
    oracle = oracle_score(refs, nbests)
    assert oracle.chosen_ranks == (3, 1, 1)
    assert (oracle.word.errors, oracle.word.ref_len) == (1, 8)
    assert oracle.word.substitutions == 1
    assert oracle.wer == pytest.approx(1 / 8)
    assert oracle.mean_length == pytest.approx(7 / 3)


def test_refusals():
    with pytest.raises(ValueError, match="2 references but 1 N-best lists"):
        oracle_score(["A", "B"], [[("A", 0.0)]])
    with pytest.raises(ValueError, match="N-best list 1 is empty"):
        oracle_score(["A", "B"], [[("A", 0.0)], []])


def test_file_round_trip_keeps_order_scores_and_texts(tmp_path):
    lists = [[("THE CAT", -1.25), ("THE CAB", -2.5)], [("", -0.125)]]
    write_nbest(tmp_path / "nbest.txt", ["u1", "u2"], lists)
    lines = (tmp_path / "nbest.txt").read_text().splitlines()
    assert lines == ["id\trank\tscore\ttext", "u1\t1\t-1.2500\tTHE CAT", "u1\t2\t-2.5000\tTHE CAB",
                     "u2\t1\t-0.1250\t"]  # fmt: skip
    assert read_nbest(tmp_path / "nbest.txt") == {"u1": lists[0], "u2": lists[1]}
