"""train.compile with static batch shapes: the compiled run trains like the eager one, and its
forward compiles once per bucket shape and architecture (never per utterance length)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import tiny_train_overrides, train_tiny_run

from dmao.training.compilation import compiled_graphs
from dmao.training.metrics import read_metrics

STEPS, BUCKETS = 24, 2


def _train(run_dir: Path, corpus_root: Path, manifests: Path, compile_mode: str) -> Path:
    overrides = [
        *tiny_train_overrides(corpus_root, manifests),
        f"data.num_buckets={BUCKETS}",
        "data.pad_to_bucket=true",
        "data.spec_augment=false",
        "model.dropout=0.0",
        f"train.max_steps={STEPS}",
        "train.log_every_steps=1",
        f"train.valid_every_steps={STEPS}",
        f"train.checkpoint_every_steps={STEPS}",
        f"train.compile={compile_mode}",
        "train.compile_backend=aot_eager",
        "dmao.enabled=true",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
        "dmao.granularity=4",
    ]
    return train_tiny_run(run_dir, overrides)


def test_static_compile_trains_like_eager_without_per_length_recompiles(
    tiny_corpus, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    eager = _train(tmp_path / "eager", tiny_corpus.root, manifests, "none")
    before = compiled_graphs()
    compiled = _train(tmp_path / "static", tiny_corpus.root, manifests, "static")
    graphs = compiled_graphs() - before

    # One DMAO event: two architectures, each seen in at most BUCKETS shapes.
    assert json.loads((compiled / "train_summary.json").read_text())["dmao_events"] == 1
    assert 2 <= graphs <= BUCKETS * 2, f"{graphs} graphs"

    losses = {
        name: [r["loss"] for r in read_metrics(run, "train")]
        for name, run in (("eager", eager), ("static", compiled))
    }
    assert len(losses["eager"]) == STEPS
    for a, b in zip(losses["eager"], losses["static"], strict=True):
        assert math.isclose(a, b, rel_tol=2e-3), losses
    assert (eager / "architecture.json").read_text() == (compiled / "architecture.json").read_text()


def test_static_compile_is_refused_without_static_shapes(tiny_corpus, tmp_path: Path) -> None:
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=2",
        "train.compile=static",
    ]
    with pytest.raises(ValueError, match=re.escape("needs data.pad_to_bucket=true")):
        train_tiny_run(tmp_path / "run", overrides)
