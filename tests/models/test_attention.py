from __future__ import annotations

import copy

import pytest
import torch
from conftest import legacy_qkv_state
from torch import nn

from dmao.method import GrowthInit
from dmao.models.attention import MultiHeadSelfAttention, legacy_qkv_modules
from dmao.models.conformer import ConformerCTC
from dmao.models.frontend import lengths_to_mask


def _random_batch(d_model: int, lengths: list[int], pad: int = 4):
    x = torch.randn(len(lengths), max(lengths) + pad, d_model)
    return x, lengths_to_mask(torch.tensor(lengths), x.shape[1])


def test_shape_walk_with_heads_unlike_d_over_64():
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(d_model=64, num_heads=3, head_dim=64)
    x, mask = _random_batch(64, [10, 1, 6])
    for mode in (mhsa.train, mhsa.eval):
        mode()
        y = mhsa(x, mask)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert mhsa.qkv.weight.shape == (3 * 3 * 64, 64) and mhsa.out.weight.shape == (64, 3 * 64)
    assert mhsa.num_heads == mhsa.width == 3


def test_parameters_are_units_times_cost_plus_shared():
    mhsa = MultiHeadSelfAttention(d_model=48, num_heads=5, head_dim=16)
    shared = 2 * 48 + 48  # LayerNorm + out bias
    assert sum(p.numel() for p in mhsa.parameters()) == 5 * mhsa.params_per_unit + shared


def test_zero_width_module_has_no_parameters_and_outputs_zeros():
    mhsa = MultiHeadSelfAttention(d_model=32, num_heads=0)
    assert list(mhsa.parameters()) == []
    x, mask = _random_batch(32, [3, 2])
    assert torch.equal(mhsa(x, mask), torch.zeros_like(x))


@torch.no_grad()
def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    d, H = 32, 4
    ours = MultiHeadSelfAttention(d_model=d, num_heads=H, head_dim=d // H).eval()
    reference = nn.MultiheadAttention(d, H, batch_first=True).eval()
    reference.in_proj_weight.copy_(ours.qkv.weight)  # the same Q, K, V row blocks
    reference.in_proj_bias.copy_(ours.qkv.bias)
    reference.out_proj.load_state_dict(ours.out.state_dict())
    x, mask = _random_batch(d, [7, 12, 3])
    h = ours.norm(x)
    expected, _ = reference(h, h, h, key_padding_mask=~mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask)[mask], expected[mask], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_invariance():
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(d_model=32, num_heads=2, head_dim=16).eval()
    lengths = [5, 12, 1]
    x, mask = _random_batch(32, lengths, pad=9)
    x = x.masked_fill(~mask[:, :, None], 1e3)
    batched = mhsa(x, mask)
    for i, n in enumerate(lengths):
        alone = mhsa(x[i : i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_utterance_without_valid_frames_stays_finite():
    mhsa = MultiHeadSelfAttention(d_model=16, num_heads=2, head_dim=8)
    x, mask = _random_batch(16, [0, 4], pad=0)
    assert torch.isfinite(mhsa(x, mask)).all()


@pytest.mark.parametrize("num_heads", [2, 4])
@torch.no_grad()
def test_head_layout_supports_drop_and_duplicate(num_heads: int):
    """Through the production ``reselect`` (METHOD.md §2: a head is its Q/K/V rows and its
    out-projection columns): duplicating a head with halved outgoing weights keeps the output,
    and dropping head 0 removes exactly its contribution."""
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(d_model=24, num_heads=num_heads, head_dim=8).eval()
    x, mask = _random_batch(24, [6, 9])
    expected = mhsa(x, mask)
    grown = copy.deepcopy(mhsa)
    grown.reselect(torch.tensor([*range(num_heads), 1]), GrowthInit("function_preserving"))
    assert grown.num_heads == num_heads + 1
    torch.testing.assert_close(grown(x, mask), expected)
    shrunk = copy.deepcopy(mhsa)
    shrunk.reselect(torch.arange(1, num_heads), GrowthInit("copy"))
    mhsa.out.weight[:, :8] = 0.0  # head 0's out-projection columns
    torch.testing.assert_close(shrunk(x, mask), mhsa(x, mask))


@torch.no_grad()
def test_a_checkpoint_with_separate_q_k_v_loads_into_the_fused_layer():
    torch.manual_seed(0)
    model = ConformerCTC(vocab_size=11, d_model=32, num_layers=2, head_dim=8)
    legacy = legacy_qkv_state(model.state_dict())
    assert "encoder.blocks.1.mhsa.v.bias" in legacy and not any("qkv" in k for k in legacy)
    assert legacy_qkv_modules(legacy) == ["encoder.blocks.0.mhsa.", "encoder.blocks.1.mhsa."]
    assert legacy_qkv_modules(model.state_dict()) == []
    torch.manual_seed(1)
    fresh = ConformerCTC(vocab_size=11, d_model=32, num_layers=2, head_dim=8)
    fresh.load_state_dict(legacy)  # strict: every key accounted for after the hook
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert "encoder.blocks.0.mhsa.q.weight" in legacy  # the caller's dict is left alone


def test_a_seed_gives_the_initial_weights_of_the_three_layer_version():
    """The fused layer draws its initial values like the separate q, k, v layers it replaced."""
    torch.manual_seed(3)
    fused = MultiHeadSelfAttention(d_model=24, num_heads=2, head_dim=8)
    after = torch.rand(1)
    torch.manual_seed(3)
    nn.LayerNorm(24)  # the norm is built first and draws nothing
    q, k, v = (nn.Linear(24, 16) for _ in range(3))
    out = nn.Linear(16, 24)
    assert torch.equal(fused.qkv.weight, torch.cat([q.weight, k.weight, v.weight]))
    assert torch.equal(fused.qkv.bias, torch.cat([q.bias, k.bias, v.bias]))
    assert torch.equal(fused.out.weight, out.weight)
    assert torch.equal(torch.rand(1), after)  # and nothing more
    assert fused.qkv.weight.device.type == "cpu" and fused.qkv.weight.requires_grad
