"""Reverberated copies (``data.rir_dir``): copies convolved with seeded RIRs, features cached,
bad RIR files named, settings refused by name, and the copies in what a run trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_same_training, rewind_run, tiny_train_overrides, train_recipe

from dmao.config import load_config
from dmao.config.schema import DataConfig
from dmao.data.manifests import cut_transcript, cuts_path
from dmao.data.reverb import check_reverb_config, reverb_part, reverberate_parts, reverberated
from dmao.training.checkpoint import CheckpointError
from dmao.training.data_setup import check_resume_compatible, prepare_data
from dmao.training.distributed import DistributedContext
from dmao.training.metrics import read_metrics


def _room(path, rate=16000, t60=0.4, seed=0, channels=1):
    """A synthetic room impulse response: a direct path, then exponentially decaying noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(t60 * rate)) / rate
    tail = np.random.default_rng(seed).standard_normal((channels, t.size)) * np.exp(-t / (t60 / 7))
    tail[:, 0] = 3.0
    sf.write(path, (0.3 * tail.T).astype(np.float32), rate)


def _delta(path, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    impulse = np.zeros(rate // 10, dtype=np.float32)
    impulse[0] = 0.5
    sf.write(path, impulse, rate)


def _rir_used(cut) -> str:
    (transform,) = cut.recording.transforms  # an object when built, a dict when loaded
    transform = transform if isinstance(transform, dict) else transform.to_dict()
    return transform["kwargs"]["rir"]["id"]


def test_copies_are_reverberated_seeded_and_cached(tiny_cuts, tmp_path):
    rirs = tmp_path / "RIRS"
    _room(rirs / "small" / "a.wav")
    _room(rirs / "large" / "b.flac", rate=8000, t60=0.9, seed=1, channels=2)  # resampled, ch 0
    (rirs / "notes.txt").write_text("not audio")
    originals = {"train": tiny_cuts["train"]}
    out = tmp_path / "manifests"
    copies = reverberate_parts(out, originals, rirs, 2, num_jobs=1)
    assert list(copies) == [reverb_part("train", k, rirs) for k in (1, 2)]
    by_id = {cut.id: cut for cut in originals["train"]}
    used = set()
    for k, name in enumerate(copies, start=1):
        assert cuts_path(out, name).is_file()
        assert len(copies[name]) == len(by_id)
        for cut in copies[name]:
            original = by_id[cut.id.removesuffix(f"_rvb{k}")]
            assert cut.id == cut.recording.id == f"{original.id}_rvb{k}"
            assert [s.recording_id for s in cut.supervisions] == [cut.recording.id]
            assert cut.duration == pytest.approx(original.duration)
            assert cut_transcript(cut) == cut_transcript(original)
            assert cut.has_features and cut.num_frames == original.num_frames
            used.add(_rir_used(cut))
    assert used == {"small/a.wav", "large/b.flac"}  # drawn per utterance from the whole folder
    # The copies' features are computed from the reverberant audio: the room smears the energy
    # over time, so the frames differ from the original's.
    cut = next(iter(copies[reverb_part("train", 1, rirs)]))
    original = by_id[cut.id.removesuffix("_rvb1")]
    assert np.abs(cut.load_features() - original.load_features()).mean() > 0.5
    # The two copies of an utterance draw their rooms independently.
    first = [_rir_used(c) for c in copies[reverb_part("train", 1, rirs)]]
    second = [_rir_used(c) for c in copies[reverb_part("train", 2, rirs)]]
    assert first != second

    # A second call loads the cached copies: nothing rewritten, the same rooms.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*rvb*")}
    again = reverberate_parts(out, originals, rirs, 2, num_jobs=1)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*rvb*")} == mtimes
    assert [_rir_used(c) for c in again[reverb_part("train", 1, rirs)]] == first
    # Built again from scratch elsewhere: the same rooms for the same utterances.
    fresh = reverberate_parts(tmp_path / "fresh", originals, rirs, 1, num_jobs=1)
    assert [_rir_used(c) for c in fresh[reverb_part("train", 1, rirs)]] == first


def test_files_too_long_for_a_room_are_named_in_a_warning(tiny_cuts, tmp_path, caplog):
    rirs = tmp_path / "RIRS_NOISES"
    _room(rirs / "simulated_rirs" / "room.wav")
    _room(rirs / "pointsource_noises" / "noise-free-sound-0001.wav", t60=7.0)
    originals = {"train": tiny_cuts["train"].subset(first=2)}
    with caplog.at_level("WARNING", logger="dmao.data.reverb"):
        reverberate_parts(tmp_path / "m", originals, rirs, num_jobs=1)
    (line,) = [r.getMessage() for r in caplog.records if "data.rir_dir" in r.getMessage()]
    assert "1 of 2 files last over 5 s" in line
    assert "pointsource_noises/noise-free-sound-0001.wav (7.0 s)" in line


def test_an_impulse_leaves_the_audio_as_it_was(tiny_cuts, tmp_path):
    rirs = tmp_path / "delta"
    _delta(rirs / "d.wav")
    originals = {"train": tiny_cuts["train"].subset(first=3)}
    (copies,) = reverberate_parts(tmp_path / "m", originals, rirs, num_jobs=1).values()
    for cut, original in zip(copies, originals["train"], strict=True):
        # energy-normalised convolution with a scaled impulse is the identity
        np.testing.assert_allclose(cut.load_audio(), original.load_audio(), atol=1e-5)


def test_a_bad_rir_file_is_named_and_skip_mode_leaves_it_out(tiny_cuts, tmp_path):
    rirs = tmp_path / "rirs"
    _room(rirs / "good.wav")
    (rirs / "broken.wav").write_bytes(b"")
    originals = {"train": tiny_cuts["train"].subset(first=4)}
    with pytest.raises(ValueError, match="broken"):
        reverberate_parts(tmp_path / "strict", originals, rirs, num_jobs=1)
    assert not cuts_path(tmp_path / "strict", reverb_part("train", 1, rirs)).exists()

    out = tmp_path / "skip"
    settings = {"bad_audio": "skip", "max_bad_audio_fraction": 0.5}
    (copies,) = reverberate_parts(out, originals, rirs, num_jobs=1, **settings).values()
    assert {_rir_used(c) for c in copies} == {"good.wav"}
    report = json.dumps(json.loads((out / "bad_audio.json").read_text()))
    assert "broken.wav" in report and "empty_file" in report


@pytest.mark.parametrize("copies", [0, 11, 1.5, True, "two"])
def test_bad_copy_counts_are_refused_by_name(copies):
    with pytest.raises(ValueError, match=r"data\.reverb_copies: expected a whole number"):
        check_reverb_config(DataConfig(reverb_copies=copies))


def test_missing_or_empty_rir_folders_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"data\.rir_dir: .*missing is not a folder"):
        check_reverb_config(DataConfig(rir_dir=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data\.rir_dir: no audio files"):
        check_reverb_config(DataConfig(rir_dir=str(tmp_path / "empty")))
    assert len(reverberated(DataConfig(), {})) == 0  # off: no copies


def test_prepare_caches_the_copies_a_run_then_trains_on(tiny_corpus, tiny_cuts, tmp_path, capsys):
    from dmao.cli.main import main

    rirs = tmp_path / "rirs"
    _room(rirs / "a.wav")
    out = tmp_path / "manifests"
    args = ["prepare", "librispeech", "--corpus-dir", str(tiny_corpus.root), "--out", str(out)]
    flags = ["--parts", "train", "dev", "--rir-dir", str(rirs), "--reverb-copies", "2"]
    assert main([*args, *flags, "--num-jobs", "1"]) == 0
    printed = capsys.readouterr().out
    name = reverb_part("train", 2, rirs)
    assert f"{name}: " in printed
    mtime = cuts_path(out, name).stat().st_mtime_ns

    overrides = tiny_train_overrides(tiny_corpus.root, out)
    config = load_config(None, [*overrides, f"data.rir_dir={rirs}", "data.reverb_copies=2"])
    dist = DistributedContext.from_env("cpu")
    data = prepare_data(config, tmp_path / "run", dist)
    assert cuts_path(out, name).stat().st_mtime_ns == mtime  # loaded, not redone
    clean = prepare_data(load_config(None, overrides), tmp_path / "clean", dist)
    # a copy has its original's length and transcript, so it is filtered as its original is
    ids = set(data.train.ids)
    assert ids == set(clean.train.ids) | {f"{i}_rvb{k}" for i in clean.train.ids for k in (1, 2)}
    assert list(data.dev.ids) == list(clean.dev.ids)  # dev is never reverberated
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["reverb"]
    assert (report["rir_dir"], report["copies"]) == (str(rirs), 2)
    assert report["utterances"] == 2 * len(tiny_cuts["train"])  # before filtering, like train

    # resuming with another number of copies is refused; a checkpoint from before it is not
    saved = {"data": {"train_parts": ["train"], "rir_dir": str(rirs), "reverb_copies": 2}}
    other = {"data": {"train_parts": ["train"], "rir_dir": str(rirs), "reverb_copies": 1}}
    with pytest.raises(CheckpointError, match=r"data\.reverb_copies"):
        check_resume_compatible(saved, other, tmp_path)
    with pytest.raises(CheckpointError, match=r"data\.rir_dir"):
        check_resume_compatible(saved, {"data": {"train_parts": ["train"]}}, tmp_path)
    older = {"data": {"train_parts": ["train"]}}
    check_resume_compatible(older, {"data": {"train_parts": ["train"], "rir_dir": None}}, tmp_path)


def test_a_run_trains_on_the_copies_and_resumes_exactly(tiny_corpus, tmp_path):
    rirs = tmp_path / "rirs"
    _room(rirs / "a.wav", t60=0.8)
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "model.dropout=0.0",
        "train.log_every_steps=1",
        "train.max_steps=4",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=2",
    ]
    config = load_config(None, [*overrides, f"data.rir_dir={rirs}"])
    train_recipe(config, tmp_path / "a")
    train_recipe(config, tmp_path / "b")
    rewind_run(tmp_path / "b", 2)
    train_recipe(config, tmp_path / "b", resume=True)
    assert_same_training(tmp_path / "a", tmp_path / "b", 4)
    losses = [r["loss"] for r in read_metrics(tmp_path / "a", "train")]
    assert len(losses) == 4 and all(np.isfinite(losses))
    # twice the utterances in an epoch: other batches than the same run without copies
    train_recipe(load_config(None, overrides), tmp_path / "clean")
    assert losses != [r["loss"] for r in read_metrics(tmp_path / "clean", "train")]
