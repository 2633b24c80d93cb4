"""Which code trained a run: a content hash of the Python sources that decide the trained weights
(and the git commit when the package lives in a git checkout). Comparisons must hold every system
to one code version (issue 16); ``dmao compare`` warns when runs differ.

Hashed: ``dmao/{config,data,method,models,training}``. Not hashed: decoding, scoring, export, the
CLI and reports — they do not change a trained model, and ``dmao compare`` decodes and scores
every run again with the current code whenever it builds its table."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

__all__ = ["code_version"]

_PACKAGE = Path(__file__).resolve().parents[1]
_TRAINING_CODE = ("config", "data", "method", "models", "training")


@functools.cache
def code_version() -> str:
    """``src:<12 hex digits of the sources' sha256>`` plus `` git:<commit>[+dirty]`` if known.

    The source hash is what a comparison checks: it changes with any edit of a ``.py`` file that
    shapes training, committed or not, and with nothing else.
    """
    digest = hashlib.sha256()
    files = [p for sub in _TRAINING_CODE for p in (_PACKAGE / sub).rglob("*.py")]
    for path in sorted(files):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    version = f"src:{digest.hexdigest()[:12]}"
    try:
        commit = subprocess.run(
            ["git", "-C", str(_PACKAGE), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(_PACKAGE), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} git:{commit}{'+dirty' if dirty else ''}"
