"""dmao.perf.flops: the corrected FLOP counter against independent counts, and extrapolation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from flop_reference import reference_flops
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dmao.models import ConformerCTC
from dmao.perf.flops import FLOP_CORRECTIONS, count_flops


def _model(dropout: float = 0.1) -> ConformerCTC:
    torch.manual_seed(0)
    return ConformerCTC(
        12, d_model=32, num_layers=2, head_dim=16, conv_kernel_size=7,
        frontend_channels=(2, 4, 4, 2), dropout=dropout,
    ).train()  # fmt: skip


def _run(model: nn.Module, batch_size: int, frames: int):
    """Forward + CTC + backward on a random full-length batch (the bench's count)."""

    def run() -> None:
        features = torch.randn(batch_size, frames, 80)
        log_probs, out_lens = model(features, torch.full((batch_size,), frames))
        targets = torch.ones(batch_size, 1, dtype=torch.long)
        ones = torch.ones(batch_size, dtype=torch.long)
        F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, ones).backward()

    return run


@pytest.mark.parametrize("dropout", [0.1, 0.0])
def test_count_equals_the_independent_count(dropout):
    """Dropout 0.1 on CPU: attention through matmul (ours); 0.0: SDPA's fused CPU kernel, which
    the plain counter sees as 0 FLOPs and the corrected one as the math backend's bmm calls."""
    model = _model(dropout)
    count = count_flops(_run(model, 3, 40), 3, 40)
    assert count.total == reference_flops(model, 3, 40)
    assert count.frontend > 0 and count.attention > 0 and count.other > 0
    # Attention analytically: q·kᵀ and weights·v, 2 FLOPs per MAC, backward twice the forward.
    heads, head_dim, encoder_frames = 2, 16, 10
    assert count.attention == 2 * 3 * (2 * 2 * 3 * heads * encoder_frames**2 * head_dim)


def test_depthwise_backward_counts_groups():
    """Weight gradient = forward MACs for any ``groups``; the plain counter is C times off."""
    B, C, T, K = 2, 16, 20, 5
    conv = nn.Conv1d(C, C, K, groups=C, padding=K // 2)
    x = torch.randn(B, C, T, requires_grad=True)
    with FlopCounterMode(display=False, custom_mapping=FLOP_CORRECTIONS) as counter:
        conv(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * B * T * C * K
    # groups = 1: the same as torch's own formula.
    dense = nn.Conv2d(3, 8, 3, padding=1)
    y = torch.randn(2, 3, 10, 12, requires_grad=True)
    totals = []
    for mapping in (FLOP_CORRECTIONS, None):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            dense(y).sum().backward()
        totals.append(counter.get_total_flops())
    assert totals[0] == totals[1] == 3 * 2 * 2 * 10 * 12 * 8 * 3 * 9


def test_fused_cpu_attention_counts_as_the_math_backend():
    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    totals = []
    cases = (
        (SDPBackend.FLASH_ATTENTION, FLOP_CORRECTIONS),
        (SDPBackend.MATH, None),
        (SDPBackend.FLASH_ATTENTION, None),  # the gap: torch has no formula for the CPU kernel
    )
    for backend, mapping in cases:
        with sdpa_kernel(backend), FlopCounterMode(display=False, custom_mapping=mapping) as c:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
        totals.append(c.get_total_flops())
    assert totals[0] == totals[1] == 3 * (2 * 2 * 2 * 3 * 17 * 17 * 8)
    assert totals[2] == 0


def test_extrapolation_is_exact_for_the_counted_shape_and_close_elsewhere():
    model = _model(0.0)
    count = count_flops(_run(model, 3, 40), 3, 40)
    assert count.scaled_to(3, 40) == count.total
    for B, T in ((5, 64), (2, 203), (7, 41)):
        actual = count_flops(_run(model, B, T), B, T).total
        # The pools' floors: conv3/conv4 run on T // 2 frames and the rest on T // 4, so the
        # linear scaling is off by less than 3 frames in T.
        assert count.scaled_to(B, T) == pytest.approx(actual, rel=3 / T)
