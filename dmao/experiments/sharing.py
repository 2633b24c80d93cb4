"""``dmao compare --share-prefix``: DMAO systems that part only at their first event train the
steps before it once per seed.

Systems that differ only in event-time settings (:data:`dmao.method.prefix.EVENT_TIME_KEYS`:
growth initialisation, re-warm-up, reference mode, perturbation-only, fractions, budget unit, …)
make exactly the same updates before their first event. For every seed, such a group's common
steps are trained once, as ``OUT/prefix-<first system>-<step>/seed<k>`` (the first system's recipe,
stopped early); as soon as it has finished, every member that has not started yet begins as a
copy of that run and resumes from its last checkpoint, as if it had trained those steps itself
(the resume accepts the differing event-time settings, see
:meth:`~dmao.training.recipe_state.RunStateMixin.load_state`). With ``--jobs N`` the runs that
share nothing (the baseline) train beside the prefixes.

The shared step is the last one before every member's first event (and before a GradMax
member's statistics window, :func:`~dmao.method.prefix.last_shared_step`) that lies on the
recipe's validation, logging and checkpoint grid, so a member's log, dev WERs and ``best.pt``
are those of a run trained alone. A member's ``train_summary.json`` counts the prefix's
training time too.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dmao.config import ExperimentConfig, config_to_dict
from dmao.experiments.jobs import finished_summary
from dmao.method.prefix import last_shared_step, without_event_time
from dmao.training.checkpoint import link_checkpoint, list_step_checkpoints

__all__ = [
    "PREFIX",
    "SharedPrefix",
    "plan_shared_prefixes",
    "prefixes_to_train",
    "shared_prefix_plan",
    "sharing_hint",
    "start_from_prefix",
    "waiting_members",
]

log = logging.getLogger(__name__)

PREFIX = "prefix-"
"""Run folders of shared prefixes are ``OUT/prefix-<system>-<step>/seed<k>``: the first member's
system and the shared step (another step, e.g. after a GradMax variant joined, is another run)."""

FORK_RECORD = "shared_prefix.json"
_NOT_COPIED = {".lock", "config.yaml", "train_summary.json", "architecture.json", "checkpoints"}


@dataclass(frozen=True)
class SharedPrefix:
    """The steps ``members`` (labels, run folders) share, trained once as ``label``."""

    label: str  # "prefix-<system>-<step>/seed<k>"
    run_dir: Path
    config: ExperimentConfig  # the first member's recipe, stopped at ``step``
    step: int
    members: tuple[tuple[str, Path, int], ...]  # label, run folder, the step it ends at


def plan_shared_prefixes(
    runs: list[tuple[str, ExperimentConfig, Path]], out_dir: Path
) -> list[SharedPrefix]:
    """The shared prefixes of ``runs`` (label ``"system/seed<k>"``, config, run folder): one per
    group of two or more DMAO runs whose configs are equal but for event-time settings and the
    step they stop at, with a shared step > 0. Members that finished or started already still
    belong to their group (``--status`` shows them); :func:`start_from_prefix` skips them."""
    groups: dict[str, list[tuple[str, ExperimentConfig, Path]]] = {}
    for label, config, run_dir in runs:
        if not config.dmao.enabled:
            continue
        settings = config_to_dict(config)
        settings["dmao"] = without_event_time(settings["dmao"])
        settings["train"] = {k: v for k, v in settings["train"].items() if k != "stop_at_step"}
        groups.setdefault(json.dumps(settings, sort_keys=True, default=str), []).append(
            (label, config, run_dir)
        )
    prefixes = []
    for members in groups.values():
        if len(members) < 2:
            continue
        first_label, first_config, _ = members[0]
        train = first_config.train
        limit = min(last_shared_step(c.dmao, c.train.max_steps) for _, c, _ in members)
        limit = min(limit, *(c.train.end_step for _, c, _ in members))
        # Where a run alone logs, validates and saves too (its best.pt is chosen at saves).
        grid = math.lcm(
            train.valid_every_steps, train.log_every_steps, train.checkpoint_every_steps
        )
        step = limit // grid * grid
        if step <= 0:
            log.info("%s and the others of its group share no step on the validation, logging "
                     "and checkpoint grid", first_label)  # fmt: skip
            continue
        system, seed = first_label.split("/", 1)
        config = copy.deepcopy(first_config)
        config.train.stop_at_step = step
        prefixes.append(
            SharedPrefix(
                label=f"{PREFIX}{system}-{step}/{seed}",
                run_dir=out_dir / f"{PREFIX}{system}-{step}" / seed,
                config=config,
                step=step,
                members=tuple((label, d, c.train.end_step) for label, c, d in members),
            )
        )
    return prefixes


def waiting_members(prefix: SharedPrefix) -> list[tuple[str, Path]]:
    """The members of ``prefix`` that would start from it (label, run folder): not finished and
    without a checkpoint of their own."""
    return [
        (label, run_dir)
        for label, run_dir, end in prefix.members
        if finished_summary(run_dir, end) is None
        and not list_step_checkpoints(run_dir / "checkpoints")
    ]


def start_from_prefix(prefix: SharedPrefix, run_dir: Path) -> None:
    """Make ``run_dir`` (a member without checkpoints) a copy of the finished prefix run: its
    tokeniser, data report, logs and TensorBoard files, and its last checkpoint (and ``best.pt``)
    as hard links where the file system allows; ``shared_prefix.json`` records where from."""
    checkpoints = list_step_checkpoints(prefix.run_dir / "checkpoints")
    if finished_summary(prefix.run_dir, prefix.step) is None or not checkpoints:
        raise RuntimeError(f"{prefix.label} has not finished; it cannot be shared yet")
    if list_step_checkpoints(run_dir / "checkpoints"):
        raise FileExistsError(f"{run_dir} has checkpoints of its own; it resumes from them")
    staging = run_dir.with_name(f".{run_dir.name}.from-prefix")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for item in prefix.run_dir.iterdir():
        if item.name in _NOT_COPIED:
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name)
        else:
            shutil.copy2(item, staging / item.name)
    (staging / "checkpoints").mkdir()
    step, last = checkpoints[-1]
    for source in (last, prefix.run_dir / "checkpoints" / "best.pt"):
        if source.is_file():
            link_checkpoint(source, staging / "checkpoints" / source.name)
    record = {"prefix": str(prefix.run_dir), "label": prefix.label, "step": step}
    (staging / FORK_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    # The member's folder held nothing worth keeping (no checkpoint): replaced as a whole.
    shutil.rmtree(run_dir, ignore_errors=True)
    os.replace(staging, run_dir)
    log.info("%s starts from %s at step %d", run_dir, prefix.label, step)


def prefixes_to_train(
    runs: list[tuple[str, ExperimentConfig, Path]], out_dir: Path
) -> list[SharedPrefix]:
    """The shared prefixes worth using now: some member would start from it, and the prefix
    has finished already or two or more members would (one alone just trains from step 0)."""
    return [
        p
        for p in plan_shared_prefixes(runs, out_dir)
        if (waiting := waiting_members(p))
        and (len(waiting) >= 2 or finished_summary(p.run_dir, p.step) is not None)
    ]


def shared_prefix_plan(
    runs: list[tuple[str, ExperimentConfig, Path]], out_dir: Path
) -> tuple[list[tuple[str, ExperimentConfig, Path]], dict[str, tuple[str, Callable[[], None]]]]:
    """What :func:`~dmao.experiments.jobs.train_all` needs to train ``runs`` with their shared
    steps trained once: the prefix runs (label, config, folder), to be queued first, and for
    every member that starts from one, (the prefix's label, the function that makes the member
    a copy of it), for ``train_all``'s ``after``."""
    prefixes = prefixes_to_train(runs, out_dir)
    after = {
        label: (p.label, functools.partial(_start_if_waiting, p, run_dir))
        for p in prefixes
        for label, run_dir in waiting_members(p)
    }
    return [(p.label, p.config, p.run_dir) for p in prefixes], after


def sharing_hint(runs: list[tuple[str, ExperimentConfig, Path]], out_dir: Path) -> str | None:
    """What ``--share-prefix`` would save on ``runs`` now (None: nothing), for a comparison
    run without it."""
    shared = prefixes_to_train(runs, out_dir)
    if not shared:
        return None
    steps = sum(p.step * (len(waiting_members(p)) - 1) for p in shared)
    groups = "; ".join(
        f"{', '.join(label for label, _, _ in p.members)} share {p.step:,}" for p in shared
    )
    return f"--share-prefix would train {steps:,} steps fewer ({groups})"


def _start_if_waiting(prefix: SharedPrefix, run_dir: Path) -> None:
    if not list_step_checkpoints(run_dir / "checkpoints"):
        start_from_prefix(prefix, run_dir)
