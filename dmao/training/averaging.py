"""Checkpoint averaging (icefall's ``--avg N``): the model of the newest N step checkpoints that
share the final architecture, averaged parameter by parameter.

DMAO changes the per-layer widths during training, so only the checkpoints written after the
last architecture change (the last DMAO event) can be averaged; each checkpoint stores its
architecture (``dmao.training.checkpoint``), which is what is compared. Floating-point tensors
(parameters and buffers such as BatchNorm's running statistics) are averaged; integer tensors
(BatchNorm's ``num_batches_tracked``) are taken from the newest checkpoint, as in icefall's
``average_checkpoints``.

The average is written as an ordinary (not resumable) checkpoint
``RUN/checkpoints/avg-<N>-step-<step>.pt`` holding the model, its architecture and the config,
so ``dmao decode`` and ``dmao export`` load it like any other checkpoint file; a second request
for the same average reuses the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from dmao.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_step_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "average_model_states",
    "averaged_checkpoint",
    "select_checkpoints_to_average",
]


def average_model_states(states: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of model ``state_dict``s of one architecture.

    Floating-point tensors are averaged (accumulated in float64, returned in their own dtype);
    other tensors (integer counters) are taken from the last state.

    Raises:
        ValueError: no states, or the states differ in their keys or tensor shapes.
    """
    total: dict[str, torch.Tensor] | None = None
    last: Mapping[str, torch.Tensor] = {}
    count = 0
    for state in states:
        if total is None:
            total = {k: v.detach().to(torch.float64).clone() for k, v in state.items()}
        else:
            if state.keys() != total.keys():
                diff = sorted(set(state) ^ set(total))[:5]
                raise ValueError(f"cannot average model states with different tensors: {diff}")
            for key, value in state.items():
                if value.shape != total[key].shape:
                    raise ValueError(
                        f"cannot average {key}: shape {tuple(value.shape)} vs "
                        f"{tuple(total[key].shape)} (different architectures)"
                    )
                total[key] += value.detach().to(torch.float64)
        last, count = state, count + 1
    if total is None:
        raise ValueError("no model states to average")
    return {
        key: (total[key] / count).to(value.dtype) if value.is_floating_point() else value.clone()
        for key, value in last.items()
    }


def _end_checkpoint(ckpt_dir: Path, end: str | Path) -> Path:
    """``last`` → the newest step checkpoint, ``best`` → ``best.pt``, else a file (a name in
    ``ckpt_dir`` or a path)."""
    if end == "last":
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise CheckpointError(f"no step checkpoint in {ckpt_dir}; has the run trained?")
        return path
    path = ckpt_dir / "best.pt" if end == "best" else Path(end)
    if not path.is_file() and (ckpt_dir / path.name).is_file():
        path = ckpt_dir / path.name
    if not path.is_file():
        raise CheckpointError(f"checkpoint {end} not found in {ckpt_dir}")
    return path


def select_checkpoints_to_average(
    run_dir: str | Path, num: int, end: str | Path = "last"
) -> list[tuple[int, Path]]:
    """The ``num`` step checkpoints to average, oldest first: ``end`` and the newest step
    checkpoints before it, all with ``end``'s per-layer architecture.

    Args:
        run_dir: a run folder written by ``dmao train``.
        num: how many checkpoints (≥ 1).
        end: the newest checkpoint of the average: ``last`` (the newest step checkpoint),
            ``best`` or a checkpoint file.

    Returns:
        ``[(step, path), ...]`` of length ``num``.

    Raises:
        CheckpointError: fewer than ``num`` such checkpoints exist (the message says how many,
            whether an architecture change or ``train.keep_last_checkpoints`` limits them).
    """
    if num < 1:
        raise ValueError(f"--avg must be at least 1, got {num}")
    ckpt_dir = Path(run_dir) / "checkpoints"
    end_path = _end_checkpoint(ckpt_dir, end)
    end_state = load_checkpoint(end_path)
    end_step, architecture = int(end_state["step"]), end_state["architecture"]
    keep_last = end_state.get("config", {}).get("train", {}).get("keep_last_checkpoints")
    del end_state
    chosen = [(end_step, end_path)]
    changed_at = None
    for step, path in reversed(list_step_checkpoints(ckpt_dir)):
        if len(chosen) == num:
            break
        if step >= end_step:
            continue
        if load_checkpoint(path)["architecture"] != architecture:
            changed_at = step  # a DMAO event changed the widths after this checkpoint
            break
        chosen.append((step, path))
    if len(chosen) < num:
        steps = ", ".join(str(step) for step, _ in reversed(chosen))
        why = (
            f"the architecture changed (DMAO event) after step {changed_at}"
            if changed_at is not None
            else f"no older ones are left (train.keep_last_checkpoints={keep_last} limits how "
            f"many step checkpoints a run keeps; train with a larger value for --avg {num})"
        )
        raise CheckpointError(
            f"--avg {num} needs {num} step checkpoints with the final architecture up to step "
            f"{end_step}, but {ckpt_dir} has {len(chosen)} (steps {steps}): {why}"
        )
    return list(reversed(chosen))


def averaged_checkpoint(run_dir: str | Path, num: int, end: str | Path = "last") -> Path:
    """Write (or reuse) the average of :func:`select_checkpoints_to_average`'s checkpoints as
    ``RUN/checkpoints/avg-<num>-step-<end step>.pt`` and return its path.

    The file holds ``model`` (the averaged state), ``architecture``, ``config`` and ``step`` of
    the newest checkpoint, and ``averaged_from`` (the file names, oldest first); it loads with
    :func:`dmao.training.checkpoint.load_checkpoint` like a step checkpoint but cannot resume a
    run (no optimizer state). ``num == 1`` returns the end checkpoint itself.

    Raises:
        CheckpointError: as :func:`select_checkpoints_to_average`.
    """
    chosen = select_checkpoints_to_average(run_dir, num, end)
    if num == 1:
        return chosen[0][1]
    end_step, end_path = chosen[-1]
    names = [path.name for _, path in chosen]
    out = Path(run_dir) / "checkpoints" / f"avg-{num}-step-{end_step:08d}.pt"
    if out.is_file():
        try:
            if load_checkpoint(out).get("averaged_from") == names:
                return out
        except CheckpointError:
            pass  # unreadable: written again below
    newest = load_checkpoint(end_path)
    model = average_model_states(load_checkpoint(path)["model"] for _, path in chosen)
    state = {
        "step": end_step,
        "model": model,
        "architecture": newest["architecture"],
        "config": newest["config"],
        "averaged_from": names,
    }
    return save_checkpoint(state, out)
