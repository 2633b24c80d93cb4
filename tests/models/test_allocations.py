"""Fixed allocations at the uniform budget: the authors' (METHOD.md §7) and a middle-wide one."""

from __future__ import annotations

import pytest

from dmao.models.allocations import allocate, authors_factors, middle_wide_factors
from dmao.models.conformer import ConformerCTC


def _model(architecture=None) -> ConformerCTC:
    # The small recipe's encoder (8 blocks, d = 144, 4 heads of 36), tiny frontend.
    return ConformerCTC(
        vocab_size=8, num_features=16, d_model=144, num_layers=8, head_dim=36,
        conv_kernel_size=5, frontend_channels=(4, 4, 4, 4), architecture=architecture,
    )  # fmt: skip


def _costs(model: ConformerCTC) -> tuple[dict, dict]:
    unit, cost = {}, {}
    for m in model.adaptable_modules().values():
        m.set_granularity(4)
        unit[m.kind], cost[m.kind] = m.units_per_component, m.component_cost()
    return unit, cost


@pytest.mark.parametrize("factors", [authors_factors(8), middle_wide_factors(8)])
def test_allocations_keep_the_uniform_budget(factors):
    uniform = _model()
    unit, cost = _costs(uniform)
    arch = allocate(factors, uniform.default_architecture, cost, unit)
    shaped = _model(arch)
    params = sum(p.numel() for p in shaped.parameters())
    uniform_params = sum(p.numel() for p in uniform.parameters())
    # Within half an FFN component, plus the norms/biases of modules emptied (none or a few).
    emptied = sum(1 for layer in arch.layers for k in layer.kinds if layer[k] == 0)
    assert abs(params - uniform_params) <= cost["ff1"] // 2 + emptied * 3 * 144
    assert arch != uniform.default_architecture


def test_the_shapes_are_the_intended_ones():
    uniform = _model()
    unit, cost = _costs(uniform)
    authors = allocate(authors_factors(8), uniform.default_architecture, cost, unit)
    assert authors.widths("mhsa")[-1] == 0  # the last layer loses its attention (§7)
    conv = authors.widths("conv")
    assert conv[-1] > conv[0]  # convolution grows with depth
    wide = allocate(middle_wide_factors(8), uniform.default_architecture, cost, unit)
    for kind in wide.kinds:
        widths = wide.widths(kind)
        assert widths[3] > widths[0] and widths[4] > widths[7], kind
