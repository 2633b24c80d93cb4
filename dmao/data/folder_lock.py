"""One process at a time prepares a corpus or a manifest folder; the others wait, then reuse it.

Runs started side by side (``dmao compare --jobs N``, two ``dmao train`` on one manifest folder)
used to prepare the same folder at once: both wrote ``.cuts_dev.tmp.jsonl.gz`` and the second
rename failed (seen in CI). An exclusive ``flock`` on ``FOLDER/.prepare.lock`` serialises them;
the kernel drops it when its holder ends, however it ends, so a crash never leaves a stale lock.

The lock file is removed when a prepare succeeds (issue 18: a prepared folder should hold only
what was prepared). Removing a lock file is safe only with care, because ``flock`` locks the
open file (inode), not the name: a waiter blocked on the old file would be granted its lock
after the removal, while a newcomer creates a new file of the same name and locks that one at
once — two holders. So:

- the holder unlinks the file *while it still holds the lock*, then unlocks;
- whoever is granted the lock checks that the name still leads to the file it locked
  (same device and inode); if not, the file was removed under it, and it opens the name
  again and waits anew.

Every holder has thus locked the file the name currently leads to, and there is only one such
file at a time. After a failure the lock file is left (it is harmless and names the last holder's
process id); a later successful prepare removes it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["LOCK_NAME", "folder_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".prepare.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block.

    Blocks while another process holds it, saying so once in the log (``what`` names the work,
    e.g. ``"manifests"``). Locks taken through separate calls exclude each other also within one
    process (``flock`` is per open file). In a read-only folder no lock is taken (no writer can
    race there). When the block completes without an exception, the lock file is removed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    said_waiting = False
    while True:
        try:
            f = open(path, "a+")  # noqa: SIM115 — closed below, on every path
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A read-only folder (shared, prepared manifests): nobody can write there, so there
            # is nothing to serialise; a missing part then fails with the writer's own error.
            log.debug("%s is read-only; no lock taken", folder)
            yield
            return
        try:
            said_waiting = _lock(f, folder, what, said_waiting)
        except BaseException:
            f.close()
            raise
        if _still_named(f, path):
            break
        # Removed (or replaced) by the holder we waited for: lock what the name is now.
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
    with f:
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
            _remove(f, path)  # still holding the lock: see the module docstring
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _lock(f: IO[str], folder: Path, what: str, said_waiting: bool) -> bool:
    """Take the exclusive lock on ``f``, waiting if needed; returns whether waiting was logged."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return said_waiting
    except BlockingIOError:
        pass
    if not said_waiting:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        log.info("waiting for process %s, which prepares the %s in %s", holder, what, folder)
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    return True


def _still_named(f: IO[str], path: Path) -> bool:
    """Whether ``path`` still names the open file ``f`` (not removed or replaced since)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(f.fileno())
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _remove(f: IO[str], path: Path) -> None:
    """Unlink ``path`` if it still names ``f`` (someone else's lock file is never removed)."""
    if not _still_named(f, path):
        return
    try:
        path.unlink()
    except OSError as err:  # e.g. a folder where files may be created but not deleted
        log.debug("could not remove %s: %s", path, err)
