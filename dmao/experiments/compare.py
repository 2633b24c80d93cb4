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
- named variants (optional, for ablations): the DMAO recipe plus a few ``key=value`` overrides,
  e.g. ``Variant("late", ["dmao.last_event_fraction=0.4"])`` trains ``OUT/late/seed<k>``.

Besides mean ± standard deviation per system, the summary gives the *paired* WER difference to
the baseline (same seed, same data order): with few seeds it is the fairer test of whether a
difference is larger than the seed-to-seed spread.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dmao.config import ExperimentConfig, load_config
from dmao.decoding.decode_run import decode_split
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = [
    "ComparisonResult",
    "RunResult",
    "Variant",
    "parse_variant",
    "run_comparison",
    "summarise",
]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Scores of one trained run on one split."""

    system: str
    seed: int
    split: str
    wer: float
    cer: float
    parameters: int
    train_minutes: float
    run_dir: str


@dataclass(frozen=True)
class Variant:
    """An ablation system: the DMAO recipe with ``overrides`` applied, run as ``OUT/<name>``."""

    name: str
    overrides: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"variant name must be letters, digits, - or _, got {self.name!r}")
        if self.name in _RESERVED:
            raise ValueError(f"variant name {self.name!r} is reserved ({', '.join(_RESERVED)})")


_RESERVED = ("baseline", "dmao", "control", "figures")


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


def _is_complete(config: ExperimentConfig, run_dir: Path) -> bool:
    summary_path = run_dir / "train_summary.json"
    if not summary_path.is_file():
        return False
    return json.loads(summary_path.read_text()).get("steps") == config.train.max_steps


def _train_if_needed(config: ExperimentConfig, run_dir: Path) -> dict:
    summary_path = run_dir / "train_summary.json"
    if _is_complete(config, run_dir):
        log.info("%s is complete, skipping training", run_dir)
        return json.loads(summary_path.read_text())
    resume = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step-*"))
    recipe = TrainingRecipe(config, run_dir, resume=resume)
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.cleanup()
    return json.loads(summary_path.read_text())


def _train_in_subprocess(config: ExperimentConfig, run_dir: str, label: str) -> str:
    """One training run in a worker process of ``--jobs`` (spawned, so CUDA initialises cleanly)."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    _train_if_needed(config, Path(run_dir))
    return run_dir


class _Stop(Exception):
    """SIGTERM/SIGINT reached ``dmao compare`` while its ``--jobs`` workers were training."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _ignore(_signum: int, _frame: object) -> None:
    """A Python-level no-op handler: unlike SIG_IGN it is not inherited by spawned workers."""


def _job_device(device: str, index: int) -> str:
    """The ``train.device`` of concurrent run ``index`` whose recipe asks for ``device``.

    Several small runs share one GPU well (each alone leaves it mostly idle while Python launches
    kernels); with N GPUs visible, ``auto``/``cuda`` run i gets ``cuda:(i mod N)``. ``cpu`` and an
    explicit ``cuda:K`` are kept.
    """
    import torch

    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not wants_cuda or torch.cuda.device_count() < 2:
        return device
    return f"cuda:{index % torch.cuda.device_count()}"


def _train_all(plan: list[tuple[str, ExperimentConfig, Path]], jobs: int) -> None:
    """Train every unfinished run of ``plan`` (label, config, run folder), ``jobs`` at a time.

    With ``jobs > 1`` each run is a spawned process; on the CPU each gets ``cores // jobs``
    threads unless ``train.num_threads`` is set. A failed run does not stop the others; the
    failures are raised together at the end (re-running resumes them). SIGTERM/SIGINT, to the
    process group (``timeout``) or to this process alone, stops every running run after its
    current step with a committed checkpoint, then exits with 128 + signal.
    """
    todo = [(label, cfg, run) for label, cfg, run in plan if not _is_complete(cfg, run)]
    if jobs <= 1 or len(todo) <= 1:
        for _, cfg, run in todo:
            _train_if_needed(cfg, run)
        return
    import multiprocessing
    import os
    import signal
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(jobs, len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    log.info("training %d runs, %d at a time", len(todo), workers)
    failures: list[str] = []
    # One run per worker process: a worker exits when its run ends, also when `dmao compare`
    # itself is gone (after SIGTERM to the group a long-lived worker would wait forever).
    per_child = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), **per_child
    )
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        futures = {}
        for index, (label, cfg, run) in enumerate(todo):
            cfg = copy.deepcopy(cfg)
            cfg.train.device = _job_device(cfg.train.device, index)
            if cfg.train.num_threads <= 0:
                cfg.train.num_threads = threads
            futures[pool.submit(_train_in_subprocess, cfg, str(run), label)] = label
        for future in as_completed(futures):
            label = futures[future]
            try:
                future.result()
                log.info("%s finished", label)
            except Exception as exc:  # reported together below; the other runs go on
                log.error("%s failed: %s", label, exc)
                failures.append(f"{label}: {exc}")
    except _Stop as stop:
        # `timeout` and schedulers signal the whole process group, `kill PID` only this process:
        # pass it on (a second signal is harmless), and wait until every run has committed its
        # last step, so that re-running the same command resumes them all. Runs still waiting in
        # the pool's queue are cancelled by the shutdown and never start.
        log.warning(
            "signal %d: the running runs commit their last step; re-run the same command to resume",
            stop.signum,
        )
        # A second signal while they commit changes nothing (not SIG_IGN: workers started now
        # would inherit it).
        for sig in previous:
            signal.signal(sig, _ignore)
        _shut_down_signalling(pool, stop.signum)
        raise SystemExit(128 + stop.signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pool.shutdown(wait=True, cancel_futures=True)
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(todo)} runs failed (re-run to resume them): "
            + "; ".join(failures)
        )


def _shut_down_signalling(pool: ProcessPoolExecutor, signum: int, poll_s: float = 0.2) -> None:
    """Shut ``pool`` down, sending ``signum`` to each of its worker processes, and return when
    all have exited.

    Signalling the workers alive at one moment is not enough: a run already handed to the pool
    (its next queue slot, which cannot be cancelled) starts in a new worker when a finished run's
    worker exits, possibly just after the signal, and would then train to its end while ``dmao
    compare`` waits for it. So every worker that appears until the shutdown is over gets the
    signal too. A worker signalled before its run installed the recipe's handler just exits: it
    had nothing to commit. The pool's private ``_processes`` is the only list of its workers.
    """
    import contextlib
    import os
    import threading

    shutdown = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    shutdown.start()
    signalled: set[int] = set()
    while shutdown.is_alive():
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.pid not in signalled and process.is_alive():
                signalled.add(process.pid)
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(process.pid, signum)
        shutdown.join(poll_s)


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
) -> ComparisonResult:
    """Train and decode every (system, seed); write ``OUT/results.{md,csv}`` and figures.

    ``jobs`` trainings run at the same time (spawned processes; see ``_train_all``): the
    controls start when the DMAO runs are done; decoding and scoring follow, one run at a time.
    """
    overrides = list(overrides or [])
    variants = list(variants or [])
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
    plan: list[tuple[str, int, ExperimentConfig]] = []
    for seed in seeds:
        for system, (config_path, extra) in systems.items():
            config = load_config(config_path, [*overrides, *extra, f"train.seed={seed}"])
            if system != "baseline" and not config.dmao.enabled:
                raise ValueError(f"{system}: the DMAO config {config_path} has dmao.enabled: false")
            plan.append((system, seed, config))
    _train_all([(f"{s}/seed{k}", c, out_dir / s / f"seed{k}") for s, k, c in plan], jobs)
    if control:
        # The control needs the DMAO run's final architecture, so it trains after it.
        controls = []
        for seed in seeds:
            found = out_dir / "dmao" / f"seed{seed}"
            config = load_config(
                baseline_config,
                [
                    *overrides,
                    "dmao.enabled=false",
                    f"model.architecture={found}",
                    f"train.seed={seed}",
                ],
            )
            controls.append(("control", seed, config))
        _train_all([(f"control/seed{k}", c, out_dir / "control" / f"seed{k}")
                    for _, k, c in controls], jobs)  # fmt: skip
        plan += controls
    order = {name: i for i, name in enumerate([*systems, "control"])}
    runs: list[RunResult] = []
    for system, seed, config in sorted(plan, key=lambda p: (p[1], order[p[0]])):
        runs.extend(_run_and_score(system, seed, config, out_dir))
    table = summarise(runs)
    files = _write_outputs(runs, table, out_dir)
    return ComparisonResult(runs=runs, table=table, files=files)


def _run_and_score(system: str, seed: int, config: ExperimentConfig, out: Path) -> list[RunResult]:
    run_dir = out / system / f"seed{seed}"
    summary = _train_if_needed(config, run_dir)
    results = []
    for split in config.data.dev_parts + config.data.test_parts:
        decoded = decode_split(run_dir, split, progress_bar=False)
        results.append(
            RunResult(
                system=system,
                seed=seed,
                split=split,
                wer=decoded.score.wer,
                cer=decoded.score.cer,
                parameters=summary["parameters"],
                train_minutes=summary["train_seconds"] / 60,
                run_dir=str(run_dir),
            )
        )
    return results


def _mean_std(values: list[float], *, signed: bool = False) -> str:
    """Mean ± sample standard deviation in %; a single run has no spread: the mean alone."""
    mean = f"{100 * statistics.fmean(values):{'+' if signed else ''}.2f}"
    return f"{mean} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else mean


def summarise(runs: list[RunResult]) -> str:
    """Markdown: per-run rows, then per (system, split): mean ± std, the relative WER change of
    the means, and the paired (same-seed) WER difference to the baseline with how many seeds
    improved. Negative ΔWER = better than the baseline."""
    lines = [
        "| system | seed | split | WER (%) | CER (%) | parameters | train (min) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r.system} | {r.seed} | {r.split} | {100 * r.wer:.2f} | {100 * r.cer:.2f} | "
            f"{r.parameters:,} | {r.train_minutes:.1f} |"
        )
    lines += [
        "",
        "| system | split | runs | WER (%) mean ± std | CER (%) mean ± std | rel. WER "
        "| paired ΔWER (abs. %) | seeds better |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    systems = list(dict.fromkeys(r.system for r in runs))
    splits = list(dict.fromkeys(r.split for r in runs))
    for split in splits:
        base = {r.seed: r.wer for r in runs if r.system == "baseline" and r.split == split}
        base_mean = statistics.fmean(base.values()) if base else None
        for system in systems:
            sel = [r for r in runs if r.system == system and r.split == split]
            if not sel:
                continue
            wer_mean = statistics.fmean(r.wer for r in sel)
            rel = paired = better = "–"
            if base_mean and system != "baseline":
                rel = f"{100 * (base_mean - wer_mean) / base_mean:+.1f} %"
                # Same seed = same initialisation and data order: the paired difference removes
                # the seed-to-seed spread that both systems share.
                diffs = [r.wer - base[r.seed] for r in sel if r.seed in base]
                if diffs:
                    paired = _mean_std(diffs, signed=True)
                    better = f"{sum(d < 0 for d in diffs)}/{len(diffs)}"
            lines.append(
                f"| {system} | {split} | {len(sel)} | {_mean_std([r.wer for r in sel])} | "
                f"{_mean_std([r.cer for r in sel])} | {rel} | {paired} | {better} |"
            )
    return "\n".join(lines)


def _write_outputs(runs: list[RunResult], table: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "results.md"
    md.write_text(
        "# Baseline vs DMAO\n\nPositive relative WER = DMAO better (lower WER).\n\n" + table + "\n"
    )
    csv_path = out_dir / "results.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(RunResult.__dataclass_fields__))
        writer.writeheader()
        for r in runs:
            writer.writerow(r.__dict__)
    files = [md, csv_path, _plot_valid_wer(runs, out_dir / "valid_wer.png")]
    dmao_runs = sorted({r.run_dir for r in runs if r.system == "dmao"})
    if dmao_runs:
        from dmao.reporting import build_report, save_figures

        report = build_report(dmao_runs[0])
        files += save_figures(report, out_dir / "figures" / Path(dmao_runs[0]).name)
    return files


def _plot_valid_wer(runs: list[RunResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "tab:blue", "dmao": "tab:red", "control": "tab:green"}
    extra = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for system in dict.fromkeys(r.system for r in runs):
        if system not in colours:
            colours[system] = next(extra, "gray")
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for run_dir, system in sorted({(r.run_dir, r.system) for r in runs}):
        valid = read_metrics(run_dir, "valid")
        label = system if system not in seen else None
        seen.add(system)
        ax.plot(
            [v["step"] for v in valid],
            [100 * v["wer"] for v in valid],
            color=colours.get(system, "gray"),
            label=label,
            alpha=0.8,
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("dev WER (%)")
    ax.set_title("validation WER during training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
