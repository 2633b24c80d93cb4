"""What a training step costs besides FLOPs: ATen ops dispatched, and peak memory.

- :class:`OpCounter` counts the ATen ops that reach the dispatcher below autograd, forward,
  backward and optimizer alike. Ops called from inside another op's kernel are not seen (the
  mode is off while an op runs), so this is the number of top-level ATen calls: on a GPU each one
  launches at least one kernel, which is what bounds a small model's step (issue 17).
- :class:`PeakMemory` reports the peak of a window: ``torch.cuda.max_memory_allocated`` on CUDA
  (reset at the window's start: weights, gradients, optimizer state and activations); on CPU the
  peak resident set size (``VmHWM`` of ``/proc/self/status``, reset at the window's start by
  writing ``5`` to ``/proc/self/clear_refs``, Linux >= 4.0) minus a baseline RSS taken before the
  model was built (after :func:`release_free_memory`), so Python and torch's libraries are left
  out. Where ``clear_refs`` cannot be written the high-water mark of the whole process
  (``resource.getrusage().ru_maxrss``) is used, which may include an earlier peak (the method is
  reported). Work that is not part of a training
  step (counting FLOPs on a copy of the model) runs inside :meth:`PeakMemory.excluded`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCounter", "PeakMemory", "current_rss_bytes", "release_free_memory"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class OpCounter(TorchDispatchMode):
    """Count top-level ATen op calls inside ``with OpCounter() as ops:`` (``ops.counts``)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """All op calls counted."""
        return sum(self.counts.values())


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _ru_maxrss_bytes() -> int:
    """``ru_maxrss`` in bytes (KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def release_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the OS (glibc ``malloc_trim``;
    a no-op elsewhere), so that an RSS taken next holds no freed-but-kept memory that later
    allocations would reuse unseen: in a long-lived process (a test session, a notebook) that
    memory once hid a whole training step from the peak-minus-baseline measurement."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def current_rss_bytes() -> int:
    """This process's resident set size now (``VmRSS``; ``ru_maxrss`` where unavailable)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


class PeakMemory:
    """Peak memory of a window: call :meth:`start` at its beginning, :meth:`peak_bytes` at its
    end (see the module docstring for what is counted on each device).

    Args:
        device: the training device.
        baseline_rss_bytes: CPU only: the RSS subtracted from the peak (taken before the model
            and data were set up).
    """

    def __init__(self, device: torch.device, baseline_rss_bytes: int = 0) -> None:
        self.device = device
        self.baseline_rss_bytes = baseline_rss_bytes
        self.method = ""
        self._max = 0
        self._reset = False

    def start(self) -> None:
        """Reset the high-water mark: the window begins."""
        self._max = 0
        self._reset_mark()

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Leave what runs inside out of the window's peak (e.g. counting FLOPs on a copy of
        the model): the peak so far is kept and the mark is reset afterwards."""
        self._max = max(self._max, self._mark())
        try:
            yield
        finally:
            self._reset_mark()

    def peak_bytes(self) -> int:
        """Peak bytes since :meth:`start`, minus the baseline on CPU."""
        peak = max(self._max, self._mark())
        if self.device.type == "cuda":
            return peak
        return max(peak - self.baseline_rss_bytes, 0)

    def peak_rss_bytes(self) -> int | None:
        """CPU: the absolute peak RSS of the window (None on CUDA)."""
        if self.device.type == "cuda":
            return None
        return max(self._max, self._mark())

    def _reset_mark(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated (reset before the measured steps)"
            return
        try:
            _CLEAR_REFS.write_text("5")
            reset = _status_kib("VmHWM") is not None
        except OSError:
            reset = False
        self.method = (
            "peak RSS (VmHWM, reset before the measured steps) minus the RSS before setup"
            if reset
            else "peak RSS of the process (ru_maxrss, not resettable here) minus the RSS before "
            "setup"
        )
        self._reset = reset

    def _mark(self) -> int:
        """The high-water mark now: bytes allocated on CUDA, resident bytes on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        kib = _status_kib("VmHWM") if self._reset else None
        return kib * 1024 if kib is not None else _ru_maxrss_bytes()
