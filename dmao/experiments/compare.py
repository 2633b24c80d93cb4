"""Baseline vs DMAO (vs the found architecture retrained from scratch) at the same budget.

Every system trains with the same data, the same number of optimizer steps and the same parameter
budget, for each seed; then dev and test are decoded and one table compares them. Runs live in
``OUT/<system>/seed<k>``; a finished run is skipped and an interrupted one resumed, so the command
can simply be re-run.

Systems:
- ``baseline``: the recipe as given (DMAO off);
- ``dmao``: the DMAO recipe (by default the same recipe with ``dmao.enabled=true``);
- ``control`` (optional): the final architecture of ``dmao/seed<k>`` trained from scratch without
  reallocation (METHOD.md §6: separates "better architecture" from "reallocation in training");
- ``search`` (optional, ``search_retrain``): search-then-retrain at equal budget — the DMAO
  recipe trained until its last event (``OUT/search-phase/seed<k>``, ``train.stop_at_step``),
  then the architecture it found trained from scratch for the remaining steps, so the two
  phases together make exactly the baseline's optimizer steps;
- named variants (optional, for ablations): the DMAO recipe plus a few ``key=value`` overrides,
  e.g. ``Variant("late", ["dmao.last_event_fraction=0.4"])`` trains ``OUT/late/seed<k>``; a
  variant may switch DMAO off and fix an architecture instead (``dmao.enabled=false``,
  ``model.architecture=FILE``: a transplanted or hand-designed allocation at the same budget).
  ``control_from`` / ``search_from`` name the system whose DMAO runs the control and the search
  use (default ``dmao``).

With ``archive`` (``--archive DIR``) each finished run's record (no checkpoints) is kept in
``DIR/<system>/seed<k>`` and restored from there on a machine that lost ``OUT``
(:mod:`dmao.experiments.archive`).

With ``share_prefix`` (``--share-prefix``) the DMAO systems of a seed that differ only in
event-time settings train their steps before the first event once (:mod:`dmao.experiments.sharing`).

Every run records the version of the code that trained it (``train_summary.json``); the summary
warns when a comparison mixes versions.

Besides mean ± standard deviation per system, the summary gives the *paired* WER difference to
the baseline (same seed, same data order): with few seeds it is the fairer test of whether a
difference is larger than the seed-to-seed spread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dmao.config import ExperimentConfig, load_config
from dmao.decoding.decode_run import decode_split
from dmao.experiments.archive import RECORD, archive_run, archived_score, has_record, restore_run
from dmao.experiments.jobs import Record, has_checkpoints, train_all, train_if_needed
from dmao.experiments.sharing import (
    PREFIX,
    prefixes_to_train,
    shared_prefix_plan,
    sharing_hint,
    waiting_members,
)
from dmao.experiments.status import PlannedRun, RunStatus, run_status
from dmao.experiments.summary import RunResult, summarise, write_outputs
from dmao.method.schedule import config_event_schedule

__all__ = [
    "ComparisonResult",
    "RunResult",
    "RunStatus",
    "Variant",
    "comparison_status",
    "parse_variant",
    "run_comparison",
    "summarise",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """An ablation system: the DMAO recipe with ``overrides`` applied, run as ``OUT/<name>``."""

    name: str
    overrides: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"variant name must be letters, digits, - or _, got {self.name!r}")
        if self.name in _RESERVED or self.name.startswith(PREFIX):
            raise ValueError(
                f"variant name {self.name!r} is reserved ({', '.join(_RESERVED)}, {PREFIX}*)"
            )


_RESERVED = ("baseline", "dmao", "control", "search", "search-phase", "figures")


def parse_variant(spec: str) -> Variant:
    """``"late:dmao.last_event_fraction=0.4,dmao.total_fraction=0.1"`` → :class:`Variant`."""
    name, sep, rest = spec.partition(":")
    overrides = tuple(o for o in rest.split(",") if o)
    if not sep or not overrides or any("=" not in o for o in overrides):
        raise ValueError(
            f"--variant expects NAME:section.key=value[,section.key=value...], got {spec!r}"
        )
    return Variant(name, overrides)


@dataclass
class ComparisonResult:
    """All runs, and where the table and figures were written."""

    runs: list[RunResult]
    table: str
    files: list[Path] = field(default_factory=list)


def run_comparison(
    baseline_config: Path | None,
    dmao_config: Path | None,
    out_dir: Path,
    *,
    seeds: list[int],
    control: bool = False,
    overrides: list[str] | None = None,
    variants: list[Variant] | None = None,
    jobs: int = 1,
    search_retrain: bool = False,
    control_from: str = "dmao",
    search_from: str = "dmao",
    share_prefix: bool = False,
    archive: Path | None = None,
) -> ComparisonResult:
    """Train and decode every (system, seed); write ``OUT/results.{md,csv}`` and figures.

    ``jobs`` trainings run at the same time (spawned processes; see ``train_all``): the
    controls and retrains start when the runs they build on are done; decoding and scoring
    follow, one run at a time. ``share_prefix``: DMAO systems that differ only in event-time
    settings train their common steps before the first event once per seed
    (:mod:`dmao.experiments.sharing`). ``archive``: keep every finished run's record there and
    restore the records of runs ``out_dir`` lacks (:mod:`dmao.experiments.archive`).
    """
    systems, plan, searches = _first_runs(
        baseline_config, dmao_config, seeds, list(overrides or []), list(variants or []),
        search_retrain, control_from, search_from,
    )  # fmt: skip
    overrides = list(overrides or [])
    first = [(f"{s}/seed{k}", c, out_dir / s / f"seed{k}") for s, k, c in plan]
    first += [(f"search-phase/seed{k}", c, out_dir / "search-phase" / f"seed{k}")
              for k, _, c in searches]  # fmt: skip
    # Controls and retrains need the final architecture of a DMAO run: each starts when its run
    # is done (the architecture is read when the model is built).
    later: list[tuple[str, int, ExperimentConfig]] = []
    after: dict[str, tuple[str, Callable[[], None]]] = {}
    if control:
        for seed in seeds:
            found = out_dir / control_from / f"seed{seed}"
            later.append(("control", seed, _from_scratch(baseline_config, overrides, found, seed)))
            after[f"control/seed{seed}"] = (f"{control_from}/seed{seed}", _nothing)
    for seed, steps, cfg in searches:
        found = out_dir / "search-phase" / f"seed{seed}"
        rest = f"train.max_steps={cfg.train.max_steps - steps}"
        later.append(("search", seed, _from_scratch(baseline_config, overrides, found, seed, rest)))
        after[f"search/seed{seed}"] = (f"search-phase/seed{seed}", _nothing)
    later_runs = [(f"{s}/seed{k}", c, out_dir / s / f"seed{k}") for s, k, c in later]
    records = _sync_archive(archive, first + later_runs) if archive is not None else {}
    prefixes: list[tuple[str, ExperimentConfig, Path]] = []
    if share_prefix:
        prefixes, starts = shared_prefix_plan(first, out_dir)
        after.update(starts)
    elif hint := sharing_hint(first, out_dir):
        log.info(hint)
    # Seed by seed (each seed's prefix, systems, search phase, control and retrain), so that
    # the runs of one seed finish together and a shared prefix is needed only while its seed's
    # runs are pending; every run is deterministic on its own, so the order changes no result.
    queue = sorted(prefixes + first + later_runs, key=lambda run: _seed_of(run[0]))
    train_all(queue, jobs, after=after, records=records)
    plan += later
    order = {name: i for i, name in enumerate([*systems, "control", "search"])}
    runs: list[RunResult] = []
    for system, seed, config in sorted(plan, key=lambda p: (p[1], order[p[0]])):
        runs.extend(_run_and_score(system, seed, config, out_dir))
    table = summarise(runs)
    files = write_outputs(runs, table, out_dir)
    return ComparisonResult(runs=runs, table=table, files=files)


def comparison_status(
    baseline_config: Path | None,
    dmao_config: Path | None,
    out_dir: Path,
    *,
    seeds: list[int],
    control: bool = False,
    overrides: list[str] | None = None,
    variants: list[Variant] | None = None,
    search_retrain: bool = False,
    control_from: str = "dmao",
    search_from: str = "dmao",
    share_prefix: bool = False,
    archive: Path | None = None,
) -> list[RunStatus]:
    """How far every run :func:`run_comparison` with these arguments would train is, in the
    order it trains them; reads ``out_dir`` (and ``archive``: a run archived there counts as
    done) and trains nothing (``dmao compare --status``)."""
    _, plan, searches = _first_runs(
        baseline_config, dmao_config, seeds, list(overrides or []), list(variants or []),
        search_retrain, control_from, search_from,
    )  # fmt: skip
    runs = [(f"{s}/seed{k}", c, out_dir / s / f"seed{k}") for s, k, c in plan]
    runs += [(f"search-phase/seed{k}", c, out_dir / "search-phase" / f"seed{k}")
             for k, _, c in searches]  # fmt: skip
    # Members of a shared prefix that would start from it begin at its step.
    prefixes = prefixes_to_train(runs, out_dir) if share_prefix else []
    starts = {label: (p.label, p.step) for p in prefixes for label, _ in waiting_members(p)}
    first = [PlannedRun(p.label, p.run_dir, p.step) for p in prefixes]
    first += [PlannedRun(label, run_dir, c.train.end_step, start=starts.get(label))
              for label, c, run_dir in runs]  # fmt: skip
    statuses = {s.run.label: s for s in (run_status(p, archive) for p in first)}
    # The control trains the baseline recipe's steps on control_from's final architecture; the
    # retrain the steps after the search phase's last event.
    later = []
    if control:
        baseline_steps = {k: c.train.max_steps for s, k, c in plan if s == "baseline"}
        later += [("control", k, baseline_steps[k], f"{control_from}/seed{k}") for k in seeds]
    later += [("search", k, c.train.max_steps - steps, f"search-phase/seed{k}")
              for k, steps, c in searches]  # fmt: skip
    for system, seed, steps, after in later:
        waits = None if statuses[after].done else after
        planned = PlannedRun(f"{system}/seed{seed}", out_dir / system / f"seed{seed}", steps, waits)
        statuses[planned.label] = run_status(planned, archive)
    # In the order run_comparison trains them: seed by seed.
    return sorted(statuses.values(), key=lambda s: _seed_of(s.run.label))


def _first_runs(
    baseline_config: Path | None,
    dmao_config: Path | None,
    seeds: list[int],
    overrides: list[str],
    variants: list[Variant],
    search_retrain: bool,
    control_from: str,
    search_from: str,
) -> tuple[
    dict[str, tuple[Path | None, list[str]]],
    list[tuple[str, int, ExperimentConfig]],
    list[tuple[int, int, ExperimentConfig]],
]:
    """The systems (recipe, overrides), the runs that need no other run — (system, seed, config)
    for every seed and system — and the search phases (seed, last event step, config)."""
    if len({v.name for v in variants}) != len(variants):
        raise ValueError(f"variant names must be unique: {[v.name for v in variants]}")
    systems: dict[str, tuple[Path | None, list[str]]] = {
        "baseline": (baseline_config, ["dmao.enabled=false"]),
        "dmao": (
            dmao_config or baseline_config,
            [] if dmao_config is not None else ["dmao.enabled=true"],
        ),
    }
    for v in variants:
        systems[v.name] = (systems["dmao"][0], [*systems["dmao"][1], *v.overrides])
    for role, name in (("control_from", control_from), ("search_from", search_from)):
        if name not in systems or name == "baseline":
            raise ValueError(f"{role}={name!r}: expected dmao or a variant name")

    def config_of(system: str, seed: int) -> ExperimentConfig:
        path, system_extra = systems[system]
        return load_config(path, [*overrides, *system_extra, f"train.seed={seed}"])

    plan: list[tuple[str, int, ExperimentConfig]] = []
    for seed in seeds:
        for system in systems:
            config = config_of(system, seed)
            if system in ("dmao", control_from, search_from) and not config.dmao.enabled:
                raise ValueError(f"{system}: the DMAO config has dmao.enabled: false")
            plan.append((system, seed, config))
    searches = []
    if search_retrain:
        for seed in seeds:
            phase = config_of(search_from, seed)
            phase.train.stop_at_step = steps = _last_event_step(phase)
            searches.append((seed, steps, phase))
    return systems, plan, searches


def _sync_archive(
    archive: Path, runs: list[tuple[str, ExperimentConfig, Path]]
) -> dict[str, Record]:
    """Restore the archived records of the runs that are not finished here, archive the finished
    ones the archive lacks, and return where the others' records go when they finish."""
    records: dict[str, Record] = {}
    for label, config, run_dir in runs:
        # The search phase is not scored; every other run is, on the recipe's dev and test parts.
        parts = () if label.startswith("search-phase/") else _scored_parts(config)
        records[label] = (archive / label, parts)
        restore_run(archive / label, run_dir, config)
        if has_checkpoints(run_dir):  # archives only a finished run the archive lacks
            archive_run(run_dir, archive / label, parts, config.train.end_step)
    return records


def _seed_of(label: str) -> int:
    """``"gradmax/seed3"`` → 3."""
    return int(label.rpartition("/seed")[2])


def _scored_parts(config: ExperimentConfig) -> tuple[str, ...]:
    return (*config.data.dev_parts, *config.data.test_parts)


def _nothing() -> None:
    """What a run that only waits for another does before it starts."""


def _last_event_step(config: ExperimentConfig) -> int:
    """The optimizer step of the last DMAO event of ``config``'s schedule."""
    return config_event_schedule(config.dmao, config.train.max_steps)[-1][0]


def _from_scratch(
    baseline_config: Path | None, overrides: list[str], found: Path, seed: int, *extra: str
) -> ExperimentConfig:
    """The baseline recipe with the architecture of run ``found``, DMAO off (width-scaled
    dropout comes with the architecture: ``model.dropout_scaling``)."""
    return load_config(
        baseline_config,
        [*overrides, "dmao.enabled=false", f"model.architecture={found}", f"train.seed={seed}",
         *extra],
    )  # fmt: skip


def _run_and_score(system: str, seed: int, config: ExperimentConfig, out: Path) -> list[RunResult]:
    run_dir = out / system / f"seed{seed}"
    summary = train_if_needed(config, run_dir)
    minutes = summary["train_seconds"] / 60
    if system == "search":  # both phases count
        phase = json.loads(
            (out / "search-phase" / f"seed{seed}" / "train_summary.json").read_text()
        )
        minutes += phase["train_seconds"] / 60
    results = []
    # An archived run (--archive) was decoded when it finished, with the same checkpoint: its
    # record is used, and a restored one has no checkpoints to decode again anyway.
    recorded = has_record(run_dir, config.train.end_step) or not has_checkpoints(run_dir)
    if recorded:
        log.info("%s: scored from its record (%s)", run_dir, RECORD)
    for split in _scored_parts(config):
        decoded = (
            archived_score(run_dir, split)
            if recorded
            else decode_split(run_dir, split, progress_bar=False).score
        )
        results.append(
            RunResult(
                system=system,
                seed=seed,
                split=split,
                wer=decoded.wer,
                cer=decoded.cer,
                parameters=summary["parameters"],
                train_minutes=minutes,
                run_dir=str(run_dir),
                macs_per_second=summary.get("adaptable_macs_per_second", 0),
                code_version=summary.get("code_version", ""),
            )
        )
    return results
