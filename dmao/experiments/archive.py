"""Records of finished runs kept outside the comparison folder (``dmao compare --archive DIR``).

A comparison of many seeds trains for days, and the machine it runs on may not keep its work
folder between sessions (a cloud instance, a CI worker, a fresh checkout), while a git repository
or a mounted bucket does. With ``--archive DIR`` every run of the comparison, as soon as it has
finished, is decoded on its scored parts and its *record* — small files, no checkpoints — is
copied to ``DIR/<system>/seed<k>``:

- ``config.yaml``, ``train_summary.json``, ``metrics.jsonl`` and ``architecture.json`` (what the
  controls and retrains build from),
- for a scored run, the decode of each dev/test part with the run's own decoding settings
  (``decode/<part>-<method>/result.json`` and ``hypotheses.txt``), and ``record.json``, which
  names them (the comparison's table reads a recorded run's scores from it: it is scored once,
  when it finishes).

When the same command runs again on a machine where ``OUT/<system>/seed<k>`` is missing or
unfinished, the record is restored into it first: the run counts as done (nothing is retrained),
the runs that wait for it start, and its table rows are read from the recorded decode, since
there is no checkpoint to decode again. A record is restored only into a run whose configuration
it could have resumed (the rule of ``dmao train --resume``); otherwise the command stops and says
which settings differ. A few hundred kB per run: small enough to commit beside the results.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from dmao.config import ExperimentConfig, config_from_dict, config_to_dict
from dmao.experiments.jobs import finished_summary, has_checkpoints

__all__ = [
    "RECORD",
    "ArchivedScore",
    "archive_run",
    "archived_score",
    "has_record",
    "restore_run",
]

log = logging.getLogger(__name__)

RECORD = "record.json"
_RUN_FILES = ("config.yaml", "train_summary.json", "metrics.jsonl", "architecture.json")
_DECODE_FILES = ("result.json", "hypotheses.txt")


@dataclass(frozen=True)
class ArchivedScore:
    """A part's recorded decode: error rates and the checkpoint they were measured on."""

    wer: float
    cer: float
    checkpoint: str


def has_record(run_dir: Path, steps: int) -> bool:
    """Whether ``run_dir`` holds the record of its decodes at ``steps`` (``record.json``, written
    when the finished run was archived; the table then reads its scores from it)."""
    path = run_dir / RECORD
    return path.is_file() and json.loads(path.read_text()).get("steps") == steps


def archive_run(run_dir: Path, dest: Path, splits: Sequence[str], steps: int) -> bool:
    """Decode ``splits`` of the finished run ``run_dir`` and copy its record to ``dest``.

    Does nothing when ``dest`` already holds a finished record (``steps``) or when the run is not
    finished. The copy is written next to ``dest`` and renamed into place, so an interrupted
    archive never looks finished. Returns whether a record was written.
    """
    if finished_summary(dest, steps) is not None:
        return False
    if finished_summary(run_dir, steps) is None:
        return False
    from dmao.decoding.decode_run import decode_split

    parts = {}
    for split in splits:
        decoded = decode_split(run_dir, split, progress_bar=False)
        parts[split] = {
            "wer": decoded.score.wer,
            "cer": decoded.score.cer,
            "checkpoint": decoded.checkpoint,
            "decode_dir": decoded.hypotheses_path.parent.relative_to(run_dir).as_posix(),
        }
    (run_dir / RECORD).write_text(json.dumps({"steps": steps, "parts": parts}, indent=1) + "\n")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (*_RUN_FILES, RECORD):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
    for part in parts.values():
        (tmp / part["decode_dir"]).mkdir(parents=True)
        for name in _DECODE_FILES:
            shutil.copy2(run_dir / part["decode_dir"] / name, tmp / part["decode_dir"] / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log.info("%s archived to %s", run_dir, dest)
    return True


def restore_run(source: Path, run_dir: Path, config: ExperimentConfig) -> bool:
    """Copy the finished record ``source`` into ``run_dir`` when the run there is not finished.

    Raises ``ValueError`` when the record's configuration could not have been resumed by
    ``config`` (a different recipe under the same name). Returns whether it restored.
    """
    steps = config.train.end_step
    if finished_summary(run_dir, steps) is not None:
        return False
    if finished_summary(source, steps) is None:
        return False
    from dmao.training.checkpoint import CheckpointError
    from dmao.training.data_setup import check_resume_compatible

    path = source / "config.yaml"
    with open(path) as f:
        # Through the dataclasses, as a resume reads a checkpoint's config: settings added since
        # the record was written take their defaults.
        saved = config_to_dict(config_from_dict(yaml.safe_load(f), source=str(path)))
    try:
        check_resume_compatible(saved, config_to_dict(config), path)
    except CheckpointError as exc:
        raise ValueError(f"the archived record does not belong to {run_dir}: {exc}") from None
    if has_checkpoints(run_dir):
        # The record is of the finished run: the unfinished local one is set aside, not deleted.
        aside = run_dir / "checkpoints.unfinished"
        shutil.rmtree(aside, ignore_errors=True)
        (run_dir / "checkpoints").rename(aside)
        log.warning("%s: unfinished; its archived record %s replaces it (checkpoints kept in %s)",
                    run_dir, source, aside)  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, run_dir, dirs_exist_ok=True)
    log.info("%s restored from %s", run_dir, source)
    return True


def archived_score(run_dir: Path, split: str) -> ArchivedScore:
    """The recorded decode of ``split`` in a restored run (``record.json``)."""
    path = run_dir / RECORD
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no checkpoints to decode and no {RECORD} (a run restored from an archive "
            "has one): train it again or restore its record"
        )
    parts = json.loads(path.read_text())["parts"]
    if split not in parts:
        raise KeyError(f"{path}: no recorded decode of {split!r} (recorded: {sorted(parts)})")
    part = parts[split]
    return ArchivedScore(wer=part["wer"], cer=part["cer"], checkpoint=part["checkpoint"])
