"""The files of an export folder: content hashes, the manifest's file table and its check,
JSON in and out, and the modes a plain create gives (``dmao.export.artefact``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "default_modes",
    "file_table",
    "read_json",
    "sha256_file",
    "verify_files",
    "write_json",
]


def default_modes(directory: Path) -> None:
    """Give ``directory`` and everything below it the modes a plain create gives under the
    current umask (files 0666 & ~umask, folders 0777 & ~umask)."""
    umask = _umask()
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` can only
    set it, and setting it briefly would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": n, "sha256": hex}}`` of every file under ``directory``."""
    return {
        path.relative_to(directory).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def verify_files(
    directory: Path, files: dict[str, dict[str, Any]], skip: set[str], manifest: str
) -> None:
    """Check every file of ``files`` (the table of ``directory / manifest``) but ``skip``: present,
    with the recorded size and SHA-256."""
    if not files:
        raise ValueError(f"{directory / manifest} lists no files")
    for name, entry in files.items():
        if name in skip:
            continue
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"export {directory}: {name} is missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ValueError(
                f"export {directory}: {name} differs from the {manifest} record (changed "
                "or corrupted after export)"
            )


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
