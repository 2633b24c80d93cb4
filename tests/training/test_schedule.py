from __future__ import annotations

import itertools

import pytest
import torch

from dmao.training.schedule import build_one_cycle_scheduler, one_cycle_lr


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
    sched = build_one_cycle_scheduler(opt, 100, 2e-3)
    seen = []
    for _ in range(60):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([one_cycle_lr(s, 100, 2e-3) for s in range(60)])
    # A fresh optimizer + scheduler restored from their states (as the recipe resumes) continue
    # on the same curve.
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched2 = build_one_cycle_scheduler(opt2, 100, 2e-3)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    resumed = []
    for _ in range(10):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx([one_cycle_lr(s, 100, 2e-3) for s in range(60, 70)])
