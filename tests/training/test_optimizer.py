"""dmao.training.optimizer: fused AdamW that matches the default implementation."""

from __future__ import annotations

import copy

import torch

from dmao.config.schema import OptimConfig
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
