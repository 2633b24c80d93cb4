"""Atomic, versioned checkpoints with retention.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickled classes). It is written to a temporary name in the
same directory, flushed to disk and then renamed (the fairseq2 / torch.distributed.checkpoint
pattern): a crash or a full disk during the save never leaves a partial file under a checkpoint's
name, and the previous checkpoint stays intact. Old step checkpoints are deleted only after the new
one is committed.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_SCHEMA_VERSION",
    "CheckpointError",
    "capture_rng_state",
    "latest_checkpoint",
    "link_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_rng_state",
    "save_checkpoint",
    "step_checkpoint_path",
]

CHECKPOINT_SCHEMA_VERSION = 1
"""Bumped whenever the layout of the checkpoint dict changes incompatibly."""

_STEP_RE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file."""


def step_checkpoint_path(directory: Path, step: int) -> Path:
    """``directory/step-<step:08d>.pt``."""
    return Path(directory) / f"step-{step:08d}.pt"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically to ``path`` (temporary file, fsync, rename).

    Raises:
        CheckpointError: when writing fails (for example a full disk); the temporary file is
            removed and any earlier file at ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"schema_version": CHECKPOINT_SCHEMA_VERSION, **state}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {path}: {err}. The previous checkpoints are intact."
        ) from err
    return path


def link_checkpoint(source: Path, target: Path) -> None:
    """Make ``target`` (e.g. ``best.pt``) refer to the committed checkpoint ``source``, atomically.

    A hard link costs no disk space and survives the pruning of ``source``; where links are not
    supported the file is copied.
    """
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its schema version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise CheckpointError(f"could not read checkpoint {path}: {err}") from err
    version = state.get("schema_version")
    if version != CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint schema version {version!r}; this dmao reads version "
            f"{CHECKPOINT_SCHEMA_VERSION}"
        )
    return state


def list_step_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Committed step checkpoints in ``directory`` as (step, path), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest committed step checkpoint, or None."""
    found = list_step_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints; returns the deleted paths."""
    found = list_step_checkpoints(directory)
    doomed = [p for _, p in found[:-keep_last]] if keep_last > 0 else []
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator a run uses, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
