"""Speed perturbation (``data.speed_perturb``): cached copies of the training parts at other
speeds, on the tiny real corpus, and through a training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_train_overrides

from dmao.cli.main import main
from dmao.config import load_config
from dmao.data.manifests import cut_transcript, cuts_path, load_cuts
from dmao.data.pipeline import prepare_parts
from dmao.data.speed_perturb import check_speed_factors, speed_perturbed
from dmao.training.checkpoint import CheckpointError
from dmao.training.data_setup import check_resume_compatible


def test_copies_last_one_over_f_as_long_keep_the_transcript_and_are_cached(tiny_corpus, tmp_path):
    overrides = tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests")
    config = load_config(None, [*overrides, "data.speed_perturb=[0.9, 1.1]"]).data
    copies = speed_perturbed(config, prepare_parts(config, ["train"], num_jobs=1), num_jobs=1)
    originals = {cut.id: cut for cut in load_cuts(config.manifest_dir, "train")}
    assert len(copies) == 2 * len(originals)
    for factor in (0.9, 1.1):
        cached = cuts_path(config.manifest_dir, f"train_sp{factor}")
        assert cached.is_file()
        for cut in load_cuts(config.manifest_dir, f"train_sp{factor}"):
            original = originals[cut.id.removesuffix(f"_sp{factor}")]
            assert cut.id == f"{original.id}_sp{factor}"
            assert cut.duration == pytest.approx(original.duration / factor, abs=1e-3)
            assert cut.has_features and abs(cut.num_frames - original.num_frames / factor) <= 2
            assert cut_transcript(cut) == cut_transcript(original)
    # The copies' features are computed from the perturbed audio, not copied.
    cut = next(iter(copies))
    original = originals[cut.id.rsplit("_sp", 1)[0]]
    assert cut.load_features().shape[0] != original.load_features().shape[0]
    assert all(cut.has_features for cut in originals.values())  # the originals keep theirs
    # A second call loads the cached copies: no archive is rewritten.
    archives = {p: p.stat().st_mtime_ns for p in Path(config.manifest_dir).glob("*sp*")}
    assert archives
    again = speed_perturbed(config, prepare_parts(config, ["train"], num_jobs=1), num_jobs=1)
    assert [c.id for c in again] == [c.id for c in copies]
    assert {p: p.stat().st_mtime_ns for p in Path(config.manifest_dir).glob("*sp*")} == archives
    first = next(iter(again))
    np.testing.assert_array_equal(first.load_features(), next(iter(copies)).load_features())


@pytest.mark.parametrize("factors", [[1.0], [0.9, 0.9], [0.0], [3.0], ["fast"], [True]])
def test_bad_factors_name_the_setting(factors):
    with pytest.raises(ValueError, match=r"data\.speed_perturb: expected distinct speed factors"):
        check_speed_factors(factors)


def test_training_filters_and_trains_on_originals_and_copies(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    overrides = tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests")
    args = [*overrides, "data.speed_perturb=[0.9, 1.1]", "train.max_steps=2"]
    assert main(["train", "--out", str(run), *args]) == 0
    report = json.loads((run / "data_report.json").read_text())
    originals = load_cuts(tmp_path / "manifests", "train")
    assert report["train"]["num_input"] == 3 * len(originals)
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 2


def test_resuming_with_other_factors_is_refused_and_an_older_checkpoint_is_not(tmp_path):
    saved = {"data": {"train_parts": ["train"], "speed_perturb": [0.9, 1.1]}}
    with pytest.raises(CheckpointError, match=r"data\.speed_perturb: checkpoint \[0\.9, 1\.1\]"):
        check_resume_compatible(saved, {"data": {"train_parts": ["train"]}}, tmp_path)
    older = {"data": {"train_parts": ["train"]}}  # written before the setting existed
    check_resume_compatible(
        older, {"data": {"train_parts": ["train"], "speed_perturb": []}}, tmp_path
    )


def test_prepare_caches_the_copies_that_training_then_loads(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "manifests"
    args = ["prepare", "librispeech", "--corpus-dir", str(tiny_corpus.root), "--out", str(out)]
    assert (
        main([*args, "--parts", "train", "dev", "--speed-perturb", "1.1", "--num-jobs", "1"]) == 0
    )
    originals = load_cuts(out, "train")
    assert f"train_sp1.1: {len(originals)} utterances" in capsys.readouterr().out
    assert cuts_path(out, "train_sp1.1").is_file() and not cuts_path(out, "dev_sp1.1").exists()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*sp1.1*")}
    overrides = tiny_train_overrides(tiny_corpus.root, out)
    config = load_config(None, [*overrides, "data.speed_perturb=[1.1]"]).data
    assert len(
        speed_perturbed(config, prepare_parts(config, ["train"], num_jobs=1), num_jobs=1)
    ) == len(originals)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*sp1.1*")} == stamps  # loaded, not redone
