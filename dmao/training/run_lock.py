"""One training process per run folder.

Two processes writing the same run folder interleave their checkpoints and metrics (seen here: a
resumed run started while the interrupted one was still committing its last checkpoint, and each
later resumed from the other's files). ``RUN/.lock`` holds an exclusive ``flock`` for the life of
the training process; the kernel drops it when the process ends, however it ends (SIGKILL
included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["RunLock", "RunLockedError"]


class RunLockedError(FileExistsError):
    """Another live process holds the run folder."""


class RunLock:
    """Exclusive lock on ``run_dir``; :meth:`acquire` raises :class:`RunLockedError` when taken."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._file = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 — held open for the life of the lock
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunLockedError(
                f"{self.path.parent} is in use by another dmao process (pid {holder}); wait for it "
                "to finish (a stopped run commits its checkpoint first) or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
