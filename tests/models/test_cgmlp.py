"""The cgMLP (E-Branchformer local branch): shapes, unit layout, exact reselection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmao.method.growth import GrowthInit
from dmao.models.cgmlp import ConvolutionalGatingMLP
from dmao.models.frontend import lengths_to_mask

D, C, K = 16, 12, 5


def _module(seed: int = 0) -> ConvolutionalGatingMLP:
    torch.manual_seed(seed)
    m = ConvolutionalGatingMLP(D, C, K, dropout=0.0)
    with torch.no_grad():  # a trained-looking gate: non-trivial kernels and statistics
        m.depthwise.weight.normal_(std=0.3)
        m.norm.running_mean.normal_()
        m.norm.running_var.uniform_(0.5, 2.0)
        m.norm.weight.uniform_(0.5, 1.5)
    return m.eval()


def _input(lengths: list[int], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), D, generator=g)
    return x, lengths_to_mask(torch.tensor(lengths), max(lengths))


def test_shapes_parameters_and_width_zero():
    m = _module()
    x, mask = _input([9, 4])
    for mode in (m.train, m.eval):
        mode()
        y = m(x, mask)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert m.width == C and m.proj1.weight.shape == (2 * C, D)
    own = 2 * D + D  # pre-norm and proj2 bias belong to the module, not to a unit
    assert sum(p.numel() for p in m.parameters()) == C * m.params_per_unit + own
    # Per unit: 2 proj1 rows, a K-tap kernel, 1 proj2 column (norms and biases are no MACs).
    m.units_per_component = 1
    assert m.component_macs(context_frames=100) == 2 * D + K + D
    empty = ConvolutionalGatingMLP(D, 0, K)
    assert list(empty.parameters()) == [] and empty.width == 0
    assert torch.equal(empty(x, mask), torch.zeros_like(x))
    with pytest.raises(ValueError, match="odd"):
        ConvolutionalGatingMLP(D, C, 4)


def test_fresh_gates_are_one():
    """ESPnet initialisation: weight ~ 0 and bias 1, so a new cgMLP is a plain GELU MLP."""
    torch.manual_seed(0)
    m = ConvolutionalGatingMLP(D, C, K, dropout=0.0).eval()
    x, mask = _input([7])
    value = F.gelu(m.proj1(m.pre_norm(x)))[..., :C]
    torch.testing.assert_close(m(x, mask), m.proj2(value), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_padding_does_not_change_valid_outputs():
    m = _module()
    x, mask = _input([11, 5])
    batched = m(x, mask)
    alone = m(x[1:, :5], mask[1:, :5])
    torch.testing.assert_close(batched[1, :5], alone[0], atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_a_unit_is_exactly_its_slices():
    """Dropping units = zeroing their proj2 columns; permuting units changes nothing; a
    function-preserving duplicate changes nothing."""
    x, mask = _input([10, 6])
    reference = _module()
    keep = torch.tensor([5, 0, 7, 2, 11])
    dropped = _module()
    dropped.reselect(keep, GrowthInit("copy"))
    zeroed = _module()
    gone = torch.ones(C, dtype=torch.bool)
    gone[keep] = False
    zeroed.proj2.weight[:, gone] = 0.0
    torch.testing.assert_close(dropped(x, mask), zeroed(x, mask), atol=1e-6, rtol=1e-6)
    assert dropped.width == 5 and dropped.norm.num_features == 5

    permuted = _module()
    permuted.reselect(torch.randperm(C), GrowthInit("copy"))
    torch.testing.assert_close(permuted(x, mask), reference(x, mask), atol=1e-6, rtol=1e-6)

    grown = _module()
    grown.reselect(torch.tensor([*range(C), 3, 3, 9]), GrowthInit("function_preserving"))
    assert grown.width == C + 3
    torch.testing.assert_close(grown(x, mask), reference(x, mask), atol=1e-6, rtol=1e-6)


def test_scores_use_value_and_gate_rows():
    m = _module()
    m.default_width = C
    m.set_granularity(4)
    with torch.no_grad():
        m.proj1.weight.zero_()
        m.proj1.weight[C + 4] = 1.0  # the gate row of unit 4 only: component 1 (units 3..5)
    scores = m.component_scores("magnitude")
    assert scores.shape == (4,) and scores.argmax() == 1 and scores[[0, 2, 3]].sum() == 0
