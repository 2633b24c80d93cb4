"""End-to-end: the real recipe trains on a tiny real corpus, checkpoints, resumes and decodes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import (
    assert_same_training,
    legacy_qkv_state,
    rewind_run,
    tiny_train_overrides,
    train_recipe,
)

from dmao.config import load_config
from dmao.decoding.decode_run import decode_split
from dmao.method.diagnostics import twin_units
from dmao.reporting import build_report, save_figures
from dmao.reporting.twins import twin_table
from dmao.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe


def _tiny_config(corpus, manifest_dir, **train):
    overrides = [
        *tiny_train_overrides(corpus.root, manifest_dir),
        "model.dropout=0.0",
        "optim.peak_lr=3e-3",
        "train.log_every_steps=1",
    ] + [f"train.{k}={v}" for k, v in train.items()]
    return load_config(None, overrides)


@pytest.fixture(scope="module")
def trained_run(tiny_corpus, tmp_path_factory):
    manifests = tmp_path_factory.mktemp("manifests")
    run = tmp_path_factory.mktemp("run")
    config = _tiny_config(
        tiny_corpus, manifests, max_steps=40, valid_every_steps=20, checkpoint_every_steps=20
    )
    train_recipe(config, run)
    return run, manifests


def test_loss_falls_and_run_folder_is_complete(trained_run):
    run, _ = trained_run
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    for name in (
        "config.yaml",
        "tokenizer/tokenizer.json",
        "data_report.json",
        "architecture.json",
    ):
        assert (run / name).is_file(), name
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"]["num_input"] > report["train"]["num_kept"]  # problem cases excluded
    valid = read_metrics(run, "valid")
    assert [r["step"] for r in valid] == [20, 40]
    assert all(r["cer"] >= 0.0 for r in valid)
    best_step = min(valid, key=lambda r: r["wer"])["step"]
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == best_step
    state = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert state["step"] == 40
    assert state["architecture"]["layers"][0]["ff1"] == 128


def test_decode_scores_every_test_utterance(trained_run, tiny_corpus):
    run, _ = trained_run
    result = decode_split(run, "test", method="beam", beam_size=4, progress_bar=False)
    assert result.score.num_utterances == len(tiny_corpus.transcripts["test"])
    assert result.hypotheses_path.is_file()
    assert result.score.cer >= 0.0
    greedy = decode_split(run, "test", method="greedy", progress_bar=False)
    assert greedy.score.num_utterances == result.score.num_utterances


def test_resume_is_bit_exact(tiny_corpus, tmp_path):
    """Stop after 6 steps, resume to 12: same losses and weights as 12 uninterrupted steps."""
    manifests = tmp_path / "manifests"
    full = _tiny_config(
        tiny_corpus, manifests, max_steps=12, valid_every_steps=100, checkpoint_every_steps=6
    )
    train_recipe(full, tmp_path / "a")

    # Same run, killed after its step-6 checkpoint: emulate by removing the later checkpoint
    # of a copy and resuming from step 6.
    train_recipe(full, tmp_path / "b")
    rewind_run(tmp_path / "b", 6)
    train_recipe(full, tmp_path / "b", resume=True)

    a = assert_same_training(tmp_path / "a", tmp_path / "b", 12)
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000012.pt")
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, slot in a["optimizer"]["state"].items():
        assert torch.equal(slot["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])


def test_refuses_to_overwrite_and_checks_settings_on_resume(trained_run, tiny_corpus):
    run, manifests = trained_run
    config = _tiny_config(tiny_corpus, manifests, max_steps=40)
    with pytest.raises(FileExistsError, match="--resume"):
        TrainingRecipe(config, run).setup()
    changed = _tiny_config(tiny_corpus, manifests, max_steps=40)
    changed.model.d_model = 48
    before = (run / "config.yaml").read_text()
    with pytest.raises(Exception, match=r"model: checkpoint"):
        TrainingRecipe(changed, run, resume=True).setup()
    assert (run / "config.yaml").read_text() == before  # the refused resume changed nothing


def test_dmao_event_in_training_and_resume_across_it(tiny_corpus, tmp_path):
    """DMAO wired into the recipe: one event at 50 % of 12 steps moves parameters at a constant
    budget, is logged, and a run resumed from the checkpoint just before it equals the
    uninterrupted run bit for bit."""
    manifests = tmp_path / "manifests"
    dmao = [
        "dmao.enabled=true",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
        "dmao.granularity=4",
    ]
    config = _tiny_config(
        tiny_corpus, manifests, max_steps=12, valid_every_steps=100, checkpoint_every_steps=5
    )
    config = load_config(None, [*_overrides_of(config), *dmao])
    recipe = train_recipe(config, tmp_path / "a")
    events = read_metrics(tmp_path / "a", "dmao_event")
    assert [e["step"] for e in events] == [6]
    default = recipe.model.default_architecture.to_dict()
    final = json.loads((tmp_path / "a" / "architecture.json").read_text())
    assert final != default  # parameters moved
    assert {id(p) for g in recipe.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in recipe.model.parameters()
    }

    # dmao report: the components table and the figures of the run.
    report = build_report(tmp_path / "a")
    table = report.table().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["ff1", "ff2", "conv", "mhsa"]
    assert report.default_components["ff1"] == 4 and report.default_components["mhsa"] == 2
    moved = sum(
        abs(v - report.default_components[k]) for k, vs in report.components.items() for v in vs
    )
    assert moved > 0
    figures = save_figures(report, tmp_path / "a" / "report")
    assert [f.name for f in figures] == [
        "architecture_heatmap.png",
        "score_trajectories.png",
        "event_00000006.png",
    ]
    assert report.score_records and all(r["step"] < 6 for r in report.score_records)
    assert all(f.stat().st_size > 1000 for f in figures)
    # Exact copies of conv channels get identical updates (nothing per-channel is random in a
    # conv module): every duplicated channel is still a twin at the end, and the report says so.
    for name, module in recipe.model.adaptable_modules().items():
        copied = [c for c in events[0]["duplicated"] if c["module"] == name]
        if module.kind == "conv":
            assert twin_units(module) >= 2 * len(copied) * module.units_per_component, name
    assert "| conv |" in twin_table(tmp_path / "a")

    train_recipe(config, tmp_path / "b")
    (tmp_path / "b" / "checkpoints" / "step-00000010.pt").unlink()
    (tmp_path / "b" / "checkpoints" / "step-00000012.pt").unlink()
    resumed = train_recipe(config, tmp_path / "b", resume=True)  # from step 5, before the event
    assert resumed.model.architecture.to_dict() == final
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "step-00000012.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000012.pt")
    assert a["architecture"] == b["architecture"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name

    # Resuming after the event rebuilds the reallocated architecture from the checkpoint.
    (tmp_path / "b" / "checkpoints" / "step-00000012.pt").unlink()
    after = train_recipe(config, tmp_path / "b", resume=True)  # from step 10, after the event
    c = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000012.pt")
    assert after.model.architecture.to_dict() == final
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, c["model"][name]), name


def _overrides_of(config) -> list[str]:
    """The config as key=value overrides (to extend a built config)."""
    from dmao.config import config_to_dict

    out = []
    for section, values in config_to_dict(config).items():
        for key, value in values.items():
            out.append(f"{section}.{key}={json.dumps(value)}")
    return out


def test_resume_with_loader_workers_is_bit_exact(tiny_corpus, tmp_path):
    """With 2 DataLoader workers the loader draws batches ahead of the loop; the checkpoint
    stores the batches the loop consumed, so a resumed run sees the uninterrupted stream."""
    manifests = tmp_path / "manifests"
    config = _tiny_config(
        tiny_corpus, manifests, max_steps=7, valid_every_steps=100, checkpoint_every_steps=4
    )
    config.data.num_workers = 2
    config.data.max_batch_seconds = 3  # ~10 batches per epoch: workers run 4 batches ahead
    assert config.data.spec_augment  # masks seeded per batch: the same in any worker
    train_recipe(config, tmp_path / "a")
    train_recipe(config, tmp_path / "b")
    mid = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000004.pt")
    epoch = mid["sampler"]["diagnostics"]["current_epoch"]
    consumed = mid["sampler"]["diagnostics"]["stats_per_epoch"][epoch]["kept_batches"]
    assert mid["epoch"] == epoch == 0 and consumed == 4
    rewind_run(tmp_path / "b", 4)
    train_recipe(config, tmp_path / "b", resume=True)
    assert_same_training(tmp_path / "a", tmp_path / "b", 7)

    # The same seed without workers gives the same run: augmentation does not depend on the
    # number of workers (RELIABILITY.md 10).
    config.data.num_workers = 0
    train_recipe(config, tmp_path / "c")
    assert_same_training(tmp_path / "a", tmp_path / "c", 7)


def test_a_checkpoint_with_separate_q_k_v_decodes_but_does_not_resume(
    trained_run, tiny_corpus, tmp_path
):
    """Checkpoints written before the fused attention projection: the weights load (decode gives
    the same result), resuming their training is refused in one line naming the file."""
    run, manifests = trained_run
    legacy = tmp_path / "legacy"
    shutil.copytree(run, legacy)
    for path in (legacy / "checkpoints").glob("*.pt"):  # step-*.pt and best.pt
        state = load_checkpoint(path)
        state["model"] = legacy_qkv_state(state["model"])
        torch.save(state, path)
    assert (
        "encoder.blocks.0.mhsa.q.weight"
        in load_checkpoint(legacy / "checkpoints" / "best.pt")["model"]
    )
    ours = decode_split(run, "test", method="greedy", progress_bar=False).score
    theirs = decode_split(legacy, "test", method="greedy", progress_bar=False).score
    assert (theirs.wer, theirs.cer) == (ours.wer, ours.cer)
    config = _tiny_config(tiny_corpus, manifests, max_steps=40, valid_every_steps=20)
    config.train.checkpoint_every_steps = 20
    with pytest.raises(CheckpointError, match=r"step-00000040\.pt: .*separate q/k/v"):
        TrainingRecipe(config, legacy, resume=True).setup()
