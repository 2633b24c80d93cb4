"""Features on the fly (``data.on_the_fly_features``): nothing but manifests on disk, training as
with cached features up to their lossy compression, copies and noise computed from the audio,
and audio that fails to load left out of training batches but named everywhere else."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tiny_train_overrides, train_recipe

from dmao.config import load_config
from dmao.data.dataset import AsrBatchDataset
from dmao.data.noise import NoiseMixer, prepare_noise
from dmao.data.pipeline import load_parts
from dmao.data.statistics import feature_statistics
from dmao.training.checkpoint import CheckpointError
from dmao.training.data_setup import build_train_loader, check_resume_compatible, prepare_data
from dmao.training.distributed import DistributedContext
from dmao.training.metrics import read_metrics


def _config(corpus_root, manifests, *extra):
    overrides = [
        *tiny_train_overrides(corpus_root, manifests),
        "model.dropout=0.0",
        "train.log_every_steps=1",
        "train.max_steps=4",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=100",
        *extra,
    ]
    return load_config(None, overrides)


def _archives(manifests):
    return sorted(p.name for p in manifests.iterdir() if p.name.startswith("feats_"))


def test_a_run_on_the_fly_writes_no_archives_and_trains_as_the_cached_one(tiny_corpus, tmp_path):
    otf = tmp_path / "otf"
    train_recipe(_config(tiny_corpus.root, otf, "data.on_the_fly_features=true"), tmp_path / "a")
    assert (otf / "cuts_train.jsonl.gz").is_file() and _archives(otf) == []
    cached = tmp_path / "cached"
    train_recipe(_config(tiny_corpus.root, cached), tmp_path / "b")
    assert _archives(cached) == ["feats_dev", "feats_train"]
    a = [r["loss"] for r in read_metrics(tmp_path / "a", "train")]
    b = [r["loss"] for r in read_metrics(tmp_path / "b", "train")]
    # the same batches; the features differ only by the archives' lossy compression
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(a, b, rtol=2e-3)

    # decoding reads the run's config: the test split on the fly as well
    from dmao.cli.main import main

    assert main(["decode", str(tmp_path / "a"), "--split", "test"]) == 0
    assert (tmp_path / "a" / "decode" / "test-greedy" / "result.json").is_file()
    assert (otf / "cuts_test.jsonl.gz").is_file() and _archives(otf) == []


def test_cached_features_are_dropped_so_every_batch_is_computed_alike(tiny_corpus, tmp_path):
    manifests = tmp_path / "m"
    cached = load_parts(_config(tiny_corpus.root, manifests).data, ["dev"], num_jobs=1)
    assert all(cut.has_features for cut in cached)
    config = _config(tiny_corpus.root, manifests, "data.on_the_fly_features=true")
    cuts = load_parts(config.data, ["dev"], num_jobs=1)
    assert [c.id for c in cuts] == [c.id for c in cached]
    assert not any(cut.has_features for cut in cuts)
    # computed from the audio, they equal the cached ones to lilcom's precision
    dataset = AsrBatchDataset(None, with_targets=False)
    batch = dataset[cuts.subset(first=3)]
    reference = AsrBatchDataset(None, with_targets=False)[cached.subset(first=3)]
    assert torch.equal(batch["feature_lens"], reference["feature_lens"])
    assert (batch["features"] - reference["features"]).abs().max() < 0.05


def test_copies_and_noise_come_without_archives(tiny_corpus, tmp_path):
    rirs, noise = tmp_path / "rirs", tmp_path / "noise"
    rirs.mkdir()
    rir = np.zeros(1600, dtype=np.float32)
    rir[0], rir[400] = 1.0, 0.5  # a direct path and one echo 25 ms later
    sf.write(rirs / "echo.wav", rir, 16000)
    noise.mkdir()
    sf.write(noise / "n.wav", np.random.default_rng(0).standard_normal(16000 * 12) * 0.1, 16000)
    manifests = tmp_path / "m"
    config = _config(
        tiny_corpus.root, manifests, "data.on_the_fly_features=true",
        "data.speed_perturb=[0.9]", f"data.rir_dir={rirs}", f"data.noise_dir={noise}",
    )  # fmt: skip
    data = prepare_data(config, tmp_path / "run", DistributedContext.from_env("cpu"))
    assert _archives(manifests) == []
    ids = list(data.train.ids)
    assert any(i.endswith("_sp0.9") for i in ids) and any("_rvb1" in i for i in ids)
    assert data.noise is not None and not any(w.has_features for w in data.noise.noise)

    # the noise is mixed into the audio: other features than the clean ones, the same each time
    cuts = data.train.subset(first=3)
    clean = AsrBatchDataset(data.tokenizer)[cuts]["features"]
    loud = NoiseMixer(data.noise.noise, prob=1.0, snr=(0.0, 0.0))
    noisy = AsrBatchDataset(data.tokenizer, noise=loud)
    first, again = noisy[cuts]["features"], noisy[cuts]["features"]
    assert torch.equal(first, again) and first.shape == clean.shape
    assert (first - clean).abs().mean() > 0.5
    assert prepare_noise(config.data, num_jobs=1)[0].has_features is False


def _damaged_corpus(tiny_corpus, tmp_path):
    """A copy of the tiny corpus whose first training and first dev file is cut to 10 bytes
    after its manifests were written."""
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root, root)
    manifests = tmp_path / "m"
    config = _config(root, manifests, "data.on_the_fly_features=true")
    parts = {part: load_parts(config.data, [part], num_jobs=1) for part in ("train", "dev")}
    damaged = {}
    for part, cuts in parts.items():
        cut = next(iter(cuts))
        path = cut.recording.sources[0].source
        with open(path, "r+b") as f:
            f.truncate(10)
        damaged[part] = cut.id
    return root, manifests, parts, damaged


def test_unloadable_audio_leaves_a_training_batch_and_is_named_elsewhere(
    tiny_corpus, tmp_path, caplog
):
    root, manifests, parts, damaged = _damaged_corpus(tiny_corpus, tmp_path)
    from dmao.data.tokenizer import train_tokenizer

    texts = [c.supervisions[0].text for c in parts["train"]]
    tokenizer = train_tokenizer("char", texts, tmp_path / "tok")
    batch_cuts = parts["train"].subset(first=4)
    with caplog.at_level(logging.WARNING, logger="dmao.data.dataset"):
        batch = AsrBatchDataset(tokenizer, skip_unloadable=True)[batch_cuts]
    assert batch["cut_ids"] == [c.id for c in batch_cuts][1:]  # the others, in order
    assert batch["targets"].shape[0] == batch["features"].shape[0] == 3
    assert damaged["train"] in caplog.text and "dmao validate" in caplog.text
    with pytest.raises(ValueError, match=rf"audio not loadable: {damaged['train']}"):
        AsrBatchDataset(tokenizer, with_targets=False)[batch_cuts]  # decoding scores every one

    # the training loader leaves it out, with or without SpecAugment
    for spec in ("true", "false"):
        config = _config(root, manifests, "data.on_the_fly_features=true",
                         f"data.spec_augment={spec}", "data.max_batch_seconds=4")  # fmt: skip
        _, loader = build_train_loader(
            config, parts["train"], tokenizer, DistributedContext.from_env("cpu"), noise=None
        )
        seen = [i for batch in loader for i in batch["cut_ids"]]
        assert damaged["train"] not in seen and len(seen) > 0

    # the dev subset is read before training: strict names the file, skip leaves it out
    dist = DistributedContext.from_env("cpu")
    strict = _config(root, manifests, "data.on_the_fly_features=true")
    with pytest.raises(ValueError, match=rf"dev audio not loadable .*{damaged['dev']}") as err:
        prepare_data(strict, tmp_path / "strict", dist)
    # the reader's own message on one line, not lhotse's multi-line account of its backends
    assert "\n" not in str(err.value) and "Reading audio from" not in str(err.value)
    skip = _config(root, manifests, "data.on_the_fly_features=true", "data.bad_audio=skip")
    data = prepare_data(skip, tmp_path / "skip", dist)
    assert damaged["dev"] not in set(data.dev.ids) and len(data.dev) > 0
    assert set(data.dev.ids) < set(parts["dev"].ids)
    # the normalisation statistics pass over the bad training file (the first cut) and warn
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dmao.data.statistics"):
        mean, std = feature_statistics(parts["train"], max_cuts=3)
    assert damaged["train"] in caplog.text and torch.isfinite(mean).all() and (std > 0).all()
    assert "Reading audio from" not in caplog.text


def test_switching_on_resume_is_refused_only_where_it_changes_the_noise(tmp_path):
    saved = {"data": {"train_parts": ["train"], "on_the_fly_features": False}}
    switched = {"data": {"train_parts": ["train"], "on_the_fly_features": True}}
    check_resume_compatible(saved, switched, tmp_path)  # same numbers up to compression
    noisy = json.loads(json.dumps(saved))
    noisy["data"]["noise_dir"] = "/noise"
    noisy_switched = json.loads(json.dumps(switched))
    noisy_switched["data"]["noise_dir"] = "/noise"
    with pytest.raises(CheckpointError, match=r"data\.on_the_fly_features"):
        check_resume_compatible(noisy, noisy_switched, tmp_path)


def test_prepare_can_write_the_manifests_alone(tiny_corpus, tmp_path, capsys):
    from dmao.cli.main import main

    out = tmp_path / "m"
    args = ["prepare", "librispeech", "--corpus-dir", str(tiny_corpus.root), "--out", str(out)]
    flags = ["--parts", "train", "dev", "--no-features", "--speed-perturb", "1.1"]
    assert main([*args, *flags, "--num-jobs", "1"]) == 0
    assert {p.name for p in out.glob("cuts_*")} == {
        "cuts_train.jsonl.gz", "cuts_dev.jsonl.gz", "cuts_train_sp1.1.jsonl.gz"
    }  # fmt: skip
    assert _archives(out) == []
    config = _config(tiny_corpus.root, out, "data.on_the_fly_features=true")
    assert len(load_parts(config.data, ["train"], num_jobs=1)) > 0
    assert _archives(out) == []  # loaded as prepared
