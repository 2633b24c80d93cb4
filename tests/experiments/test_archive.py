"""`dmao compare --archive`: finished runs' records outlive the comparison folder."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import tiny_compare_overrides

from dmao.config import load_config
from dmao.experiments import comparison_status, run_comparison
from dmao.experiments.archive import archive_run, restore_run
from dmao.experiments.jobs import train_if_needed


def _overrides(tiny_corpus, tmp_path) -> list[str]:
    return tiny_compare_overrides(tiny_corpus.root, tmp_path / "manifests")


def test_a_lost_comparison_folder_is_restored_from_the_archive(tiny_corpus, tmp_path):
    overrides = _overrides(tiny_corpus, tmp_path)
    out, archive = tmp_path / "cmp", tmp_path / "kept"
    first = run_comparison(None, None, out, seeds=[0], overrides=overrides, archive=archive)
    # Each finished run left its record (no checkpoints) in the archive, decoded on dev and test.
    for system in ("baseline", "dmao"):
        kept = archive / system / "seed0"
        assert not (kept / "checkpoints").exists()
        assert {"config.yaml", "train_summary.json", "metrics.jsonl", "architecture.json"} <= {
            p.name for p in kept.iterdir()
        }
        record = json.loads((kept / "record.json").read_text())
        assert set(record["parts"]) == {"dev", "test"}
        for part in record["parts"].values():
            assert (kept / part["decode_dir"] / "hypotheses.txt").is_file()

    # The machine loses OUT. The same command, now with the control and search-then-retrain,
    # retrains nothing that was archived: it scores those runs from their records and builds
    # the control from the restored DMAO architecture.
    shutil.rmtree(out)
    options = {
        "seeds": [0], "overrides": overrides, "control": True, "search_retrain": True,
        "archive": archive,
    }  # fmt: skip
    status = {s.run.label: s.state for s in comparison_status(None, None, out, **options)}
    assert status["baseline/seed0"].endswith(", archived)")
    assert status["dmao/seed0"].endswith(", archived)")
    assert status["control/seed0"] == "not started"  # what it waits for is archived: done
    again = run_comparison(None, None, out, **options)
    assert not (out / "baseline" / "seed0" / "checkpoints").exists()
    assert not (out / "dmao" / "seed0" / "checkpoints").exists()
    rows = {(r.system, r.split): (r.wer, r.cer, r.parameters) for r in again.runs}
    assert {k: v for k, v in rows.items() if k[0] in ("baseline", "dmao")} == {
        (r.system, r.split): (r.wer, r.cer, r.parameters) for r in first.runs
    }
    control = json.loads((out / "control" / "seed0" / "architecture.json").read_text())
    assert control == json.loads((archive / "dmao" / "seed0" / "architecture.json").read_text())
    assert {"control", "search"} <= {r.system for r in again.runs}
    # The new runs were archived too (the search phase without decodes: it is not scored).
    assert (archive / "control" / "seed0" / "record.json").is_file()
    phase = json.loads((archive / "search-phase" / "seed0" / "record.json").read_text())
    assert phase["parts"] == {}


def test_a_record_is_restored_only_into_the_run_it_belongs_to(tiny_corpus, tmp_path):
    overrides = [*_overrides(tiny_corpus, tmp_path), "dmao.enabled=false", "train.seed=0"]
    config = load_config(None, overrides)
    run = tmp_path / "run"
    train_if_needed(config, run)
    # Not finished: nothing is archived.
    assert not archive_run(run, tmp_path / "kept", ["dev"], steps=9)
    assert archive_run(run, tmp_path / "kept", ["dev"], steps=8)
    assert not archive_run(run, tmp_path / "kept", ["dev"], steps=8)  # already there
    other = load_config(None, [*overrides, "train.seed=1"])
    with pytest.raises(ValueError, match=r"train\.seed"):
        restore_run(tmp_path / "kept", tmp_path / "elsewhere", other)
    # An unfinished local run is set aside, not deleted, when the finished record replaces it.
    stopped = load_config(None, [*overrides, "train.stop_at_step=4"])
    train_if_needed(stopped, tmp_path / "partial")
    assert restore_run(tmp_path / "kept", tmp_path / "partial", config)
    assert any((tmp_path / "partial" / "checkpoints.unfinished").glob("step-*"))
    assert not (tmp_path / "partial" / "checkpoints").exists()
