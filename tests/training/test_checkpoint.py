from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dmao.training import checkpoint as ck


def _state(step: int) -> dict:
    return {
        "step": step,
        "model": {"w": torch.full((3,), float(step))},
        "rng": ck.capture_rng_state(),
    }


def test_save_load_round_trip_weights_only(tmp_path):
    path = ck.save_checkpoint(_state(5), tmp_path / "step-00000005.pt")
    # The file loads with the safe loader: no pickled classes inside.
    raw = torch.load(path, weights_only=True)
    assert raw["schema_version"] == ck.CHECKPOINT_SCHEMA_VERSION
    state = ck.load_checkpoint(path)
    assert state["step"] == 5
    assert torch.equal(state["model"]["w"], torch.full((3,), 5.0))


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "step-00000001.pt"
    ck.save_checkpoint(_state(1), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(ck.CheckpointError, match=r"No space left"):
        ck.save_checkpoint(_state(2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert ck.load_checkpoint(path)["step"] == 1


def test_schema_version_checked(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"schema_version": 999}, path)
    with pytest.raises(ck.CheckpointError, match="schema version 999"):
        ck.load_checkpoint(path)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError, match=r"garbage\.pt"):
        ck.load_checkpoint(tmp_path / "garbage.pt")


def test_retention_and_latest(tmp_path):
    for step in (10, 20, 30, 40):
        ck.save_checkpoint(_state(step), ck.step_checkpoint_path(tmp_path, step))
    ck.link_checkpoint(ck.step_checkpoint_path(tmp_path, 10), tmp_path / "best.pt")
    deleted = ck.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in deleted) == ["step-00000010.pt", "step-00000020.pt"]
    assert ck.latest_checkpoint(tmp_path).name == "step-00000040.pt"
    assert ck.load_checkpoint(tmp_path / "best.pt")["step"] == 10  # best survives pruning


def test_rng_state_round_trip():
    state = ck.capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    assert a[2] == b[2]
