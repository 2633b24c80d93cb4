"""sclite trn/ctm writers and readers, and sclite itself where SCTK is installed."""

from __future__ import annotations

import re

import pytest

from dmao.decoding.timing import WordTiming
from dmao.evaluation.sclite import (
    SCLITE_MISSING,
    find_sclite,
    read_ctm,
    read_trn,
    score_with_sclite,
    trn_id,
    write_ctm,
    write_trn,
)
from dmao.evaluation.wer import score_corpus

REFS = {
    "61-70968-0002": "THE CAT SAT ON THE MAT",
    "61-70968-0000": "A DOG RAN HOME",
    "84-121123-0001": "GREEN HILLS ROLL",
    "84-121123-0003": "BIRDS SING",
}
HYPS = {
    "61-70968-0002": "THE CAT SAT ON A MAT MAT",
    "61-70968-0000": "A DOG RAN",
    "84-121123-0001": "",
    "84-121123-0003": "BIRDS SING",
}
TRN_LINE = re.compile(r"^(\S+( \S+)*)? ?\((\S+)\)$")


def test_trn_files_are_sorted_and_round_trip(tmp_path):
    write_trn(tmp_path / "ref.trn", REFS)
    lines = (tmp_path / "ref.trn").read_text().splitlines()
    assert all(TRN_LINE.match(line) for line in lines)
    ids = [TRN_LINE.match(line)[3] for line in lines]
    assert ids == sorted(REFS)
    assert read_trn(tmp_path / "ref.trn") == REFS
    write_trn(tmp_path / "hyp.trn", HYPS)
    assert " (84-121123-0001)" in (tmp_path / "hyp.trn").read_text().splitlines()
    assert read_trn(tmp_path / "hyp.trn") == HYPS


def test_trn_ids_carry_the_speaker():
    assert trn_id("61-70968-0002", "61") == "61-70968-0002"
    assert trn_id("utt7", "spk3") == "spk3-utt7"
    assert trn_id("utt7") == "utt7"
    with pytest.raises(ValueError, match="trn id"):
        trn_id("a (b)")


def test_bad_trn_lines_name_file_and_line(tmp_path):
    (tmp_path / "x.trn").write_text("A B (u1)\nno id here\n")
    with pytest.raises(ValueError, match=r"x\.trn:2"):
        read_trn(tmp_path / "x.trn")
    (tmp_path / "y.trn").write_text("A (u1)\nB (u1)\n")
    with pytest.raises(ValueError, match="twice"):
        read_trn(tmp_path / "y.trn")


def test_ctm_is_sorted_by_utterance_and_time(tmp_path):
    timings = {
        "u2": [WordTiming("CAT", 0.52, 0.2), WordTiming("THE", 0.12, 0.16)],
        "u1": [WordTiming("A", 0.0, 0.04)],
        "u3": [],
    }
    write_ctm(tmp_path / "h.ctm", timings)
    lines = (tmp_path / "h.ctm").read_text().splitlines()
    assert lines == ["u1 A 0.00 0.04 A", "u2 A 0.12 0.16 THE", "u2 A 0.52 0.20 CAT"]
    back = read_ctm(tmp_path / "h.ctm")
    assert [w.word for w in back["u2"]] == ["THE", "CAT"]
    with pytest.raises(ValueError, match="invalid span"):
        write_ctm(tmp_path / "bad.ctm", {"u1": [WordTiming("A", 0.1, 0.0)]})


def test_ctm_confidence_is_a_sixth_field_read_back(tmp_path):
    timings = {"u1": [WordTiming("A", 0.0, 0.04, 0.91234), WordTiming("B", 0.08, 0.04)]}
    write_ctm(tmp_path / "c.ctm", timings)
    lines = (tmp_path / "c.ctm").read_text().splitlines()
    assert lines == ["u1 A 0.00 0.04 A 0.912", "u1 A 0.08 0.04 B"]
    back = read_ctm(tmp_path / "c.ctm")["u1"]
    assert [w.confidence for w in back] == [0.912, None]


@pytest.mark.skipif(find_sclite() is None, reason=SCLITE_MISSING)
def test_sclite_counts_the_errors_of_our_sclite_alignment(tmp_path):
    # Per-utterance parity on high-error pairs: tests/evaluation/test_sclite_align.py.
    write_trn(tmp_path / "ref.trn", REFS)
    write_trn(tmp_path / "hyp.trn", HYPS)
    refs, hyps = [REFS[i] for i in sorted(REFS)], [HYPS[i] for i in sorted(REFS)]
    ours = score_corpus(refs, hyps, aligner="sclite")
    theirs = score_with_sclite(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    assert (theirs.num_sentences, theirs.num_words) == (4, ours.word.ref_len)
    assert (theirs.substitutions, theirs.deletions, theirs.insertions) == (
        ours.word.substitutions,
        ours.word.deletions,
        ours.word.insertions,
    )
    assert theirs.sentence_errors == ours.num_sentence_errors
    assert theirs.wer == pytest.approx(ours.wer)


@pytest.mark.skipif(find_sclite() is None, reason=SCLITE_MISSING)
def test_missing_trn_file_is_a_clear_error(tmp_path):
    write_trn(tmp_path / "ref.trn", REFS)
    with pytest.raises(FileNotFoundError, match=r"none\.trn does not exist"):
        score_with_sclite(tmp_path / "ref.trn", tmp_path / "none.trn")


def test_missing_sclite_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_sclite() is None
    with pytest.raises(FileNotFoundError, match="apt-get install sctk"):
        score_with_sclite(tmp_path / "a.trn", tmp_path / "b.trn")
