"""Training the runs of a comparison: skip finished runs, resume interrupted ones, run several at a
time in spawned worker processes, and stop them all cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from dmao.config import ExperimentConfig
from dmao.training.recipe import TrainingRecipe

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["finished_summary", "is_complete", "train_all", "train_if_needed"]

log = logging.getLogger(__name__)


def finished_summary(run_dir: Path, steps: int) -> dict | None:
    """``run_dir/train_summary.json`` of a run that trained to step ``steps``, else None (no
    summary yet, or one of a run stopped earlier)."""
    summary_path = run_dir / "train_summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    return summary if summary.get("steps") == steps else None


def is_complete(config: ExperimentConfig, run_dir: Path) -> bool:
    return finished_summary(run_dir, config.train.end_step) is not None


def train_if_needed(config: ExperimentConfig, run_dir: Path) -> dict:
    summary_path = run_dir / "train_summary.json"
    summary = finished_summary(run_dir, config.train.end_step)
    if summary is not None:
        log.info("%s is complete, skipping training", run_dir)
        return summary
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
    train_if_needed(config, Path(run_dir))
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


def train_all(plan: list[tuple[str, ExperimentConfig, Path]], jobs: int) -> None:
    """Train every unfinished run of ``plan`` (label, config, run folder), ``jobs`` at a time.

    With ``jobs > 1`` each run is a spawned process; on the CPU each gets ``cores // jobs``
    threads unless ``train.num_threads`` is set. A failed run does not stop the others; the
    failures are raised together at the end (re-running resumes them). SIGTERM/SIGINT, to the
    process group (``timeout``) or to this process alone, stops every running run after its
    current step with a committed checkpoint, then exits with 128 + signal.
    """
    todo = [(label, cfg, run) for label, cfg, run in plan if not is_complete(cfg, run)]
    if jobs <= 1 or len(todo) <= 1:
        for _, cfg, run in todo:
            train_if_needed(cfg, run)
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
