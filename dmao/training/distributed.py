"""Data-parallel training across processes: what ``torchrun`` sets up, as one small object.

``torchrun --nproc_per_node N -m dmao.cli.main train ...`` starts N copies of ``dmao train`` with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:meth:`DistributedContext.from_env` reads them, initialises the process group (NCCL for CUDA, gloo
for CPU) and picks this process's device (``cuda:LOCAL_RANK``). Without those variables (or with
``WORLD_SIZE=1``) it is a single-process context whose collectives return their input, so the
training loop calls them unconditionally.

Every helper here is a collective: all ranks must call it, in the same order. The training loop
keeps that invariant by making every branch that contains a collective depend only on values the
ranks have agreed on (an all-reduced flag, the step counter, the config).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "ReplicaMismatchError",
    "parameter_digest",
    "resolve_device",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# torchrun sets all of these; a process started with only some of them is misconfigured.
_ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class ReplicaMismatchError(RuntimeError):
    """Data-parallel ranks hold different values where they must agree (a DDP invariant broke)."""


def resolve_device(name: str, *, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The training device from ``train.device``.

    Args:
        name: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: this process's rank on its node; under ``torchrun`` each process takes
            ``cuda:LOCAL_RANK``.
        distributed: whether several processes train together (then ``cuda:N`` is refused: the
            device follows ``LOCAL_RANK``).

    Raises:
        ValueError: an unknown name, CUDA asked for but unavailable, or ``cuda:N`` under torchrun.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"train.device={name!r} but CUDA is not available (torch {torch.__version__}); "
                "use train.device=cpu or auto"
            )
        if name != "cuda" and distributed:
            raise ValueError(
                f"train.device={name!r}: under torchrun every process uses cuda:LOCAL_RANK; "
                "set train.device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        index = local_rank if name == "cuda" else int(name.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"train.device: cuda:{index} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
        return torch.device("cuda", index)
    raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N, got {name!r}")


@dataclass
class DistributedContext:
    """Rank, world size and device of this process, plus the collectives the recipe uses."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # noqa: RUF009 (immutable value)
    owns_group: bool = False
    """Whether :meth:`from_env` created the process group (and :meth:`close` destroys it)."""

    @classmethod
    def from_env(cls, device_setting: str, *, timeout_s: float = 1800.0) -> DistributedContext:
        """Single process, or one rank of a ``torchrun`` job (process group initialised here).

        Args:
            device_setting: ``train.device``.
            timeout_s: how long a collective waits for the other ranks before failing.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=resolve_device(device_setting))
        missing = [k for k in _ENV_KEYS if k not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start distributed "
                "training with torchrun (it sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT)"
            )
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        device = resolve_device(device_setting, local_rank=local_rank, distributed=True)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=timeout_s),
                device_id=device if device.type == "cuda" else None,
            )
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise RuntimeError(
                f"process group has rank {dist.get_rank()}/{dist.get_world_size()}, "
                f"environment says {rank}/{world_size}"
            )
        log.info("rank %d/%d on %s (%s)", rank, world_size, device, dist.get_backend())
        return cls(rank, local_rank, world_size, device, owns)

    # ------------------------------------------------------------------ basics
    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a short list of numbers (in float64)."""
        if not self.distributed:
            return list(values)
        # The collective device: NCCL only reduces CUDA tensors.
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def all_gather_object(self, obj: T) -> list[T]:
        """``obj`` of every rank, in rank order (pickled; for small objects)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 while the other ranks wait; re-raise its failure on every rank.

        A plain barrier after a rank-0-only step would leave the other ranks waiting forever
        (until the collective timeout) when that step fails; here rank 0 sends its error and
        every rank raises. Returns ``fn()`` on rank 0 and None elsewhere.
        """
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except BaseException as err:  # sent to the peers, then re-raised
                error = err
        summary = None if error is None else f"{type(error).__name__}: {error}"
        message = self.broadcast_object(summary)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"rank 0 failed, so rank {self.rank} stops too: {message}")
        return result

    def check_same(self, what: str, value: Any) -> None:
        """Raise :class:`ReplicaMismatchError` on every rank unless ``value`` is equal on all.

        ``value`` is reduced to a SHA-256 digest of its pickle, so only 64 characters travel;
        pass plain data (lists, dicts, numbers, strings) whose pickle is deterministic.
        """
        if not self.distributed:
            return
        digest = hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()
        digests = self.all_gather_object(digest)
        if len(set(digests)) > 1:
            detail = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
            raise ReplicaMismatchError(
                f"data-parallel ranks disagree on {what} ({detail}); the replicas have diverged"
            )

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    # ------------------------------------------------------------------ model wrapping
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (itself if single).

        Construction broadcasts rank 0's parameters and buffers and checks that every rank has
        the same parameter shapes, so it is also how the ranks are (re)synchronised after a DMAO
        event rebuilt the modules.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # BatchNorm running statistics: rank 0's are sent to all ranks before every forward, so
        # replicas (and checkpoints) agree. torch 2.13 renamed the switch.
        sync = (
            {"forward_sync_buffers": True}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": True}
        )
        return DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None, **sync
        )

    @staticmethod
    def no_sync(model: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync()`` when ``skip`` (accumulate locally, no gradient all-reduce)."""
        if skip and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()


def parameter_digest(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """``(name, shape, sha256 of the bytes)`` of every parameter of ``model``.

    Exact (bit-level) identity of replicas; it reads every parameter once, so call it at events,
    not every step. Buffers are left out: each rank updates its BatchNorm running statistics in
    its own forward, and DDP overwrites them with rank 0's before the next one.
    """
    out = []
    for name, tensor in model.named_parameters():
        data = tensor.detach().cpu().contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        out.append((name, tuple(data.shape), hashlib.sha256(data.numpy().tobytes()).hexdigest()))
    return out
