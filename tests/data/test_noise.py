"""Additive noise (``data.noise_dir``): windows of every noise file with cached features, bad
noise files named, the mix seeded by the batch, and a run with noise that resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import assert_same_training, rewind_run, tiny_train_overrides, train_recipe

from dmao.config import load_config
from dmao.config.schema import DataConfig
from dmao.data.manifests import cuts_path
from dmao.data.noise import NoiseMixer, check_noise_settings, noise_part, prepare_noise
from dmao.training.checkpoint import CheckpointError
from dmao.training.data_setup import check_resume_compatible
from dmao.training.metrics import read_metrics

RATE = 16000


def _write(path, seconds, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    sf.write(path, samples.astype(np.float32), RATE)


def _data(tmp_path, noise_dir, **settings) -> DataConfig:
    return DataConfig(
        manifest_dir=str(tmp_path / "manifests"), noise_dir=str(noise_dir), **settings
    )


def test_every_file_is_cut_into_windows_with_features_cached_once(tmp_path):
    noise = tmp_path / "musan"
    _write(noise / "noise" / "a.wav", 25.0)
    _write(noise / "music" / "b.flac", 3.0, seed=1)
    _write(noise / "c.wav", 0.5, seed=2)  # shorter than a window may be: not used
    _write(noise / "noise" / "a.flac", 1.5, seed=3)  # same name, another file
    (noise / "README").write_text("not audio")
    cuts = prepare_noise(_data(tmp_path, noise), num_jobs=1)
    assert [(c.id, c.duration) for c in cuts] == [
        ("music/b.flac-0000000", 3.0),
        ("noise/a.flac-0000000", 1.5),
        ("noise/a.wav-0000000", 10.0),
        ("noise/a.wav-0001000", 10.0),
        ("noise/a.wav-0002000", 5.0),
    ]
    assert all(c.has_features and abs(c.num_frames - 100 * c.duration) <= 1 for c in cuts)
    # the windows are the file's audio, in order
    a = sf.read(noise / "noise" / "a.wav", dtype="float32")[0]
    np.testing.assert_allclose(cuts[3].load_audio()[0], a[10 * RATE : 20 * RATE], atol=1e-4)

    cached = cuts_path(tmp_path / "manifests", noise_part(noise))
    mtime = cached.stat().st_mtime_ns
    again = prepare_noise(_data(tmp_path, noise), num_jobs=1)
    assert cached.stat().st_mtime_ns == mtime and list(again.ids) == list(cuts.ids)
    assert noise_part(noise) != noise_part(tmp_path / "other")


def test_a_bad_noise_file_is_named_and_skip_mode_leaves_it_out(tmp_path):
    noise = tmp_path / "noise"
    _write(noise / "a.wav", 12.0)
    (noise / "broken.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="broken"):
        prepare_noise(_data(tmp_path, noise), num_jobs=1)
    assert not cuts_path(tmp_path / "manifests", noise_part(noise)).exists()

    data = _data(tmp_path, noise, bad_audio="skip", max_bad_audio_fraction=0.5)
    cuts = prepare_noise(data, num_jobs=1)
    assert [c.id for c in cuts] == ["a.wav-0000000", "a.wav-0001000"]
    report = json.loads((tmp_path / "manifests" / "bad_audio.json").read_text())
    assert "broken" in json.dumps(report) and "empty_file" in json.dumps(report)


def test_settings_and_folders_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data\.noise_prob"):
        check_noise_settings(1.5, [10, 20])
    with pytest.raises(ValueError, match=r"data\.noise_snr"):
        check_noise_settings(0.5, [20, 10])
    with pytest.raises(ValueError, match=r"data\.noise_snr"):
        check_noise_settings(0.5, [10])
    assert check_noise_settings(0.5, [0, 5]) == (0.0, 5.0)
    with pytest.raises(ValueError, match="is not a folder"):
        prepare_noise(_data(tmp_path, tmp_path / "missing"), num_jobs=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        prepare_noise(_data(tmp_path, tmp_path / "empty"), num_jobs=1)


def _features(cuts):
    return [torch.as_tensor(c.load_features()) for c in cuts]


def test_the_mix_is_seeded_by_the_batch_and_louder_noise_changes_more(tiny_cuts, tmp_path):
    noise_dir = tmp_path / "noise"
    _write(noise_dir / "a.wav", 30.0)
    noise = prepare_noise(_data(tmp_path, noise_dir), num_jobs=1)
    cuts = tiny_cuts["train"].subset(first=4)
    clean = _features(cuts)

    loud = NoiseMixer(noise, prob=1.0, snr=(0.0, 0.0))
    first, again, other = loud(cuts, 7), loud(cuts, 7), loud(cuts, 8)
    assert list(first.ids) == list(cuts.ids)
    assert [c.duration for c in first] == [c.duration for c in cuts]
    assert [c.supervisions[0].text for c in first] == [c.supervisions[0].text for c in cuts]
    for x, y, z, c in zip(_features(first), _features(again), _features(other), clean, strict=True):
        assert x.shape == c.shape
        assert torch.equal(x, y)  # same batch, same seed: the same mix
        assert not torch.equal(x, z)  # another seed: other windows or offsets
        assert (x.exp().mean() > c.exp().mean()).item()  # noise adds energy

    quiet = NoiseMixer(noise, prob=1.0, snr=(30.0, 30.0))
    change_loud = [(x - c).abs().mean() for x, c in zip(_features(first), clean, strict=True)]
    change_quiet = [
        (x - c).abs().mean() for x, c in zip(_features(quiet(cuts, 7)), clean, strict=True)
    ]
    assert all(q < lo for q, lo in zip(change_quiet, change_loud, strict=True))

    never = NoiseMixer(noise, prob=0.0, snr=(0.0, 0.0))
    assert all(torch.equal(x, c) for x, c in zip(_features(never(cuts, 7)), clean, strict=True))


def _noisy_config(corpus, tmp_path, noise_dir, **data):
    overrides = [
        *tiny_train_overrides(corpus.root, tmp_path / "manifests"),
        "model.dropout=0.0",
        "optim.peak_lr=3e-3",
        "train.log_every_steps=1",
        "train.max_steps=6",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=3",
        "data.noise_prob=1.0",
        "data.noise_snr=[5, 5]",
    ] + [f"data.{k}={v}" for k, v in data.items()]
    if noise_dir is not None:
        overrides.append(f"data.noise_dir={noise_dir}")
    return load_config(None, overrides)


def test_training_with_noise_uses_it_and_resumes_exactly(tiny_corpus, tmp_path):
    noise_dir = tmp_path / "noise"
    _write(noise_dir / "a.wav", 30.0)
    config = _noisy_config(tiny_corpus, tmp_path, noise_dir)
    train_recipe(config, tmp_path / "a")
    train_recipe(config, tmp_path / "b")
    rewind_run(tmp_path / "b", 3)
    train_recipe(config, tmp_path / "b", resume=True)
    a = assert_same_training(tmp_path / "a", tmp_path / "b", 6)
    report = json.loads((tmp_path / "a" / "data_report.json").read_text())["noise"]
    assert (report["windows"], report["prob"], report["snr_db"]) == (3, 1.0, [5.0, 5.0])
    assert report["part"] == noise_part(noise_dir) and report["hours"] == 30 / 3600
    losses = [r["loss"] for r in read_metrics(tmp_path / "a", "train")]

    # the same run without noise trains on other features
    clean = _noisy_config(tiny_corpus, tmp_path, None)
    train_recipe(clean, tmp_path / "clean")
    assert losses != [r["loss"] for r in read_metrics(tmp_path / "clean", "train")]

    # resuming with other noise settings is refused; a checkpoint from before noise is not
    saved = a["config"]
    other = json.loads(json.dumps(saved))
    other["data"]["noise_snr"] = [10, 20]
    with pytest.raises(CheckpointError, match=r"data\.noise_snr"):
        check_resume_compatible(saved, other, tmp_path)
    older = {"data": {"train_parts": ["train"]}}
    check_resume_compatible(
        older, {"data": {"train_parts": ["train"], "noise_prob": 0.5}}, tmp_path
    )


def test_prepare_caches_the_windows_that_training_then_loads(tiny_corpus, tmp_path, capsys):
    from dmao.cli.main import main

    noise = tmp_path / "musan"
    _write(noise / "a.wav", 14.0)
    out = tmp_path / "manifests"
    args = ["prepare", "librispeech", "--corpus-dir", str(tiny_corpus.root), "--out", str(out)]
    assert main([*args, "--parts", "dev", "--noise-dir", str(noise), "--num-jobs", "1"]) == 0
    assert f"noise: 2 windows, 0.00 h, cached as {noise_part(noise)}" in capsys.readouterr().out
    cached = cuts_path(out, noise_part(noise))
    mtime = cached.stat().st_mtime_ns
    config = load_config(
        None, [*tiny_train_overrides(tiny_corpus.root, out), f"data.noise_dir={noise}"]
    )
    assert len(prepare_noise(config.data, num_jobs=1)) == 2
    assert cached.stat().st_mtime_ns == mtime  # loaded, not redone


def test_the_mix_does_not_depend_on_the_number_of_loader_workers(
    train_cuts, tiny_char_tokenizer, tmp_path
):
    from dmao.data.dataset import build_dataloader, build_sampler

    noise_dir = tmp_path / "noise"
    _write(noise_dir / "a.wav", 30.0)
    mixer = NoiseMixer(prepare_noise(_data(tmp_path, noise_dir), num_jobs=1), 1.0, (5.0, 15.0))
    batches = {}
    for workers in (0, 2):
        sampler = build_sampler(
            train_cuts, max_batch_seconds=8, shuffle=True, seed=3, num_buckets=2, drop_last=False
        )
        loader = build_dataloader(
            train_cuts, tiny_char_tokenizer, sampler=sampler, train=True,
            num_workers=workers, noise=mixer,
        )  # fmt: skip
        batches[workers] = [batch["features"] for batch in loader]
    assert len(batches[0]) == len(batches[2]) > 2
    for x, y in zip(batches[0], batches[2], strict=True):
        assert torch.equal(x, y)
