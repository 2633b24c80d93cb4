"""Training the runs of a comparison: skip finished runs, resume interrupted ones, run several at a
time in spawned worker processes, and stop them all cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dmao.config import ExperimentConfig
from dmao.training.recipe import TrainingRecipe

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["finished_summary", "has_checkpoints", "is_complete", "train_all", "train_if_needed"]

log = logging.getLogger(__name__)


def finished_summary(run_dir: Path, steps: int) -> dict | None:
    """``run_dir/train_summary.json`` of a run that trained to step ``steps``, else None (no
    summary yet, or one of a run stopped earlier)."""
    summary_path = run_dir / "train_summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    return summary if summary.get("steps") == steps else None


def has_checkpoints(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds step checkpoints to resume (or decode) from; a run restored
    from an archive (:mod:`.archive`) holds none."""
    return any((run_dir / "checkpoints").glob("step-*"))


def is_complete(config: ExperimentConfig, run_dir: Path) -> bool:
    return finished_summary(run_dir, config.train.end_step) is not None


def train_if_needed(config: ExperimentConfig, run_dir: Path) -> dict:
    summary_path = run_dir / "train_summary.json"
    summary = finished_summary(run_dir, config.train.end_step)
    if summary is not None:
        log.info("%s is complete, skipping training", run_dir)
        return summary
    recipe = TrainingRecipe(config, run_dir, resume=has_checkpoints(run_dir))
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.cleanup()
    return json.loads(summary_path.read_text())


Record = tuple[Path, tuple[str, ...]]
"""Where a finished run's record goes and the parts it is decoded on (:mod:`.archive`)."""


def _train_and_record(config: ExperimentConfig, run_dir: Path, record: Record | None) -> None:
    """Train (or skip) one run, then archive its record when ``record`` says where."""
    train_if_needed(config, run_dir)
    if record is None:
        return
    from dmao.experiments.archive import archive_run

    try:
        archive_run(run_dir, record[0], record[1], config.train.end_step)
    except Exception as exc:  # the training stands; the next `dmao compare` archives it again
        log.error("%s trained, but its record was not archived (%s); re-run to retry", run_dir, exc)


def _train_in_subprocess(
    config: ExperimentConfig, run_dir: str, label: str, record: Record | None = None
) -> str:
    """One training run in a worker process of ``--jobs`` (spawned, so CUDA initialises cleanly)."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    _train_and_record(config, Path(run_dir), record)
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


def train_all(
    plan: list[tuple[str, ExperimentConfig, Path]],
    jobs: int,
    after: dict[str, tuple[str, Callable[[], None]]] | None = None,
    records: dict[str, Record] | None = None,
) -> None:
    """Train every unfinished run of ``plan`` (label, config, run folder), ``jobs`` at a time.

    ``after``: label → (label of a run of ``plan`` that must finish first, a function called in
    this process when it has, right before the run starts), e.g. a run that starts from a shared
    prefix (:mod:`dmao.experiments.sharing`). Runs start in plan order as workers free up, each
    as soon as what it waits for is done. ``records``: label → (folder, parts): the run's record
    is archived there when it finishes (:func:`dmao.experiments.archive.archive_run`).

    With ``jobs > 1`` each run is a spawned process; on the CPU each gets ``cores // jobs``
    threads unless ``train.num_threads`` is set. A failed run does not stop the others (those
    that wait for it do not start); the failures are raised together at the end (re-running
    resumes them). SIGTERM/SIGINT, to the process group (``timeout``) or to this process alone,
    stops every running run after its current step with a committed checkpoint, then exits
    with 128 + signal.
    """
    after, records = after or {}, records or {}
    done = {label for label, cfg, run in plan if is_complete(cfg, run)}
    todo = [(label, cfg, run) for label, cfg, run in plan if label not in done]
    if jobs <= 1 or len(todo) <= 1:
        for label, cfg, run in todo:
            if label in after:
                after[label][1]()
            _train_and_record(cfg, run, records.get(label))
        return
    import multiprocessing
    import os
    import signal
    import sys
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    workers = min(jobs, len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    log.info("training %d runs, %d at a time", len(todo), workers)
    failures: list[str] = []
    failed: set[str] = set()
    # One run per worker process: a worker exits when its run ends, also when `dmao compare`
    # itself is gone (after SIGTERM to the group a long-lived worker would wait forever).
    per_child = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), **per_child
    )
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    pending, running, started = list(todo), {}, 0
    try:
        while pending or running:
            while len(running) < workers:
                _drop_waiting_on_failed(pending, after, failed, failures)
                ready = [i for i in pending if i[0] not in after or after[i[0]][0] in done]
                if not ready:
                    break
                label, cfg, run = ready[0]
                pending.remove(ready[0])
                if label in after:
                    try:
                        after[label][1]()
                    except Exception as exc:  # e.g. a full disk while copying a prefix
                        log.error("%s could not start: %s", label, exc)
                        failed.add(label)
                        failures.append(f"{label}: not started: {exc}")
                        continue
                cfg = copy.deepcopy(cfg)
                cfg.train.device = _job_device(cfg.train.device, started)
                started += 1
                if cfg.train.num_threads <= 0:
                    cfg.train.num_threads = threads
                future = pool.submit(_train_in_subprocess, cfg, str(run), label, records.get(label))
                running[future] = label
            if not running:  # what is left waits for a run that is not in the plan
                failures += [f"{i[0]}: not started, waits for {after[i[0]][0]}" for i in pending]
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                label = running.pop(future)
                try:
                    future.result()
                    done.add(label)
                    log.info("%s finished", label)
                except Exception as exc:  # reported together below; the other runs go on
                    log.error("%s failed: %s", label, exc)
                    failed.add(label)
                    failures.append(f"{label}: {exc}")
    except _Stop as stop:
        # `timeout` and schedulers signal the whole process group, `kill PID` only this process:
        # pass it on (a second signal is harmless), and wait until every run has committed its
        # last step, so that re-running the same command resumes them all. Runs not started yet
        # never start.
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


def _drop_waiting_on_failed(
    pending: list[tuple[str, ExperimentConfig, Path]],
    after: dict[str, tuple[str, Callable[[], None]]],
    failed: set[str],
    failures: list[str],
) -> None:
    """Take the runs that wait for a failed run out of ``pending`` (they never start), and those
    that wait for them, and so on."""
    while dropped := [i for i in pending if i[0] in after and after[i[0]][0] in failed]:
        for label, _, _ in dropped:
            pending.remove(next(i for i in pending if i[0] == label))
            failed.add(label)
            failures.append(f"{label}: not started, {after[label][0]} failed")


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
