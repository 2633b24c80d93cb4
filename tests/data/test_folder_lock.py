"""Runs started side by side take turns preparing a corpus or manifest folder.

CI caught `dmao compare --jobs 3` failing one run with "No such file or directory:
.cuts_dev.tmp.jsonl.gz": two runs prepared the same manifest folder at once and the second rename
found the file already moved. These tests use real processes, the real tiny corpus and real
espeak-ng synthesis.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from dmao.data.folder_lock import LOCK_NAME, folder_lock
from dmao.data.manifests import cuts_path, load_cuts, prepare_manifests
from dmao.data.synthetic import prepare_synthetic
from dmao.data.synthetic.corpus import COMPLETE_MARKER

TINY_SYNTHETIC = {"hours": 0.02, "seed": 3, "utterances_per_speaker": 4}


def _prepare_in_thread(target, *args, **kwargs) -> tuple[threading.Thread, list]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args, **kwargs)
        except BaseException as err:  # reported by the test
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_manifest_preparation_waits_for_the_folder_lock(tiny_corpus, tmp_path):
    out = tmp_path / "manifests"
    with folder_lock(out, "manifests"):
        thread, errors = _prepare_in_thread(
            prepare_manifests, tiny_corpus.root, out, ["dev"], num_jobs=1
        )
        time.sleep(1.5)
        assert thread.is_alive(), "prepare_manifests did not wait for the lock"
        assert not cuts_path(out, "dev").exists()
    thread.join(timeout=300)
    assert not thread.is_alive() and not errors, errors
    assert len(load_cuts(out, "dev")) == len(list(tiny_corpus.root.glob("dev/**/*.flac")))
    assert not (out / LOCK_NAME).exists(), "the lock file was left after a successful prepare"


def test_synthetic_corpus_waits_for_the_folder_lock(tmp_path):
    out = tmp_path / "corpus"
    with folder_lock(out, "synthetic corpus"):
        thread, errors = _prepare_in_thread(prepare_synthetic, out, num_jobs=1, **TINY_SYNTHETIC)
        time.sleep(1.5)
        assert thread.is_alive(), "prepare_synthetic did not wait for the lock"
        assert not list(out.rglob("*.flac"))
    thread.join(timeout=300)
    assert not thread.is_alive() and not errors, errors
    assert (out / COMPLETE_MARKER).is_file()
    assert not (out / LOCK_NAME).exists(), "the lock file was left after a successful prepare"


def _prepare_dev(corpus_root: str, out: str) -> None:
    prepare_manifests(Path(corpus_root), Path(out), ["dev", "test"], num_jobs=1)


def test_two_processes_preparing_one_folder_both_succeed(tiny_corpus, tmp_path):
    out = tmp_path / "manifests"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_prepare_dev, args=(str(tiny_corpus.root), str(out)))
        for _ in range(3)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    for part in ("dev", "test"):
        cuts = load_cuts(out, part)
        assert all(cut.has_features for cut in cuts)
        assert len(cuts) == len(list(tiny_corpus.root.glob(f"{part}/**/*.flac")))
    assert not list(out.glob(".*.tmp*")), "a temporary file was left behind"
    assert not (out / LOCK_NAME).exists(), "the lock file was left after a successful prepare"


def test_lock_file_is_removed_after_success_and_kept_after_a_failure(tmp_path):
    with folder_lock(tmp_path, "manifests"):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(RuntimeError, match="boom"), folder_lock(tmp_path, "manifests"):
        raise RuntimeError("boom")
    assert (tmp_path / LOCK_NAME).is_file()  # harmless, and names the process that failed
    with folder_lock(tmp_path, "manifests"):
        pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_removing_the_lock_file_keeps_holders_exclusive(tmp_path):
    """Many threads take the lock in turn (``flock`` is per open file, so threads contend like
    processes). Each holder removes the lock file on release; a waiter granted the lock on the
    removed file must notice and lock the new one, or two would hold it at once. Inside, each
    holder creates a marker with O_EXCL: it fails if another holder is inside too."""
    inside = tmp_path / "inside"
    errors: list[BaseException] = []
    turns = [0]

    def worker() -> None:
        try:
            for _ in range(150):
                with folder_lock(tmp_path, "stress test"):
                    os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    turns[0] += 1
                    time.sleep(0.0002)
                    inside.unlink()
        except BaseException as err:  # reported by the test
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert turns[0] == 4 * 150
    assert not (tmp_path / LOCK_NAME).exists()
