"""Graceful stop on SIGTERM/SIGINT: the training loop finishes its step, commits a checkpoint and
exits with 128 + signal (RELIABILITY.md item 6)."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopOnSignal"]


class StopOnSignal:
    """Within the ``with`` block, SIGTERM and SIGINT only set ``signum``; the training loop
    finishes its step, commits a checkpoint and exits (RELIABILITY.md item 6)."""

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
