"""Real processes: SIGTERM commits a checkpoint and exits 143; SIGKILL at a random moment loses
at most the steps since the last checkpoint, and the resumed run equals an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import torch
from conftest import tiny_train_overrides

from dmao.training.checkpoint import latest_checkpoint, load_checkpoint
from dmao.training.metrics import read_metrics


def _args(corpus, manifests, run, max_steps, checkpoint_every):
    return [
        sys.executable, "-m", "dmao.cli.main", "train", "--out", str(run),
        *tiny_train_overrides(corpus.root, manifests),
        "model.dropout=0.0", f"train.max_steps={max_steps}", "train.valid_every_steps=1000",
        f"train.checkpoint_every_steps={checkpoint_every}", "train.log_every_steps=1",
        "train.num_threads=1",
    ]  # fmt: skip


def _wait_for_step(run, step, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        records = read_metrics(run, "train")
        if records and records[-1]["step"] >= step:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    raise TimeoutError(f"run did not reach step {step}")


def _final_weights(run):
    return load_checkpoint(run / "checkpoints" / "step-00000030.pt")["model"]


def test_sigterm_commits_checkpoint_and_exits_143(tiny_corpus, tmp_path):
    manifests = tmp_path / "manifests"
    ref = tmp_path / "ref"
    subprocess.run(_args(tiny_corpus, manifests, ref, 30, 10), check=True, capture_output=True)

    run = tmp_path / "run"
    proc = subprocess.Popen(
        _args(tiny_corpus, manifests, run, 30, 10), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for_step(run, 4, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    last = latest_checkpoint(run / "checkpoints")
    stopped_at = load_checkpoint(last)["step"]
    assert 4 <= stopped_at < 30  # the last completed step, not a multiple of the interval
    resumed = subprocess.run(
        [*_args(tiny_corpus, manifests, run, 30, 10), "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    for name, tensor in _final_weights(ref).items():
        assert torch.equal(tensor, _final_weights(run)[name]), name


def test_sigkill_at_random_step_then_resume_is_bit_exact(tiny_corpus, tmp_path):
    manifests = tmp_path / "manifests"
    ref = tmp_path / "ref"
    subprocess.run(_args(tiny_corpus, manifests, ref, 30, 3), check=True, capture_output=True)
    ref_losses = {r["step"]: r["loss"] for r in read_metrics(ref, "train")}

    run = tmp_path / "run"
    proc = subprocess.Popen(
        _args(tiny_corpus, manifests, run, 30, 3), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for_step(run, random.Random(os.getpid()).randint(4, 20), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert latest_checkpoint(run / "checkpoints") is not None
    resumed = subprocess.run(
        [*_args(tiny_corpus, manifests, run, 30, 3), "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    losses = {r["step"]: r["loss"] for r in read_metrics(run, "train")}
    assert losses == ref_losses  # steps redone after the resume point log the same losses
    for name, tensor in _final_weights(ref).items():
        assert torch.equal(tensor, _final_weights(run)[name]), name
