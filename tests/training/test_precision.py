"""Mixed precision and device settings of the recipe: bf16 autocast trains on CPU; fp16 runs with a
GradScaler whose overflow skips are agreed bad steps and whose scale is checkpointed."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_train_overrides, train_recipe

from dmao.config import load_config
from dmao.training.checkpoint import latest_checkpoint, load_checkpoint
from dmao.training.distributed import resolve_device
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe


def _config(corpus, manifests, *extra: str):
    return load_config(
        None,
        [
            *tiny_train_overrides(corpus.root, manifests),
            "model.dropout=0.0",
            "optim.peak_lr=3e-3",
            "train.log_every_steps=1",
            "train.valid_every_steps=1000",
            *extra,
        ],
    )


def test_bf16_autocast_trains_on_cpu(tiny_corpus, tmp_path):
    config = _config(tiny_corpus, tmp_path / "m", "train.precision=bf16", "train.max_steps=24")
    recipe = train_recipe(config, tmp_path / "run")
    losses = [r["loss"] for r in read_metrics(tmp_path / "run", "train")]
    assert len(losses) == 24 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    assert not read_metrics(tmp_path / "run", "bad_step")
    assert not recipe.scaler.is_enabled()  # bf16 needs no loss scaling
    # The weights stay float32 (autocast only computes in bf16).
    assert all(p.dtype == torch.float32 for p in recipe.model.parameters())
    valid = read_metrics(tmp_path / "run", "valid")
    assert valid and valid[-1]["cer"] >= 0.0


def test_fp16_grad_scaler_backs_off_and_is_checkpointed(tiny_corpus, tmp_path):
    """A start scale of 2^24 overflows fp16 gradients: those steps are skipped (logged as bad
    steps with the lowered scale) until the scale fits, then training proceeds; the scale is in
    the checkpoint and comes back on resume."""
    config = _config(tiny_corpus, tmp_path / "m", "train.precision=fp16", "train.max_steps=6",
                     "train.checkpoint_every_steps=3")  # fmt: skip
    recipe = TrainingRecipe(config, tmp_path / "run")
    recipe.setup()
    recipe.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    bad = read_metrics(tmp_path / "run", "bad_step")
    assert bad, "a 2^24 loss scale must overflow fp16 gradients"
    scales = [r["loss_scale"] for r in bad]
    assert scales == sorted(scales, reverse=True) and scales[-1] < 2.0**24
    train = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss_scale"] <= scales[-1] for r in train)
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["scaler"]["scale"] == recipe.scaler.get_scale()

    (tmp_path / "run" / "checkpoints" / "step-00000006.pt").unlink()
    resumed = TrainingRecipe(config, tmp_path / "run", resume=True)
    resumed.setup()
    try:
        mid = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000003.pt")
        assert resumed.scaler.get_scale() == mid["scaler"]["scale"]
    finally:
        resumed.cleanup()


def test_settings_are_checked(tiny_corpus, tmp_path):
    # The loader refuses the name (tests/config); a config built in code is checked by the recipe.
    config = _config(tiny_corpus, tmp_path)
    config = replace(config, train=replace(config.train, precision="fp8"))
    with pytest.raises(ValueError, match=r"train.precision must be one of fp32, bf16, fp16"):
        TrainingRecipe(config, tmp_path / "a")
    with pytest.raises(ValueError, match=r"train.accum_grad_steps must be >= 1"):
        TrainingRecipe(_config(tiny_corpus, tmp_path, "train.accum_grad_steps=0"), tmp_path / "b")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train.device must be auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_accumulation_equals_one_big_batch_of_the_same_cuts(tiny_corpus, tmp_path):
    """accum_grad_steps=2 with batches A, B gives the update of one batch A+B: the loss is
    normalised by the tokens of the whole global batch, not per micro-batch."""
    manifests = tmp_path / "m"
    config = _config(tiny_corpus, manifests, "train.max_steps=1", "data.spec_augment=false",
                     "train.accum_grad_steps=2")  # fmt: skip
    recipe = TrainingRecipe(config, tmp_path / "run")
    recipe.setup()
    recipe.model.eval()  # BatchNorm statistics per micro-batch would differ from one batch
    batches = iter(recipe.train_loader)
    a, b = next(batches), next(batches)
    out = recipe._forward_backward([a, b], stop_requested=False)
    accumulated = {n: p.grad.clone() for n, p in recipe.model.named_parameters()}
    recipe.optimizer.zero_grad()
    loss_a, tokens_a, _, _ = recipe._ctc_loss(a)
    loss_b, tokens_b, _, _ = recipe._ctc_loss(b)
    ((loss_a + loss_b) / (tokens_a + tokens_b)).backward()
    recipe.cleanup()
    assert out.tokens == tokens_a + tokens_b and not out.bad and not out.stop
    assert out.loss_sum == pytest.approx(float(loss_a + loss_b), rel=1e-6)
    for name, p in recipe.model.named_parameters():
        torch.testing.assert_close(accumulated[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)
