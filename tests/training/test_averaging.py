"""Checkpoint averaging: the arithmetic, the choice of checkpoints across an architecture change,
the refusal when too few exist, and the averaged checkpoint file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.training.averaging import (
    average_model_states,
    averaged_checkpoint,
    select_checkpoints_to_average,
)
from dmao.training.checkpoint import (
    CheckpointError,
    link_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoint_path,
)

ARCH_A = {"widths": [4, 4]}
ARCH_B = {"widths": [6, 2]}  # what a DMAO event turned ARCH_A into


def _model_state(seed: int, batches: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    for _ in range(batches):  # moves the running statistics and num_batches_tracked
        model(torch.randn(8, 3))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_run(tmp_path, steps_and_archs, keep_last: int = 4):
    """A run folder whose checkpoints hold a tiny model, an architecture and a config."""
    run = tmp_path / "run"
    states = {}
    for step, arch in steps_and_archs:
        states[step] = _model_state(seed=step, batches=step // 10)
        save_checkpoint(
            {
                "step": step,
                "model": states[step],
                "architecture": arch,
                "config": {"train": {"keep_last_checkpoints": keep_last}},
            },
            step_checkpoint_path(run / "checkpoints", step),
        )
    return run, states


def test_floats_are_averaged_and_integers_come_from_the_last_state() -> None:
    states = [_model_state(seed, batches=seed + 1) for seed in range(3)]
    avg = average_model_states(states)
    for key, value in avg.items():
        if value.is_floating_point():
            expected = sum(s[key].double() for s in states) / 3
            torch.testing.assert_close(value, expected.float())
            assert value.dtype == states[0][key].dtype
        else:
            assert torch.equal(value, states[-1][key])  # num_batches_tracked
    assert avg["1.num_batches_tracked"].item() == 3
    assert average_model_states(states[:1])["0.weight"].equal(states[0]["0.weight"])


def test_states_of_different_shapes_are_refused() -> None:
    a = {"w": torch.zeros(4, 3)}
    b = {"w": torch.zeros(6, 3)}
    with pytest.raises(ValueError, match=r"cannot average w: shape \(6, 3\)"):
        average_model_states([a, b])
    with pytest.raises(ValueError, match="different tensors"):
        average_model_states([a, {"v": torch.zeros(4, 3)}])
    with pytest.raises(ValueError, match="no model states"):
        average_model_states([])


def test_only_checkpoints_after_the_last_architecture_change_are_chosen(tmp_path) -> None:
    run, _ = _write_run(
        tmp_path, [(10, ARCH_A), (20, ARCH_A), (30, ARCH_B), (40, ARCH_B), (50, ARCH_B)]
    )
    chosen = select_checkpoints_to_average(run, 3)
    assert [step for step, _ in chosen] == [30, 40, 50]
    assert [step for step, _ in select_checkpoints_to_average(run, 2, end="step-00000040.pt")] == [
        30,
        40,
    ]
    with pytest.raises(CheckpointError) as err:
        select_checkpoints_to_average(run, 4)
    message = str(err.value)
    assert "\n" not in message
    assert "--avg 4 needs 4 step checkpoints" in message and "has 3 (steps 30, 40, 50)" in message
    assert "architecture changed (DMAO event) after step 20" in message


def test_too_few_kept_checkpoints_name_keep_last_checkpoints(tmp_path) -> None:
    run, _ = _write_run(tmp_path, [(40, ARCH_A), (50, ARCH_A)], keep_last=2)
    with pytest.raises(CheckpointError, match=r"has 2 .*train\.keep_last_checkpoints=2"):
        select_checkpoints_to_average(run, 3)
    with pytest.raises(ValueError, match="at least 1"):
        select_checkpoints_to_average(run, 0)
    with pytest.raises(CheckpointError, match="not found"):
        select_checkpoints_to_average(run, 1, end="step-00000099.pt")


def test_averaged_checkpoint_file(tmp_path) -> None:
    run, states = _write_run(tmp_path, [(10, ARCH_A), (20, ARCH_B), (30, ARCH_B), (40, ARCH_B)])
    path = averaged_checkpoint(run, 3)
    assert path == run / "checkpoints" / "avg-3-step-00000040.pt"
    saved = load_checkpoint(path)  # weights_only, schema-versioned
    assert saved["averaged_from"] == [f"step-000000{s}.pt" for s in (20, 30, 40)]
    assert saved["step"] == 40 and saved["architecture"] == ARCH_B
    expected = average_model_states([states[20], states[30], states[40]])
    for key, value in expected.items():
        assert torch.equal(saved["model"][key], value), key
    # Asked again: the file is reused, not rewritten.
    mtime = path.stat().st_mtime_ns
    assert averaged_checkpoint(run, 3) == path and path.stat().st_mtime_ns == mtime
    # --avg 1 is the end checkpoint itself; best.pt ends the average at its own step.
    assert averaged_checkpoint(run, 1) == run / "checkpoints" / "step-00000040.pt"
    link_checkpoint(run / "checkpoints" / "step-00000030.pt", run / "checkpoints" / "best.pt")
    best_avg = load_checkpoint(averaged_checkpoint(run, 2, end="best"))
    assert best_avg["averaged_from"] == ["step-00000020.pt", "best.pt"]
