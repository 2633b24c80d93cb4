"""An E-Branchformer block that loses both branches under DDP (2 real gloo processes).

With both branches empty the block's merge gets no gradient; DDP built without
``find_unused_parameters`` then fails on the next step ("Expected to have finished reduction in
the prior iteration"). The allocator frees the merge with the last branch (issue 15), so training
goes on, on both ranks, with identical replicas.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_distributed import _free_port, _rank_env

from dmao.method import DmaoAllocator, DmaoConfig
from dmao.models.registry import build_model

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch built without torch.distributed"
)


def _loss(model, rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 * step + rank)  # each rank its own batch
    features = torch.randn(2, 40, 16, generator=g)
    targets = torch.randint(1, 8, (2, 4), generator=g)
    log_probs, out_lens = model(features, torch.tensor([40, 32]))
    return F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, torch.tensor([4, 3]))


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(_rank_env(rank, 2, port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        torch.manual_seed(0)
        model = build_model(
            "ebranchformer_ctc", vocab_size=8, num_features=16, d_model=32, num_layers=2,
            head_dim=8, conv_kernel_size=3, frontend_channels=(4, 4, 4, 4), dropout=0.0,
        )  # fmt: skip
        config = DmaoConfig(enabled=True, score_every_steps=1, last_event_fraction=0.5)
        allocator = DmaoAllocator(
            model.adaptable_modules(), config, total_steps=4, shared=model.adaptable_groups()
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        steps_after = 0
        for step in range(6):
            optimizer.zero_grad()
            _loss(ddp, rank, step).backward()
            allocator.after_backward(step)
            optimizer.step()
            if step == 0:
                # Force the event to empty both branches of block 1 (same scores on both ranks).
                modules = model.adaptable_modules()
                scores = {n: torch.ones(m.num_components()) for n, m in modules.items()}
                for kind in ("mhsa", "cgmlp"):
                    scores[f"encoder.blocks.1.{kind}"] = torch.zeros(
                        modules[f"encoder.blocks.1.{kind}"].num_components()
                    )
                allocator.tracker.scores = scores
                block = model.encoder.blocks[1]
                emptied = sum(
                    p.numel()
                    for name in ("mhsa", "cgmlp", "merge")
                    for p in getattr(block, name).parameters()
                )
                event = allocator.reallocate(1, (emptied - 1) / allocator.total_cost(), optimizer)
                assert event.freed == ["encoder.blocks.1.merge"], event.freed
                ddp = torch.nn.parallel.DistributedDataParallel(model)  # new parameters
            else:
                steps_after += 1
        torch.save(
            {
                "params": {n: p.detach() for n, p in model.named_parameters()},
                "steps_after": steps_after,
                "merge": model.encoder.blocks[1].merge is None,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        torch.distributed.destroy_process_group()


def test_ebranchformer_without_branches_trains_on_under_ddp(tmp_path):
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["steps_after"] == r1["steps_after"] == 5
    assert r0["merge"] and r1["merge"]
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
