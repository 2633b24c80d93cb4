"""Paired bootstrap of two decodes (dmao significance): no difference for equal decodes, a clear
one found, a one-error one not, intervals as wide as the delta method says, bad input named."""

from __future__ import annotations

import numpy as np
import pytest

from dmao.cli.main import main
from dmao.evaluation.sclite import write_trn
from dmao.evaluation.significance import (
    compare_decodes,
    paired_bootstrap,
    read_paired_decodes,
)


def _errors(rng: np.random.Generator, utterances: int = 300, words: int = 12):
    lengths = rng.integers(4, words + 1, size=utterances)
    return rng.binomial(lengths, 0.2), lengths


def test_equal_decodes_differ_by_nothing():
    errors, lengths = _errors(np.random.default_rng(0))
    r = paired_bootstrap(errors, errors, lengths, resamples=2000)
    assert (r.delta.value, r.delta.low, r.delta.high) == (0.0, 0.0, 0.0)
    assert r.prob_b_better == 0.0 and not r.significant
    assert r.a == r.b and r.a.low < r.a.value < r.a.high


def test_a_clear_improvement_is_found_and_one_error_is_not():
    rng = np.random.default_rng(1)
    a, lengths = _errors(rng)
    fewer = a - (rng.random(a.size) < 0.4) * (a > 0)  # one error less on ~40 % of utterances
    r = paired_bootstrap(a, fewer, lengths, resamples=4000)
    assert r.delta.value < 0 and r.delta.high < 0 and r.significant
    assert r.prob_b_better > 0.99
    worse = paired_bootstrap(fewer, a, lengths, resamples=4000)
    assert worse.delta.low > 0 and worse.significant and worse.prob_b_better < 0.01

    one = a.copy()
    one[0] += 1  # B makes one more error in the whole test set
    r = paired_bootstrap(a, one, lengths, resamples=4000)
    assert r.delta.value > 0 and not r.significant
    assert r.delta.low <= 0 <= r.delta.high


def test_the_interval_is_as_wide_as_the_delta_method_says():
    """For a ratio of sums the delta method gives SE² ≈ Σ (e_i − R n_i)² / (Σ n_i)²; the
    percentile interval spans about 2 · 1.96 SE."""
    rng = np.random.default_rng(2)
    errors, lengths = _errors(rng, utterances=800)
    r = paired_bootstrap(errors, errors, lengths, resamples=10_000)
    ratio = errors.sum() / lengths.sum()
    se = 100 * np.sqrt(((errors - ratio * lengths) ** 2).sum()) / lengths.sum()
    assert (r.a.high - r.a.low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.06)
    assert r.a.value == pytest.approx(100 * ratio)


def test_the_seed_fixes_the_resamples():
    rng = np.random.default_rng(3)
    a, lengths = _errors(rng)
    b, _ = _errors(rng)
    first = paired_bootstrap(a, b, lengths, resamples=1000, seed=5)
    assert paired_bootstrap(a, b, lengths, resamples=1000, seed=5) == first
    assert paired_bootstrap(a, b, lengths, resamples=1000, seed=6).delta != first.delta


def test_inputs_that_cannot_be_compared_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(np.ones(3), np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="references are empty"):
        paired_bootstrap(np.ones(3), np.ones(3), np.zeros(3))


def _decode(folder, refs: dict[str, str], hyps: dict[str, str]):
    write_trn(folder / "ref.trn", refs)
    write_trn(folder / "hyp.trn", hyps)
    return folder


REFS = {f"utt{i:03d}": "the cat sat on the mat today" for i in range(60)}


def test_decode_folders_are_scored_utterance_by_utterance(tmp_path):
    worse = {k: "the cat sat on a hat" if i % 2 else v for i, (k, v) in enumerate(REFS.items())}
    better = {k: "the cat sat on the hat today" for k in REFS}
    a = _decode(tmp_path / "a", REFS, worse)
    b = _decode(tmp_path / "b", dict(reversed(REFS.items())), better)  # order does not matter
    decodes = read_paired_decodes(a, b)
    assert decodes.ids == list(REFS)
    assert decodes.a.word.errors == 30 * 3 and decodes.b.word.errors == 60
    results = compare_decodes(decodes, resamples=1000)
    assert results["WER"].a.value == pytest.approx(100 * 90 / 420)
    assert results["WER"].b.value == pytest.approx(100 * 60 / 420)
    assert results["CER"].b.value < results["CER"].a.value


def test_the_command_prints_the_table_and_the_verdict(tmp_path, capsys):
    hyps = {k: "the cat sat on the mat" for k in REFS}  # one deletion each
    a = _decode(tmp_path / "a", REFS, hyps)
    b = _decode(tmp_path / "b", REFS, REFS)
    assert main(["significance", str(a), str(b), "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert f"| A: {a} | 14.29 | [14.29, 14.29] |" in out
    assert "| B − A (points) | -14.29 |" in out
    assert (
        "WER: B better on 100.0 % of 500 paired resamples of the 60 utterances; B is better " in out
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "no ref.trn or hyp.trn (nor hypotheses.txt); expected a decode folder"),
        ("utterances", "decode other utterances (1 only in A"),
        ("reference", "1 utterances have other reference texts, e.g. utt000"),
        ("resamples", "--resamples: expected at least 100"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, capsys, change, message):
    a = _decode(tmp_path / "a", REFS, REFS)
    refs = dict(REFS)
    if change == "utterances":
        refs.pop("utt000")
    if change == "reference":
        refs["utt000"] = "a dog"
    b = tmp_path / "b" if change == "missing" else _decode(tmp_path / "b", refs, refs)
    extra = ["--resamples", "10"] if change == "resamples" else []
    assert main(["significance", str(a), str(b), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dmao significance: error: ") and message in err
    assert "\n" not in err


def test_the_hypotheses_files_of_archived_decodes_are_read_too(tmp_path):
    """Records of `dmao compare --archive` keep hypotheses.txt, not the trn files."""
    from dmao.evaluation.wer import read_hypotheses, write_hypotheses

    ids = list(REFS)
    refs = [REFS[i] for i in ids]
    worse = ["the cat sat on a hat" if n % 3 == 0 else r for n, r in enumerate(refs)]
    written = write_hypotheses(tmp_path / "a" / "hypotheses.txt", ids, refs, worse)
    write_hypotheses(tmp_path / "b" / "hypotheses.txt", ids, refs, refs)
    assert read_hypotheses(tmp_path / "a" / "hypotheses.txt")["utt000"] == (
        "THE CAT SAT ON THE MAT TODAY",
        "THE CAT SAT ON A HAT",
    )
    decodes = read_paired_decodes(tmp_path / "a", tmp_path / "b")
    assert decodes.a.word.errors == written.word.errors == 20 * 3 and decodes.b.word.errors == 0
    # a folder with trn files only beside one with hypotheses.txt only: no common format
    _decode(tmp_path / "c", REFS, REFS)
    with pytest.raises(FileNotFoundError, match=r"has hypotheses\.txt but no ref\.trn.*no common"):
        read_paired_decodes(tmp_path / "a", tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hypotheses.txt").write_text("id\terrors\tref_words\tref\thyp\nu1\t0\n")
    with pytest.raises(ValueError, match=r"hypotheses.txt:2: expected 5 tab-separated columns"):
        read_paired_decodes(tmp_path / "d", tmp_path / "b")
