from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmao.models.feed_forward import FeedForward


def _select_units(ffn: FeedForward, units: list[int]) -> FeedForward:
    """A copy of ``ffn`` with hidden units ``units`` (repeats = duplicates), function-preserving:
    each copy of a unit gets its W2 column divided by the number of copies."""
    new = FeedForward(ffn.d_model, len(units), ffn.dropout)
    index = torch.tensor(units)
    copies = torch.bincount(index, minlength=ffn.hidden).float()[index]
    with torch.no_grad():
        new.norm.load_state_dict(ffn.norm.state_dict())
        new.linear1.weight.copy_(ffn.linear1.weight[index])
        new.linear1.bias.copy_(ffn.linear1.bias[index])
        new.linear2.weight.copy_(ffn.linear2.weight[:, index] / copies)
        new.linear2.bias.copy_(ffn.linear2.bias)
    return new


def test_shape_walk_and_reference_maths():
    torch.manual_seed(0)
    ffn = FeedForward(d_model=32, hidden=96, dropout=0.1).eval()
    x = torch.randn(3, 7, 32)
    y = ffn(x)
    assert y.shape == (3, 7, 32)
    expected = ffn.linear2(
        F.silu(ffn.linear1(F.layer_norm(x, (32,), ffn.norm.weight, ffn.norm.bias)))
    )
    torch.testing.assert_close(y, expected)
    assert ffn.hidden == ffn.width == 96
    assert ffn.linear1.weight.shape == (96, 32) and ffn.linear2.weight.shape == (32, 96)


def test_parameters_are_units_times_cost_plus_shared():
    ffn = FeedForward(d_model=32, hidden=96)
    shared = 2 * 32 + 32  # LayerNorm scale/shift + linear2 bias
    assert sum(p.numel() for p in ffn.parameters()) == 96 * ffn.params_per_unit + shared


def test_zero_width_module_has_no_parameters_and_outputs_zeros():
    ffn = FeedForward(d_model=32, hidden=0)
    assert list(ffn.parameters()) == []
    assert ffn.width == 0
    x = torch.randn(2, 5, 32)
    assert torch.equal(ffn(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="hidden must be >= 0"):
        FeedForward(d_model=32, hidden=-1)


@torch.no_grad()
def test_unit_layout_supports_drop_and_duplicate():
    torch.manual_seed(0)
    ffn = FeedForward(d_model=16, hidden=12).eval()
    x = torch.randn(2, 5, 16)
    # Duplicating unit 3 with halved outgoing weights computes the same function.
    grown = _select_units(ffn, [*range(12), 3]).eval()
    assert grown.hidden == 13
    torch.testing.assert_close(grown(x), ffn(x))
    # Dropping unit 5 removes exactly its contribution (= zeroing its W2 column).
    shrunk = _select_units(ffn, [u for u in range(12) if u != 5]).eval()
    ffn.linear2.weight[:, 5] = 0.0
    torch.testing.assert_close(shrunk(x), ffn(x))


def test_dropout_attribute_is_used():
    ffn = FeedForward(d_model=16, hidden=32, dropout=0.0).train()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ffn(x), ffn.eval()(x))
    ffn.train().dropout = 0.5  # DMAO rescales this attribute; forward must honour it
    assert not torch.allclose(ffn(x), ffn.eval()(x))
