"""`dmao tune`: one forward pass of the dev split, every grid point searched and scored on it —
each point's WER is what `dmao decode` gives with that point's settings — then the best point
decodes the test split once."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from dmao.cli.main import main
from dmao.decoding.decode_run import decode_split
from dmao.decoding.tune import check_grid, tune_split


@pytest.fixture(scope="module")
def run(tiny_dmao_run, tmp_path_factory):
    """A copy of the 60-step run (its decodes are written into the run folder)."""
    root = tmp_path_factory.mktemp("tune")
    shutil.copytree(tiny_dmao_run.parent, root, dirs_exist_ok=True)
    return root / "run"


@pytest.fixture(scope="module")
def lms(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    word = ["lm", "build", "--from-run", str(run), "--order", "3", "--out", str(out / "w3.arpa")]
    assert main([*word, "--lexicon", str(out / "lexicon.txt")]) == 0
    return {"lm_path": str(out / "w3.arpa"), "lexicon_path": str(out / "lexicon.txt")}


def test_each_point_scores_what_decode_gives(run, lms, tmp_path):
    grid = {"lm_weight": [0.0, 1.5], "word_score": [-2.0, 1.0]}
    result = tune_split(run, "dev", grid, method="lm", decode_overrides=lms, progress_bar=False)
    assert [t.settings for t in result.trials] == [
        {"lm_weight": 0.0, "word_score": -2.0},
        {"lm_weight": 0.0, "word_score": 1.0},
        {"lm_weight": 1.5, "word_score": -2.0},
        {"lm_weight": 1.5, "word_score": 1.0},
    ]
    for i, trial in enumerate(result.trials):
        decoded = decode_split(
            run,
            "dev",
            method="lm",
            decode_overrides={**lms, **trial.settings},
            out_dir=tmp_path / f"point{i}",
            progress_bar=False,
        )
        assert (trial.wer, trial.cer) == (decoded.score.wer, decoded.score.cer)
        assert (trial.word_errors, trial.ref_words) == (
            decoded.score.word.errors,
            decoded.score.word.ref_len,
        )
    assert result.best == min(result.trials, key=lambda t: (t.wer, t.cer))
    assert len({(t.wer, t.cer) for t in result.trials}) > 1  # the settings change the output

    result.write(tmp_path / "out")
    with open(tmp_path / "out" / "grid.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["wer"]) for r in rows] == [t.wer for t in result.trials]
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["settings"] == result.best.settings and best["points"] == 4
    assert best["fixed"]["lexicon_path"] == lms["lexicon_path"]
    flags = result.decode_flags()
    assert flags == ["--lm-weight", f"{result.best.settings['lm_weight']:g}", "--word-score",
                     f"{result.best.settings['word_score']:g}"]  # fmt: skip


def test_prior_scales_of_a_greedy_search(run, tmp_path):
    grid = {"prior_scale": [0.0, 0.8]}
    result = tune_split(run, "dev", grid, method="greedy", progress_bar=False)
    for trial in result.trials:
        decoded = decode_split(
            run,
            "dev",
            method="greedy",
            prior_scale=trial.settings["prior_scale"],
            out_dir=tmp_path / str(trial.settings["prior_scale"]),
            progress_bar=False,
        )
        assert (trial.wer, trial.cer) == (decoded.score.wer, decoded.score.cer)


@pytest.mark.parametrize(
    ("grid", "method", "lexicon", "message"),
    [
        ({}, "lm", True, "nothing to tune"),
        ({"beam_size": [4]}, "lm", True, "cannot tune 'beam_size'"),
        ({"lm_weight": []}, "lm", True, "--lm-weight: no values"),
        ({"lm_weight": [1.0]}, "greedy", False, "--lm-weight applies to --method lm only"),
        ({"word_score": [0.0]}, "lm", False, "--word-score applies with a lexicon only"),
        ({"prior_scale": [-0.1]}, "beam", False, "--prior-scale values must be >= 0"),
    ],
)
def test_grids_that_cannot_be_searched_are_refused(grid, method, lexicon, message):
    with pytest.raises(ValueError, match=message):
        check_grid(grid, method, lexicon)


def test_cli_tunes_on_dev_and_reports_test(run, lms, capsys):
    lm = ["--method", "lm", "--lm", lms["lm_path"], "--lexicon", lms["lexicon_path"]]
    argv = ["tune", str(run), "--split", "dev", "--test", "test", *lm]
    assert main([*argv, "--lm-weight", "0", "1.5", "--word-score", "-2", "1"]) == 0
    out = capsys.readouterr().out
    assert "tuning on dev: 4 points (lm_weight 2 × word_score 2)" in out
    best = json.loads((run / "tune" / "dev-lm-lexicon8" / "best.json").read_text())
    assert f"best on dev: {' '.join(best['decode_flags'])}" in out
    # dev decoded with the best setting (for `dmao export --lm-from`): the WER the grid found
    dev = json.loads((run / "decode" / "dev-lm" / "result.json").read_text())
    assert dev["wer"] == best["wer"]
    assert f"--lm-from {run / 'decode' / 'dev-lm'}" in out
    # test decoded once, with the best dev setting
    record = json.loads((run / "decode" / "test-lm" / "result.json").read_text())
    assert record["split"] == "test"
    assert {k: record["lm"][k] for k in best["settings"]} == best["settings"]
    assert f"test (lm-lexicon8, {' '.join(best['decode_flags'])}): WER" in out
    # the grid is written and shown before the best point decodes anything
    assert out.index("best on dev:") < out.index("dev (lm-lexicon8, --") < out.index("test (lm-")

    assert main(["tune", str(run), "--split", "dev", "--test", "dev", *lm, "--lm-weight", "1"]) == 2
    assert "the split tuned on cannot also be the one reported" in capsys.readouterr().err
    assert main(["tune", str(run), "--split", "dev", "--lm-weight", "1"]) == 2
    assert "--lm-weight applies to --method lm only" in capsys.readouterr().err


def test_best_point_decodes_the_tuned_split_from_its_own_posteriors(run, monkeypatch):
    """The tuned split's decode with the best point reuses the grid's forward pass: one forward
    pass per split (dev, then test), and the written dev WER is the grid's best."""
    from dmao.decoding.run_loading import LoadedForDecoding

    forwarded = []
    real = LoadedForDecoding.posteriors

    def counted(self, split, **kwargs):
        forwarded.append(split)
        return real(self, split, **kwargs)

    monkeypatch.setattr(LoadedForDecoding, "posteriors", counted)
    grid = {"prior_scale": [0.0, 0.5, 1.0]}
    result = tune_split(
        run, "dev", grid, method="greedy", decode_best=True, test=["test"], progress_bar=False
    )
    assert forwarded == ["dev", "test"]
    dev, test = result.decodes
    assert (dev.split, test.split) == ("dev", "test")
    assert (dev.score.wer, dev.score.cer) == (result.best.wer, result.best.cer)
    record = json.loads((dev.hypotheses_path.parent / "result.json").read_text())
    assert record["wer"] == result.best.wer
    assert record.get("prior", {}).get("scale", 0.0) == result.best.settings["prior_scale"]
    with pytest.raises(ValueError, match="cannot also be the one reported"):
        tune_split(run, "dev", grid, method="greedy", decode_best=True, test=["dev"])
