"""``dmao results`` on result.json files as `dmao decode` writes them, old and new."""

from __future__ import annotations

import json

import pytest

from dmao.evaluation.results_table import find_results, format_csv, format_markdown


def _write(folder, wer, **extra):
    folder.mkdir(parents=True)
    counts = {"substitutions": 3, "deletions": 1, "insertions": 2, "ref_len": 100}
    record = {"split": "test", "method": "greedy", "checkpoint": "best.pt", "wer": wer,
              "cer": wer / 2, "num_utterances": 10, "word_counts": counts, **extra}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(record))


def test_runs_are_named_relative_to_the_folder_searched_and_sorted_by_wer(tmp_path):
    exp = tmp_path / "exp"
    # Before result.json named its run: RUN/decode/<split>-<decoder>/, or an --out-dir.
    _write(exp / "a" / "decode" / "test-greedy", 0.20)
    _write(exp / "scored" / "b-test", 0.10, method="beam8", prior={"scale": 0.3})
    _write(exp / "c" / "decode" / "test-greedy", 0.15, run=str(exp / "c"))
    rows = find_results([exp])
    assert [(r.run, r.decoder, r.wer) for r in rows] == [
        ("exp/scored/b-test", "beam8+prior0.3", 10.0),
        ("exp/c", "greedy", 15.0),
        ("exp/a", "greedy", 20.0),
    ]
    table = format_markdown(rows).splitlines()
    assert table[3] == "| exp/c | test | greedy | best.pt | 15.00 | 7.50 | 2 / 1 / 3 | 100 |"


def test_a_foreign_result_json_is_named(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "result.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"other/result.json: not a dmao decode result"):
        find_results([tmp_path])


def test_decodes_with_nbest_lists_show_their_oracle_wer(tmp_path):
    _write(tmp_path / "a", 0.20)
    nbest = {"n": 10, "file": "nbest.txt", "oracle_wer": 0.125}
    _write(tmp_path / "b", 0.15, method="lm-lexicon50", nbest=nbest)
    rows = find_results([tmp_path])
    assert [(r.decoder, r.oracle_wer, r.nbest) for r in rows] == [
        ("lm-lexicon50", 12.5, 10),
        ("greedy", None, None),
    ]
    table = format_markdown(rows).splitlines()
    assert table[0].endswith("| words | N-best oracle WER % |")
    assert table[2].endswith("| 100 | 12.50 (10-best) |") and table[3].endswith("| 100 | – |")
    assert "oracle" not in format_markdown(rows[1:])  # no N-best list: no column
    csv_header = format_csv(rows).splitlines()[0].split(",")
    at = csv_header.index("oracle_wer")
    assert csv_header[at : at + 2] == ["oracle_wer", "nbest"]
