"""One process at a time prepares a corpus or a manifest folder; the others wait, then reuse it.

Runs started side by side (``dmao compare --jobs N``, two ``dmao train`` on one manifest folder)
used to prepare the same folder at once: both wrote ``.cuts_dev.tmp.jsonl.gz`` and the second
rename failed (seen in CI). An exclusive ``flock`` on ``FOLDER/.prepare.lock`` serialises them;
the kernel drops it when its holder ends, however it ends, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_NAME", "folder_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".prepare.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block.

    Blocks while another process holds it, saying so once in the log (``what`` names the work,
    e.g. ``"manifests"``). Locks taken through separate calls exclude each other also within one
    process (``flock`` is per open file). In a read-only folder no lock is taken (no writer can
    race there).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        f = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 — closed by the with below
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # A read-only folder (shared, prepared manifests): nobody can write there, so there is
        # nothing to serialise; a missing part then fails with the writer's own clear error.
        log.debug("%s is read-only; no lock taken", folder)
        yield
        return
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            log.info("waiting for process %s, which prepares the %s in %s", holder, what, folder)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
