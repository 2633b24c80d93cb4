"""End to end on a tiny trained run: `dmao lm build`, `dmao decode --method greedy|lm`, and the
trn/ctm files it writes, re-scored against result.json (and by sclite where installed)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from conftest import tiny_train_overrides, train_tiny_run

from dmao.cli.main import main
from dmao.data.text import normalize_transcript
from dmao.decoding.decode_run import decode_split
from dmao.evaluation.confidence import confidence_quality
from dmao.evaluation.nbest import read_nbest
from dmao.evaluation.sclite import (
    SCLITE_MISSING,
    find_sclite,
    read_ctm,
    read_trn,
    score_with_sclite,
)
from dmao.evaluation.transcripts import score_files
from dmao.evaluation.wer import score_corpus
from dmao.lm.ngram import read_arpa

TRN_LINE = re.compile(r"^(\S+( \S+)*)? ?\((\S+)\)$")


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    """A run trained for a few steps: its outputs are poor, which is all the formats need."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path_factory.mktemp("manifests")),
        "train.max_steps=4",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=4",
    ]
    return train_tiny_run(run_dir, overrides)


@pytest.fixture(scope="module")
def lms(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    word = ["lm", "build", "--from-run", str(run), "--order", "3", "--out", str(out / "w3.arpa")]
    assert main([*word, "--lexicon", str(out / "lexicon.txt")]) == 0
    char = ["lm", "build", "--from-run", str(run), "--unit", "token", "--order", "4"]
    assert main([*char, "--out", str(out / "c4.arpa")]) == 0
    return out


def test_lm_build_from_run_writes_word_and_token_lms(lms, tiny_corpus):
    words = read_arpa(lms / "w3.arpa").vocabulary
    assert {"CAT", "MILL", "<s>", "</s>", "<unk>"} <= set(words)
    assert "|" in read_arpa(lms / "c4.arpa").vocabulary  # the word boundary is a token
    lexicon = (lms / "lexicon.txt").read_text().splitlines()
    assert "CAT\tC A T |" in lexicon


def _decode(run, tmp_path, method, **overrides):
    out = tmp_path / method
    result = decode_split(
        run, "test", method=method, decode_overrides=overrides, out_dir=out, progress_bar=False
    )
    return result, out


def _check_outputs(out, measure: str | None = None) -> None:
    record = json.loads((out / "result.json").read_text())
    ref_lines = (out / "ref.trn").read_text().splitlines()
    hyp_lines = (out / "hyp.trn").read_text().splitlines()
    for lines in (ref_lines, hyp_lines):
        assert all(TRN_LINE.match(line) for line in lines), lines
        ids = [TRN_LINE.match(line)[3] for line in lines]
        assert ids == sorted(ids) and len(ids) == record["num_utterances"]
    refs, hyps = read_trn(out / "ref.trn"), read_trn(out / "hyp.trn")
    assert refs.keys() == hyps.keys()
    # LibriSpeech-layout ids (SPEAKER-CHAPTER-UTT) are already speaker-first: kept as they are.
    tsv = (out / "hypotheses.txt").read_text().splitlines()[1:-1]
    assert set(refs) == {line.split("\t")[0] for line in tsv}
    rescored = score_corpus([refs[i] for i in refs], [hyps[i] for i in refs])
    assert rescored.wer == pytest.approx(record["wer"])
    assert rescored.cer == pytest.approx(record["cer"])
    # `dmao score` on the trn files gives the decode's numbers (same normalisation and aligner).
    scored = score_files(out / "ref.trn", out / "hyp.trn", aligner=record["aligner"]).score
    assert (scored.wer, scored.cer) == (pytest.approx(record["wer"]), pytest.approx(record["cer"]))
    if find_sclite() is not None:
        assert score_with_sclite(out / "ref.trn", out / "hyp.trn").num_words == (
            rescored.word.ref_len
        )
    lines = (out / "hyp.ctm").read_text().splitlines()
    keys = [(line.split()[0], float(line.split()[2])) for line in lines]
    assert keys == sorted(keys)  # by utterance, then start time
    for utt_id, words in read_ctm(out / "hyp.ctm").items():
        assert [w.word for w in words] == hyps[utt_id].split()
        ends = [w.start_s + w.duration_s for w in words]
        assert all(w.duration_s > 0 for w in words)
        assert all(end <= nxt.start_s + 1e-9 for end, nxt in zip(ends, words[1:], strict=False))
    assert set(read_ctm(out / "hyp.ctm")) == {i for i, text in hyps.items() if text}
    # Every word has a confidence; result.json's numbers are those of hyp.ctm against ref.trn.
    ctm = read_ctm(out / "hyp.ctm")
    assert all(len(line.split()) == 6 for line in lines)
    assert all(0.0 <= w.confidence <= 1.0 for words in ctm.values() for w in words)
    ids = sorted(ctm)
    quality = confidence_quality(
        [refs[i] for i in ids],
        [[w.word for w in ctm[i]] for i in ids],
        [[w.confidence for w in ctm[i]] for i in ids],
    )
    recorded = record["word_confidence"]
    aggregation = "mean" if record["method"].startswith("lm") else "min"
    assert recorded["measure"] == (measure or f"entropy(a=1)/{aggregation}")
    assert recorded["num_words"] == quality.num_words == sum(len(w) for w in ctm.values())
    assert recorded["num_wrong"] == quality.num_wrong
    if quality.num_wrong and quality.num_wrong < quality.num_words:
        assert recorded["auc_roc"] == pytest.approx(quality.auc_roc, abs=2e-3)  # CTM: 3 decimals
        assert set(recorded["calibration"]) == {"a", "b"}  # Platt scaling fitted on these words
    else:
        assert recorded["calibration"] is None  # nothing to fit


def test_greedy_decode_writes_consistent_trn_and_ctm(run, tmp_path):
    result, out = _decode(run, tmp_path, "greedy")
    assert result.method == "greedy"
    _check_outputs(out)


def test_beam_decode_writes_trn_and_ctm_from_the_best_path_of_each_hypothesis(run, tmp_path):
    (tmp_path / "beam").mkdir()
    (tmp_path / "beam" / "hyp.ctm").write_text("stale 1 0.00 0.04 A\n")  # an earlier decode's
    _, out = _decode(run, tmp_path, "beam", beam_size=4)
    _check_outputs(out)
    assert "stale" not in (out / "hyp.ctm").read_text()


def test_lm_decode_with_lexicon(run, lms, tmp_path):
    lexicon, lm = str(lms / "lexicon.txt"), str(lms / "w3.arpa")
    result, out = _decode(run, tmp_path, "lm", lm_path=lm, lexicon_path=lexicon, beam_size=8)
    assert result.method == "lm-lexicon8"
    _check_outputs(out)
    known = {line.split("\t")[0] for line in (lms / "lexicon.txt").read_text().splitlines()}
    assert all(set(text.split()) <= known for text in read_trn(out / "hyp.trn").values())
    assert json.loads((out / "result.json").read_text())["lm"]["lexicon_path"] == lexicon


def test_cli_lexicon_free_decode(run, lms, tmp_path, capsys):
    out = tmp_path / "lexfree"
    args = ["decode", str(run), "--split", "test", "--method", "lm", "--lm", str(lms / "c4.arpa")]
    args += ["--lm-weight", "0.3", "--out-dir", str(out), "--confidence-measure", "max_prob"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "lm-lexfree8" in printed
    assert "ref.trn hyp.trn hyp.ctm" in printed
    _check_outputs(out, measure="max_prob/mean")  # the LM search's default aggregation


def test_cli_refuses_lm_options_without_lm_method(run, lms, capsys):
    assert main(["decode", str(run), "--method", "greedy", "--lm-weight", "2"]) == 2
    assert "apply to --method lm only" in capsys.readouterr().err


@pytest.mark.skipif(find_sclite() is None, reason=SCLITE_MISSING)
def test_sclite_agrees_with_result_json(run, tmp_path):
    _, out = _decode(run, tmp_path, "greedy")
    record = json.loads((out / "result.json").read_text())
    assert score_with_sclite(out / "ref.trn", out / "hyp.trn").wer == pytest.approx(record["wer"])


def test_results_tabulates_every_decode_below_the_folders(run, tmp_path, capsys):
    greedy, _ = _decode(run, tmp_path, "greedy")
    beam, _ = _decode(run, tmp_path, "beam", beam_size=4)
    assert main(["results", str(tmp_path)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    by_decoder = {row[2]: row for row in rows}
    assert set(by_decoder) == {"greedy", "beam4"}
    for result in (greedy, beam):
        row = by_decoder[result.method]
        # The run lies outside the folder searched (decoded with --out-dir): its path in full.
        assert row[0] == f"| {run}" and row[1] == "test" and row[3] == result.checkpoint
        assert float(row[4]) == pytest.approx(100 * result.score.wer, abs=0.005)
        assert float(row[5]) == pytest.approx(100 * result.score.cer, abs=0.005)
        word = result.score.word
        assert row[6] == f"{word.insertions} / {word.deletions} / {word.substitutions}"
    assert [float(row[4]) for row in rows] == sorted(float(row[4]) for row in rows)
    assert main(["results", str(tmp_path), "--csv", "--split", "dev"]) == 2
    assert "no decode results (result.json)" in capsys.readouterr().err


def test_results_against_a_reference_decode_pairs_the_same_utterances(run, tmp_path, capsys):
    greedy, greedy_dir = _decode(run, tmp_path, "greedy")
    beam, beam_dir = _decode(run, tmp_path, "beam", beam_size=4)
    assert main(["results", str(tmp_path), "--against", str(greedy_dir), "--csv"]) == 0
    rows = {row["decoder"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["greedy"]["reference"] == "True" and float(rows["greedy"]["delta_wer"]) == 0
    delta = 100 * (beam.score.wer - greedy.score.wer)
    assert float(rows["beam4"]["delta_wer"]) == pytest.approx(delta)
    low, high = float(rows["beam4"]["delta_low"]), float(rows["beam4"]["delta_high"])
    assert low <= delta <= high and 0 <= float(rows["beam4"]["prob_better"]) <= 1
    # the same comparison as dmao significance (its table's B − A row)
    assert main(["significance", str(greedy_dir), str(beam_dir)]) == 0
    assert f"| B − A (points) | {delta:+.2f} |" in capsys.readouterr().out
    assert main(["results", str(tmp_path), "--against", str(tmp_path)]) == 2
    assert "no hypotheses.txt, nor ref.trn and hyp.trn" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["beam", "lm"])
def test_nbest_lists_start_with_the_decoded_hypothesis(run, lms, tmp_path, method):
    lm = {"lm_path": str(lms / "w3.arpa"), "lexicon_path": str(lms / "lexicon.txt")}
    settings = {"beam_size": 8, **(lm if method == "lm" else {})}
    result = decode_split(
        run, "test", method=method, decode_overrides=settings, out_dir=tmp_path / "n",
        nbest=5, progress_bar=False,
    )  # fmt: skip
    lists = read_nbest(tmp_path / "n" / "nbest.txt")
    hyps = {}
    for line in (tmp_path / "n" / "hypotheses.txt").read_text().splitlines()[1:-1]:
        fields = line.split("\t")  # id, errors, ref_words, ref, hyp (normalised)
        hyps[fields[0]] = fields[4]
    assert set(lists) == set(hyps)
    for utt, nbest in lists.items():
        assert 1 <= len(nbest) <= 5
        assert normalize_transcript(nbest[0][0]) == hyps[utt]  # rank 1: what the decode chose
        assert len({text for text, _ in nbest}) == len(nbest)  # different texts
        assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)
    assert max(len(n) for n in lists.values()) > 1  # the beam held alternatives
    record = json.loads((tmp_path / "n" / "result.json").read_text())["nbest"]
    assert record["n"] == 5 and record["oracle_wer"] == result.oracle.wer
    assert result.oracle.wer <= result.score.wer
    # A 1-best list's oracle is the decode itself.
    one = decode_split(
        run, "test", method=method, decode_overrides=settings, out_dir=tmp_path / "one",
        nbest=1, progress_bar=False,
    )  # fmt: skip
    assert one.oracle.word == one.score.word


def test_greedy_search_has_no_nbest(run, capsys):
    with pytest.raises(ValueError, match="N-best needs --method beam or lm"):
        decode_split(run, "test", method="greedy", nbest=3, progress_bar=False)
    assert main(["decode", str(run), "--method", "greedy", "--nbest", "-1"]) == 2
    assert "--nbest must be >= 0" in capsys.readouterr().err
