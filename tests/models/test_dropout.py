"""dmao.models.dropout: same distribution and gradients as F.dropout, same maths as SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmao.models import MultiHeadSelfAttention
from dmao.models.dropout import attention_with_dropout, dropout


def test_identity_when_not_training_or_p_zero():
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, False) is x
    assert dropout(x, 0.0, True) is x


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keeps_one_minus_p_and_rescales(p: float):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, p, True)
    kept = y != 0
    # 200k Bernoulli draws: the kept fraction is within ~5 standard deviations of 1 - p.
    sd = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sd
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))


def test_gradient_is_the_mask_and_seeded_runs_repeat():
    x = torch.randn(4, 50, 8, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.2, True)
    y.sum().backward()
    # d y / d x is 1/(1-p) where kept, 0 where dropped.
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.8)
    torch.manual_seed(1)
    torch.testing.assert_close(dropout(x, 0.2, True), y)


def test_low_precision_input_keeps_its_dtype():
    x = torch.randn(10, 10, dtype=torch.bfloat16)
    assert dropout(x, 0.1, True).dtype == torch.bfloat16


def test_p_one_drops_everything():
    assert torch.count_nonzero(dropout(torch.randn(7), 1.0, True)) == 0


def test_attention_without_dropout_equals_sdpa_values_and_gradients():
    torch.manual_seed(0)
    B, H, T, Dh = 2, 3, 11, 8
    q, k, v = (torch.randn(B, H, T, Dh, requires_grad=True) for _ in range(3))
    key_mask = torch.arange(T)[None, :] < torch.tensor([[11], [6]])  # (B, T)
    ours = attention_with_dropout(q, k, v, key_mask, 0.0)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_training_attention_never_looks_at_padded_keys():
    """With dropout on, valid outputs do not depend on what the padded frames hold."""
    torch.manual_seed(0)
    module = MultiHeadSelfAttention(16, num_heads=2, head_dim=8, dropout=0.3).train()
    x = torch.randn(2, 9, 16)
    mask = torch.arange(9)[None, :] < torch.tensor([[9], [5]])
    noisy = x.clone()
    noisy[1, 5:] = 100.0 * torch.randn(4, 16)
    torch.manual_seed(5)
    a = module(x, mask)
    torch.manual_seed(5)
    b = module(noisy, mask)
    torch.testing.assert_close(a[mask], b[mask])
    assert torch.isfinite(a).all()
