from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_train_overrides, train_recipe

from dmao.config import ConfigError, OptimConfig, load_config
from dmao.training.metrics import read_metrics
from dmao.training.schedule import (
    build_scheduler,
    one_cycle_lr,
    schedule_lr,
)


def test_one_cycle_shape():
    total, peak = 1000, 1e-3
    lrs = [
        one_cycle_lr(s, total, peak, initial_lr_ratio=0.1, final_lr=1e-6) for s in range(total + 1)
    ]
    assert lrs[0] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(peak)
    assert lrs.index(max(lrs)) == 450  # peak at 45 % of training
    assert lrs[900] == pytest.approx(1e-4)  # back to the start value at 90 %
    assert lrs[-1] == pytest.approx(1e-6)
    assert all(b <= a for a, b in itertools.pairwise(lrs[450:]))  # monotone decay after the peak


def test_scheduler_follows_function_and_resumes():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched = build_scheduler(opt, 100, _optim(peak_lr=2e-3))
    seen = []
    for _ in range(60):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([one_cycle_lr(s, 100, 2e-3) for s in range(60)])
    # A fresh optimizer + scheduler restored from their states (as the recipe resumes) continue
    # on the same curve.
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched2 = build_scheduler(opt2, 100, _optim(peak_lr=2e-3))
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    resumed = []
    for _ in range(10):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx([one_cycle_lr(s, 100, 2e-3) for s in range(60, 70)])


def _optim(**settings) -> OptimConfig:
    return load_config(None, [f"optim.{k}={v}" for k, v in settings.items()]).optim


def test_warmup_cosine_rises_then_follows_a_half_cosine():
    optim = _optim(schedule="warmup_cosine", peak_lr=1e-3, warmup_fraction=0.1, final_lr=1e-5)
    lrs = [schedule_lr(optim, s, 1000) for s in range(1001)]
    assert lrs[0] == pytest.approx(1e-4)  # peak * initial_lr_ratio
    assert lrs[50] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half-way up
    assert lrs[100] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert lrs[550] == pytest.approx((1e-3 + 1e-5) / 2)  # half-way down: cos(π/2) = 0
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(b <= a for a, b in itertools.pairwise(lrs[100:]))


def test_noam_decays_as_the_inverse_square_root():
    optim = _optim(schedule="noam", peak_lr=2e-3, warmup_fraction=0.04)
    lrs = [schedule_lr(optim, s, 1000) for s in range(1001)]
    assert lrs[40] == pytest.approx(2e-3) and max(lrs) == pytest.approx(2e-3)
    assert lrs[160] == pytest.approx(1e-3)  # 4× the warm-up: half the peak
    assert lrs[640] == pytest.approx(5e-4)
    assert all(b <= a for a, b in itertools.pairwise(lrs[40:]))


def test_one_cycle_through_the_config_is_the_default_schedule():
    optim = _optim()
    assert optim.schedule == "one_cycle"
    assert [schedule_lr(optim, s, 200) for s in range(0, 201, 10)] == pytest.approx(
        [one_cycle_lr(s, 200, optim.peak_lr, final_lr=optim.final_lr) for s in range(0, 201, 10)]
    )


@pytest.mark.parametrize("schedule", ["warmup_cosine", "noam"])
def test_built_scheduler_follows_the_schedule_and_resumes(schedule):
    optim = _optim(schedule=schedule, peak_lr=2e-3, warmup_fraction=0.1)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched = build_scheduler(opt, 100, optim)
    seen = []
    for _ in range(60):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule_lr(optim, s, 100) for s in range(60)])
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched2 = build_scheduler(opt2, 100, optim)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(schedule_lr(optim, 60, 100))


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ConfigError, match=r"'optim\.schedule' must be one of one_cycle"):
        load_config(None, ["optim.schedule=linear"])
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match=r"warmup_fraction must be in \(0, 1\)"):
        build_scheduler(opt, 100, _optim(schedule="noam", warmup_fraction=1.0))
    with pytest.raises(ValueError, match=r"warmup_fraction must be in \(0, 0.5\]"):
        build_scheduler(opt, 100, _optim(warmup_fraction=0.6))


@pytest.mark.parametrize("schedule", ["warmup_cosine", "noam"])
def test_training_follows_the_configured_schedule(tiny_corpus, tmp_path, schedule):
    """A real run with `optim.schedule`: the LR it logs after each step is the schedule's for
    the next step (what the optimizer will use), as for the default one-cycle."""
    config = load_config(
        None,
        [
            *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
            f"optim.schedule={schedule}",
            "optim.warmup_fraction=0.25",
            "train.max_steps=8",
            "train.log_every_steps=1",
            "train.valid_every_steps=100",
            "train.checkpoint_every_steps=100",
        ],
    )
    train_recipe(config, tmp_path / "run")
    logged = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run", "train")}
    assert sorted(logged) == list(range(1, 9))
    for step, lr in logged.items():
        assert lr == pytest.approx(schedule_lr(config.optim, step, 8))
