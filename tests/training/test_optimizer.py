"""dmao.training.optimizer: fused AdamW that matches the default implementation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dmao.config.schema import OptimConfig
from dmao.method import DmaoAllocator, DmaoConfig
from dmao.models import ConformerCTC
from dmao.training.optimizer import build_optimizer


def test_fused_on_cpu_with_the_config_settings():
    model = torch.nn.Linear(3, 2)
    optim = OptimConfig(peak_lr=1e-3, weight_decay=0.01, betas=[0.8, 0.9], eps=1e-8)
    optimizer = build_optimizer(model.parameters(), optim, torch.device("cpu"))
    group = optimizer.param_groups[0]
    assert group["fused"] is True
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        1e-3,
        (0.8, 0.9),
        1e-8,
        0.01,
    )


def test_fused_steps_match_the_default_implementation():
    """Three steps on a small Conformer-CTC: the same parameters as torch's default AdamW."""
    torch.manual_seed(0)
    model = ConformerCTC(12, d_model=32, num_layers=2, head_dim=16, frontend_channels=(2, 2, 2, 2))
    reference = copy.deepcopy(model)
    optim = OptimConfig(peak_lr=1e-3)
    fused = build_optimizer(model.parameters(), optim, torch.device("cpu"))
    default = torch.optim.AdamW(
        reference.parameters(),
        lr=optim.peak_lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )
    for _ in range(3):
        grads = [torch.randn_like(p) for p in model.parameters()]
        for m in (model, reference):
            for p, g in zip(m.parameters(), grads, strict=True):
                p.grad = g.clone()
        fused.step()
        default.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)


def test_fused_optimizer_steps_after_a_dmao_event():
    """A reallocation replaces parameters and remaps their AdamW state; the fused kernel then
    steps with state shaped like the new parameters."""
    torch.manual_seed(0)
    model = ConformerCTC(12, d_model=32, num_layers=2, head_dim=16, frontend_channels=(2, 2, 2, 2))
    optimizer = build_optimizer(model.parameters(), OptimConfig(peak_lr=1e-3), torch.device("cpu"))
    allocator = DmaoAllocator(
        model.adaptable_modules(), DmaoConfig(enabled=True, score_every_steps=1), 100
    )

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        log_probs, out_lens = model(torch.randn(2, 40, 80), torch.tensor([40, 32]))
        targets = torch.randint(1, 12, (2, 4))
        F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, torch.tensor([4, 3])).backward()
        allocator.after_backward(i)
        optimizer.step()

    step(0)
    event = allocator.reallocate(1, 0.3, optimizer)
    assert event.dropped and event.duplicated
    step(1)
    assert optimizer.param_groups[0]["fused"] is True
    for p in model.parameters():
        state = optimizer.state[p]
        assert state["exp_avg"].shape == p.shape and torch.isfinite(p).all()
