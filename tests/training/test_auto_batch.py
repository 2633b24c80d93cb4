"""data.auto_batch: the smallest number of micro-batches that fits a memory budget, measured on
the real model, kept for resuming, and used by a training run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_overrides, train_tiny_run

from dmao.config import load_config
from dmao.training.auto_batch import choose_split, probe_peak_bytes
from dmao.training.metrics import read_metrics
from dmao.training.model_setup import build_model_from_config


@pytest.mark.parametrize("budget", [150, 200, 260, 400, 1000, 1100, 5000])
def test_the_split_is_the_smallest_that_fits(budget: int) -> None:
    def peak(seconds: float) -> int | None:
        if seconds > 90:
            return None  # out of memory
        return int(100 + 10 * seconds)

    split = choose_split(100.0, budget, peak)
    fitting = [n for n in range(1, 200) if (p := peak(100.0 / n)) is not None and p <= budget]
    assert split.accum == min(fitting)
    assert split.micro_seconds == pytest.approx(100.0 / split.accum)
    assert all(pr["fits"] == (pr["peak_bytes"] != -1 and pr["peak_bytes"] <= budget)
               for pr in split.probes)  # fmt: skip
    assert len(split.probes) <= 2 * math.ceil(math.log2(split.accum)) + 1


def test_nothing_fits_is_one_line() -> None:
    with pytest.raises(ValueError, match=re.escape("data.auto_batch: not even")):
        choose_split(100.0, 10, lambda seconds: 100)


@pytest.fixture(scope="module")
def tiny_model():
    model = ["model.d_model=32", "model.num_layers=2", "model.head_dim=16",
             "model.conv_kernel_size=7", "model.frontend_channels=[4,4,4,4]"]  # fmt: skip
    config = load_config(None, model)
    torch.manual_seed(0)
    return build_model_from_config(config.model, 20).train()


def test_the_probe_grows_with_the_batch_and_leaves_no_trace(tiny_model) -> None:
    args = dict(utterance_frames=300, num_features=80, vocab_size=20,
                device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    state = torch.random.get_rng_state()
    small = probe_peak_bytes(tiny_model, seconds=6.0, **args)
    large = probe_peak_bytes(tiny_model, seconds=24.0, **args)
    params = sum(p.numel() for p in tiny_model.parameters())
    assert 16 * params < small < large
    # Activations grow with the utterances in the batch (2 vs 8): more than 3x the small excess.
    assert (large - 16 * params) > 3 * (small - 16 * params)
    assert all(p.grad is None for p in tiny_model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.named_parameters())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_run_splits_its_batch_to_fit_and_resumes_with_the_same_split(
    tiny_corpus, tiny_model, tmp_path: Path
) -> None:
    # The tiny recipe's batch is 12 s; longest training utterance ≤ 3 s. A budget between the
    # probes of 6 s and 12 s of the run's own model makes it split the batch in two.
    overrides = [*tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
                 "train.max_steps=4", "train.valid_every_steps=4", "train.checkpoint_every_steps=2",
                 "data.auto_batch=true"]  # fmt: skip
    config = load_config(None, overrides)
    torch.manual_seed(config.train.seed)
    args = dict(utterance_frames=301, num_features=80, vocab_size=20,
                device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    half = probe_peak_bytes(tiny_model, seconds=6.0, **args)
    full = probe_peak_bytes(tiny_model, seconds=12.0, **args)
    gib = (half + full) / 2 / 2**30
    run = train_tiny_run(tmp_path / "run", [*overrides, f"data.auto_batch_memory_gib={gib}"])
    decision = json.loads((run / "auto_batch.json").read_text())
    assert decision["accum"] >= 2 and decision["micro_seconds"] == 12.0 / decision["accum"]
    assert decision["probes"][0] == {**decision["probes"][0], "seconds": 12.0, "fits": False}
    assert all(p["peak_bytes"] <= decision["budget_bytes"] for p in decision["probes"] if p["fits"])
    assert len(read_metrics(run, "train")) >= 1

    # Resuming reads the decision (no probe): even a budget that would not split keeps it.
    from dmao.training.recipe import TrainingRecipe

    resumed = TrainingRecipe(
        load_config(None, [*overrides, "train.max_steps=4", "data.auto_batch_memory_gib=100"]),
        run, resume=True,
    )  # fmt: skip
    resumed.setup()
    try:
        assert resumed.accum_steps == decision["accum"]
        assert resumed.micro_seconds == decision["micro_seconds"]
    finally:
        resumed.cleanup()
