"""Faults that kill long runs, end to end through ``dmao train``: a full disk at a checkpoint, a
second process in the same run folder, and training data too small for one batch."""

from __future__ import annotations

import errno
import subprocess
import sys

import torch
from conftest import tiny_train_overrides

from dmao.cli.main import main
from dmao.training.checkpoint import latest_checkpoint, load_checkpoint
from dmao.training.metrics import read_metrics
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
