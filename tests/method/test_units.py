"""Unit slicing, growth initialisation and scoring of the three adaptable module types."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.method.growth import GrowthInit
from dmao.method.units import AdaptableModule
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.convolution import ConvolutionModule
from dmao.models.feed_forward import FeedForward

D = 8


def _mark_ff(ffn: FeedForward) -> None:
    """Write each hidden unit's id into every entry it owns."""
    with torch.no_grad():
        ids = torch.arange(ffn.hidden, dtype=torch.float32)
        ffn.linear1.weight.copy_(ids[:, None].expand(-1, D))
        ffn.linear1.bias.copy_(ids)
        ffn.linear2.weight.copy_(ids[None, :].expand(D, -1))


def test_feed_forward_unit_rows_and_columns_stay_paired():
    ffn = FeedForward(D, 6)
    _mark_ff(ffn)
    norm, out_bias = ffn.norm.weight, ffn.linear2.bias
    units = torch.tensor([5, 0, 0, 3])
    remaps = ffn.reselect(units, GrowthInit("copy"))
    expected = units.float()
    assert ffn.width == 4 and ffn.linear1.out_features == 4 and ffn.linear2.in_features == 4
    assert torch.equal(ffn.linear1.weight, expected[:, None].expand(-1, D))
    assert torch.equal(ffn.linear1.bias, expected)
    assert torch.equal(ffn.linear2.weight, expected[None, :].expand(D, -1))
    # Shared parameters keep their objects (and so their optimizer state).
    assert ffn.norm.weight is norm and ffn.linear2.bias is out_bias
    r = remaps["linear2.weight"]
    assert r.dim == 1 and r.index.tolist() == [5, 0, 0, 3]
    assert r.fresh.tolist() == [False, False, True, False]
    assert remaps["norm.weight"].new is remaps["norm.weight"].old


def test_convolution_glu_pairs_and_channel_tensors_stay_paired():
    conv = ConvolutionModule(D, 5, kernel_size=3)
    C = 5
    ids = torch.arange(C, dtype=torch.float32)
    with torch.no_grad():
        # value row c holds c, gate row C+c holds c + 0.5: a swapped pairing would show.
        conv.pointwise1.weight.copy_(torch.cat([ids, ids + 0.5])[:, None].expand(-1, D))
        conv.pointwise1.bias.copy_(torch.cat([ids, ids + 0.5]))
        conv.depthwise.weight.copy_(ids[:, None, None].expand(-1, 1, 3))
        conv.depthwise.bias.copy_(ids)
        conv.norm.weight.copy_(ids)
        conv.norm.bias.copy_(ids)
        conv.norm.running_mean.copy_(ids)
        conv.norm.running_var.copy_(ids + 1)
        conv.pointwise2.weight.copy_(ids[None, :].expand(D, -1))
    units = torch.tensor([4, 1, 1])
    conv.reselect(units, GrowthInit("copy"))
    e = units.float()
    assert conv.width == 3 and conv.depthwise.groups == 3 and conv.norm.num_features == 3
    assert torch.equal(conv.pointwise1.weight[:, 0], torch.cat([e, e + 0.5]))
    assert torch.equal(conv.pointwise1.bias, torch.cat([e, e + 0.5]))
    assert torch.equal(conv.depthwise.weight[:, 0, 1], e)
    assert torch.equal(conv.depthwise.bias, e)
    assert torch.equal(conv.norm.weight, e) and torch.equal(conv.norm.bias, e)
    assert torch.equal(conv.norm.running_mean, e) and torch.equal(conv.norm.running_var, e + 1)
    assert torch.equal(conv.pointwise2.weight[0], e)
    conv.eval()(torch.randn(2, 4, D), torch.ones(2, 4, dtype=torch.bool))  # shapes consistent


def test_attention_head_blocks_are_contiguous():
    Dh, H = 4, 3
    mhsa = MultiHeadSelfAttention(D, H, head_dim=Dh)
    rows = torch.arange(H, dtype=torch.float32).repeat_interleave(Dh)  # head id per row
    # The fused projection: Q, K, V blocks of H*Dh rows; row value = 10 * block + head.
    qkv_rows = torch.cat([10 * g + rows for g in range(3)])
    with torch.no_grad():
        mhsa.qkv.weight.copy_(qkv_rows[:, None].expand(-1, D))
        mhsa.qkv.bias.copy_(qkv_rows)
        mhsa.out.weight.copy_(rows[None, :].expand(D, -1))
    mhsa.reselect(torch.tensor([2, 0, 2]), GrowthInit("copy"))
    e = torch.tensor([2.0, 0.0, 2.0]).repeat_interleave(Dh)
    expected = torch.cat([10 * g + e for g in range(3)])
    assert mhsa.num_heads == 3
    assert torch.equal(mhsa.qkv.weight[:, 0], expected) and torch.equal(mhsa.qkv.bias, expected)
    assert torch.equal(mhsa.out.weight[0], e)


def _modules():
    torch.manual_seed(0)
    conv = ConvolutionModule(D, 4, kernel_size=3)
    with torch.no_grad():  # non-trivial running statistics, so eval mode tests BatchNorm slicing
        conv.norm.running_mean.normal_()
        conv.norm.running_var.uniform_(0.5, 2.0)
    return [FeedForward(D, 4), conv, MultiHeadSelfAttention(D, 4, head_dim=2)]


def _run(module: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return module(x) if isinstance(module, FeedForward) else module(x, mask)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("mode", ["function_preserving", "fresh"])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_function_preserving_growth_keeps_outputs(index: int, mode: str, train: bool):
    """Also in train mode with dropout 0: BatchNorm then normalises with the batch's statistics,
    which a duplicated or fresh channel must not change for the other channels."""
    module = _modules()[index].train(train)
    module.dropout = 0.0
    x, mask = torch.randn(2, 6, D), torch.ones(2, 6, dtype=torch.bool)
    before = _run(module, x, mask)
    module.reselect(torch.tensor([0, 1, 1, 2, 3, 3, 3]), GrowthInit(mode))
    assert module.width == 7
    torch.testing.assert_close(_run(module, x, mask), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_fresh_growth_starts_a_new_unit_with_zero_outgoing_weights(index: int):
    copied, fresh = _modules()[index], _modules()[index]
    torch.manual_seed(3)
    copied.reselect(torch.tensor([0, 1, 2, 3, 1]), GrowthInit("copy"))
    fresh.reselect(torch.tensor([0, 1, 2, 3, 1]), GrowthInit("fresh"))
    for s in fresh.unit_slices():
        new = fresh.state_dict()[s.path]
        per_group = new.shape[s.dim] // s.groups
        last = [new.narrow(s.dim, (g + 1) * per_group - s.unit_size, s.unit_size)
                for g in range(s.groups)]  # fmt: skip
        rest = [new.narrow(s.dim, g * per_group, per_group - s.unit_size) for g in range(s.groups)]
        ref = copied.state_dict()[s.path]
        assert all(
            torch.equal(r, ref.narrow(s.dim, g * per_group, per_group - s.unit_size))
            for g, r in enumerate(rest)
        ), f"{s.path}: the original units must be untouched"
        if s.role == "output":
            assert all(not t.any() for t in last), f"{s.path}: outgoing weights must start at 0"
        elif s.role == "input":
            copy_of_1 = [ref.narrow(s.dim, (g + 1) * per_group - s.unit_size, s.unit_size)
                         for g in range(s.groups)]  # fmt: skip
            assert not all(torch.equal(a, b) for a, b in zip(last, copy_of_1, strict=True)), (
                f"{s.path}: the new unit must not be a copy of unit 1"
            )


@pytest.mark.parametrize("index", [0, 1, 2])
def test_noise_and_random_growth_touch_only_new_copies(index: int):
    module = _modules()[index]
    reference = {k: v.clone() for k, v in module.state_dict().items()}
    torch.manual_seed(1)
    noisy = _modules()[index]
    noisy.reselect(torch.tensor([0, 1, 2, 3, 1]), GrowthInit("copy_noise", noise_variance=0.01))
    random = _modules()[index]
    random.reselect(torch.tensor([0, 1, 2, 3, 1]), GrowthInit("random"))
    copied = _modules()[index]
    copied.reselect(torch.tensor([0, 1, 2, 3, 1]), GrowthInit("copy"))
    slices = copied.unit_slices()

    def originals(t: torch.Tensor, s) -> torch.Tensor:
        """The entries of the first four (original) units; the new copy is the fifth."""
        per_group = t.shape[s.dim] // s.groups
        kept = per_group - s.unit_size
        return torch.cat([t.narrow(s.dim, g * per_group, kept) for g in range(s.groups)], s.dim)

    for s in slices:
        exact = originals(copied.state_dict()[s.path], s)
        assert torch.equal(exact, reference[s.path])
        for m in (noisy, random):
            assert torch.equal(originals(m.state_dict()[s.path], s), exact), s.path
    # The new copy (last unit) differs from its original for trainable weights.
    assert not torch.equal(noisy.state_dict()[slices[0].path], copied.state_dict()[slices[0].path])
    assert not torch.equal(random.state_dict()[slices[0].path], copied.state_dict()[slices[0].path])


def test_zero_width_module_owns_nothing_and_cannot_grow_back():
    ffn = FeedForward(D, 4)
    remaps = ffn.reselect(torch.tensor([], dtype=torch.int64), GrowthInit())
    assert ffn.width == 0 and list(ffn.parameters()) == []
    assert all(r.new is None for r in remaps.values()) and len(remaps) == 6
    x = torch.randn(1, 3, D)
    assert torch.equal(ffn(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="width-0"):
        ffn.reselect(torch.tensor([0]), GrowthInit())


def test_modules_implement_the_interface_and_score_per_component():
    torch.manual_seed(0)
    mhsa = MultiHeadSelfAttention(D, 4, head_dim=2)
    ffn = FeedForward(D, 8)
    for m in (mhsa, ffn):
        m.default_width, m.base_dropout, m.kind = m.width, 0.1, "x"
        m.set_granularity(2)
        assert isinstance(m, AdaptableModule)
    assert mhsa.num_components() == 4 and ffn.num_components() == 2
    assert ffn.component_cost() == 4 * (2 * D + 1)
    x, mask = torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool)
    (mhsa(x, mask).square().sum() + ffn(x).square().sum()).backward()
    # Head h: mean |w*g| over its own rows of each of the Q, K and V blocks of qkv.
    qkv = mhsa.qkv.weight
    expected = (qkv * qkv.grad).abs().reshape(3, 4, 2, D).mean(dim=(0, 2, 3))
    torch.testing.assert_close(mhsa.component_scores("taylor"), expected)
    g = ffn.linear1.weight.grad.abs().reshape(2, 4, D).mean(dim=(1, 2))
    torch.testing.assert_close(ffn.component_scores("gradient"), g)
    m = ffn.linear1.weight.abs().reshape(2, 4, D).mean(dim=(1, 2))
    torch.testing.assert_close(ffn.component_scores("magnitude"), m.detach())
