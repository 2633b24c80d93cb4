"""``train.init_from``: a run that starts from another run's weights (fine-tuning), on the tiny
real corpus, through the production recipe."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_train_overrides

from dmao.cli.main import main
from dmao.config import load_config
from dmao.training.checkpoint import CheckpointError, load_checkpoint
from dmao.training.initialization import open_init_source
from dmao.training.model_setup import build_model_from_config
from dmao.training.recipe import TrainingRecipe


@pytest.fixture(scope="module")
def dmao_run(tiny_corpus, tmp_path_factory):
    """A DMAO run whose event changed its widths (so its architecture is not the uniform one)."""
    root = tmp_path_factory.mktemp("init_source")
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, root / "manifests"),
        "train.max_steps=8",
        "train.valid_every_steps=4",
        "train.checkpoint_every_steps=4",
        "dmao.enabled=true",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    ]
    assert main(["train", "--out", str(root / "run"), *overrides]) == 0
    return root / "run", overrides


def _set_up(overrides, run_dir):
    recipe = TrainingRecipe(load_config(None, overrides), run_dir)
    recipe.setup()
    return recipe


def test_a_new_run_starts_from_the_weights_architecture_and_tokenizer(dmao_run, tmp_path):
    source, overrides = dmao_run
    best = load_checkpoint(source / "checkpoints" / "best.pt")
    run = tmp_path / "finetune"
    recipe = _set_up([*overrides, "dmao.enabled=false", f"train.init_from={source}"], run)
    try:
        assert recipe.model.architecture.to_dict() == best["architecture"]
        for name, value in recipe.model.state_dict().items():
            torch.testing.assert_close(value, best["model"][name], rtol=0, atol=0, msg=name)
        assert (run / "tokenizer").is_dir()
        for path in (source / "tokenizer").iterdir():
            assert (run / "tokenizer" / path.name).read_bytes() == path.read_bytes()
        assert recipe.scheduler.last_epoch == 0  # a new schedule, from step 0
    finally:
        recipe.cleanup()
    # Not the widths a fresh model of this config would have: DMAO changed them.
    config = load_config(None, overrides).model
    uniform = build_model_from_config(config, recipe.tokenizer.vocab_size).architecture.to_dict()
    assert best["architecture"] != uniform
    # It trains on from there (and a resume of it ignores init_from).
    args = ["train", "--out", str(tmp_path / "ft"), *overrides, "dmao.enabled=false"]
    assert main([*args, f"train.init_from={source}", "train.max_steps=4"]) == 0


def test_excluded_weights_start_fresh_and_the_run_trains_its_own_tokenizer(dmao_run, tmp_path):
    source, overrides = dmao_run
    best = load_checkpoint(source / "checkpoints" / "best.pt")
    init = [f"train.init_from={source / 'checkpoints' / 'best.pt'}", "train.init_exclude=[output]"]
    recipe = _set_up([*overrides, "dmao.enabled=false", *init], tmp_path / "run")
    try:
        state = recipe.model.state_dict()
        assert not torch.equal(state["output.weight"], best["model"]["output.weight"])
        torch.testing.assert_close(
            state["encoder.blocks.0.ff1.linear1.weight"],
            best["model"]["encoder.blocks.0.ff1.linear1.weight"],
            rtol=0,
            atol=0,
        )
    finally:
        recipe.cleanup()


def test_a_checkpoint_that_does_not_fit_is_refused_with_every_mismatch(dmao_run, tmp_path):
    source, overrides = dmao_run
    args = [*overrides, "dmao.enabled=false", f"train.init_from={source}", "model.d_model=48"]
    with pytest.raises(CheckpointError) as err:
        _set_up(args, tmp_path / "run")
    message = str(err.value)
    assert "does not fit the model" in message and "train.init_exclude" in message
    assert "output.weight: checkpoint (" in message and "vs model (" in message


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor a run folder"):
        open_init_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        open_init_source(tmp_path / "empty")
