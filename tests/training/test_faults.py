"""Faults that kill long runs, end to end through ``dmao train``: a full disk at a checkpoint, a
second process in the same run folder, training data too small for one batch, and SIGTERM in the
middle of a validation, a checkpoint write or a DMAO event."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import tiny_train_overrides

import dmao.training.recipe_state as recipe_state
from dmao.cli.main import main
from dmao.method import DmaoAllocator
from dmao.training.checkpoint import latest_checkpoint, load_checkpoint
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe
from dmao.training.run_lock import RunLock


def _args(corpus, tmp_path, run, *extra: str) -> list[str]:
    return [
        "train",
        "--out",
        str(run),
        *tiny_train_overrides(corpus.root, tmp_path / "manifests"),
        "train.max_steps=6",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=2",
        *extra,
    ]


def test_full_disk_stops_cleanly_and_the_run_resumes(tiny_corpus, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def fill_disk_at_second_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial")  # what a full disk leaves: a torn temporary file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("dmao.training.checkpoint.torch.save", fill_disk_at_second_save)
    assert main(_args(tiny_corpus, tmp_path, run)) == 2
    err = capsys.readouterr().err
    assert "step-00000004.pt" in err and "No space left on device" in err
    # The committed checkpoint (step 2) is intact and is the newest; no temporary file is left.
    assert latest_checkpoint(run / "checkpoints").name == "step-00000002.pt"
    assert load_checkpoint(run / "checkpoints" / "step-00000002.pt")["step"] == 2
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]

    monkeypatch.setattr("dmao.training.checkpoint.torch.save", real_save)  # disk freed
    assert main([*_args(tiny_corpus, tmp_path, run), "--resume"]) == 0
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))["step"] == 6
    assert [r["step"] for r in read_metrics(run, "train")][-1] == 6


def test_a_second_process_cannot_train_in_the_same_run_folder(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    # The lock is held by another process (flock locks belong to the open file description).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dmao.training.run_lock import RunLock; "
            f"lock = RunLock({str(run)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_args(tiny_corpus, tmp_path, run)) == 2
        err = capsys.readouterr().err
        assert f"in use by another dmao process (pid {holder.pid})" in err
        assert not (run / "checkpoints").exists()  # nothing was touched
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves no stale lock: the kernel released it with the process.
    RunLock(run).acquire().release()
    assert main(_args(tiny_corpus, tmp_path, run, "train.max_steps=2")) == 0


def test_training_data_smaller_than_one_batch_is_an_error(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_args(tiny_corpus, tmp_path, run, "data.max_batch_seconds=100000")) == 2
    err = capsys.readouterr().err
    assert "the training data yields no batch" in err
    assert "data.max_batch_seconds=100000" in err


def _dmao_args(corpus, tmp_path, run) -> list[str]:
    return _args(
        corpus,
        tmp_path,
        run,
        "train.max_steps=8",
        "train.valid_every_steps=3",
        "train.checkpoint_every_steps=4",
        "dmao.enabled=true",
        "dmao.score_every_steps=1",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    )


@pytest.mark.parametrize("moment", ["validation", "save", "reallocation"])
def test_sigterm_during_validation_save_or_reallocation(moment, tiny_corpus, tmp_path, monkeypatch):
    """The signal is only noted; the run finishes what it is doing (a validation, a checkpoint
    write, a DMAO event), commits the next completed step, exits 143 and resumes to the same
    weights as an uninterrupted run (RELIABILITY.md item 6)."""
    assert main(_dmao_args(tiny_corpus, tmp_path, tmp_path / "ref")) == 0

    def signal_then(original):
        def wrapped(*args, **kwargs):
            if not sent:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGTERM)
            return original(*args, **kwargs)

        return wrapped

    sent: list[bool] = []
    targets = {
        "validation": (TrainingRecipe, "validate"),
        "save": (recipe_state, "save_checkpoint"),
        "reallocation": (DmaoAllocator, "reallocate"),
    }
    owner, name = targets[moment]
    monkeypatch.setattr(owner, name, signal_then(getattr(owner, name)))
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(_dmao_args(tiny_corpus, tmp_path, run))
    assert stopped.value.code == 143 and sent
    committed = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert committed["step"] < 8
    monkeypatch.undo()
    assert main([*_dmao_args(tiny_corpus, tmp_path, run), "--resume"]) == 0
    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "step-00000008.pt")
    got = load_checkpoint(run / "checkpoints" / "step-00000008.pt")
    assert got["architecture"] == ref["architecture"]
    for key, tensor in ref["model"].items():
        assert torch.equal(tensor, got["model"][key]), key


def test_repeated_non_finite_steps_stop_the_run_with_a_dump(tiny_corpus, tmp_path):
    """Every step non-finite (a NaN weight): each is skipped without an update, and after
    train.max_consecutive_bad_steps the run stops, leaving the batch and the model to inspect."""
    from dmao.config import load_config

    config = load_config(
        None,
        [
            *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
            "train.max_steps=20",
            "train.max_consecutive_bad_steps=3",
        ],
    )
    recipe = TrainingRecipe(config, tmp_path / "run")
    try:
        recipe.setup()
        name, weight = next(recipe.model.named_parameters())
        with torch.no_grad():
            weight.view(-1)[0] = float("nan")
        with pytest.raises(FloatingPointError, match="3 consecutive non-finite steps at step 0"):
            recipe.train()
    finally:
        recipe.cleanup()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    bad = [r for r in map(json.loads, lines) if r["kind"] == "bad_step"]
    assert [r["step"] for r in bad] == [0, 0, 0] and all(r["cut_ids"] for r in bad)
    dump = torch.load(tmp_path / "run" / "bad_steps" / "step-00000000-rank0.pt", weights_only=True)
    assert dump["batches"][0]["cut_ids"] == bad[-1]["cut_ids"]
    # The model as it failed: the poisoned weight (and what it spread to, e.g. BatchNorm's
    # running statistics) is NaN; no update was applied to any other parameter.
    assert torch.isnan(dump["model"][name].view(-1)[0])
    assert torch.isfinite(dump["model"][name].view(-1)[1:]).all()
