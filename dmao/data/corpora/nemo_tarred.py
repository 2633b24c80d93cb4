"""NeMo's tarred ASR datasets: the audio of a manifest's lines held in tar shards.

NeMo's ``scripts/speech_recognition/convert_to_tarred_audio_dataset.py`` writes, in its target
folder (``bucket1/``, ``bucket2/``, ... each such a folder when it buckets by duration)::

    tarred_audio_manifest.json   one line per utterance; "audio_filepath" is a member's name,
                                 "shard_id" the shard that holds it
    audio_0.tar, audio_1.tar, ...
    metadata.yaml, sharded_manifests/   (not needed here)

A member is a whole file, its path squashed into its name (``wavs/a.wav`` → ``wavs_a.wav``);
the lines of one file that differ only in ``offset`` are written once, the later ones named
``<name>-sub<N>.<ext>`` in the manifest (the script's own rule, which is why it asks for names
without ``-sub``); with ``--slice_with_offset`` each line is its own member (its span cut out,
``offset`` moved to ``source_audio_offset``); with ``--force_codec`` a member's suffix is the
codec's while the manifest keeps the original one. So a member is found by its name without
suffix (NeMo's own "file id"), the manifest's ``-sub<N>`` taken off.

dmao reads the shards without NeMo or webdataset: one pass over each shard (Python's
``tarfile``, streaming, so a shard is never held in memory), its members copied out as files
(:func:`extract_members`), since lhotse reads a recording from a file.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Collection, Iterator
from pathlib import Path, PurePosixPath

from dmao.data.audio_files import audio_info, write_audio_file

__all__ = [
    "TARRED_MANIFEST",
    "extract_members",
    "member_id",
    "read_members",
    "shard_file",
    "tarred_manifests",
]

TARRED_MANIFEST = "tarred_audio_manifest.json"
"""The manifest NeMo's tarring script writes beside its shards."""
_SUB = re.compile(r"-sub\d+$")


def tarred_manifests(folder: Path) -> list[Path]:
    """The tarred manifests of one part's folder: ``folder/tarred_audio_manifest.json``, or
    one per bucket folder (``folder/bucket*/tarred_audio_manifest.json``), sorted; empty when
    ``folder`` holds neither."""
    if (folder / TARRED_MANIFEST).is_file():
        return [folder / TARRED_MANIFEST]
    if not folder.is_dir():
        return []
    return sorted(m for m in folder.glob(f"bucket*/{TARRED_MANIFEST}") if m.is_file())


def shard_file(manifest: Path, shard: int) -> Path:
    """The shard ``shard`` of a tarred manifest: ``audio_<shard>.tar`` beside it."""
    return manifest.parent / f"audio_{shard}.tar"


def member_id(name: str) -> str:
    """The id of the member a manifest's ``audio_filepath`` names: its file name without
    suffix and without the tarring script's ``-sub<N>``."""
    stem = PurePosixPath(name).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return _SUB.sub("", stem)


def read_members(
    shard: Path, wanted: Collection[str]
) -> Iterator[tuple[str, bytes | tuple[str, str]]]:
    """Each member id in ``wanted`` (:func:`member_id`) once, with the member's bytes, in the
    shard's order, in one streaming pass (the first member of an id wins); then the ids not
    read, with ``(reason, detail)`` in the reasons of :mod:`dmao.data.bad_audio`: the shard
    missing, not a tar file or cut short, or no member of that id."""
    left = set(wanted)
    problem = ("missing_audio", f"no member of that name in {shard}")
    if not shard.is_file():
        problem = ("missing_audio", f"its shard {shard} does not exist")
    else:
        try:
            with tarfile.open(shard, mode="r|*") as tar:
                for member in tar:
                    key = member_id(member.name)
                    handle = tar.extractfile(member) if key in left and member.isfile() else None
                    if handle is not None:
                        left.discard(key)
                        yield key, handle.read()
                    if not left:
                        break
        except (OSError, tarfile.TarError) as err:
            problem = ("unreadable_audio", f"{shard}: not a readable tar file ({err})")
    for key in sorted(left):
        yield key, problem


def extract_members(
    shard: Path, wanted: Collection[str], folder: Path
) -> dict[str, Path | tuple[str, str]]:
    """Copy the members ``wanted`` (ids) of ``shard`` out as ``folder/<id>.<ext>``
    (:func:`~dmao.data.audio_files.write_audio_file`, bytes unchanged). Returns, for each id,
    the file written or ``(reason, detail)`` (:func:`read_members`' problems, or a member that
    is no audio)."""
    out: dict[str, Path | tuple[str, str]] = {}
    for key, data in read_members(shard, wanted):
        info = data if isinstance(data, tuple) else audio_info(data, f"member {key} of {shard}")
        out[key] = info if isinstance(info, tuple) else write_audio_file(data, folder, key)
    return out
