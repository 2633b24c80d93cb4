"""Twin detection on real modules: duplicated units are found until something separates them."""

from __future__ import annotations

import torch

from dmao.method import GrowthInit, components_to_units
from dmao.method.diagnostics import twin_units, unit_input_vectors
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.convolution import ConvolutionModule
from dmao.models.feed_forward import FeedForward


def _modules():
    torch.manual_seed(0)
    return [
        FeedForward(16, 32),
        ConvolutionModule(16, 16, kernel_size=3),
        MultiHeadSelfAttention(16, num_heads=4, head_dim=4),
    ]


def test_fresh_modules_have_no_twins_and_vectors_follow_the_units():
    for module in _modules():
        assert twin_units(module) == 0, type(module).__name__
        vectors = unit_input_vectors(module)
        assert vectors.shape[0] == module.width


def test_copies_are_twins_and_noise_or_fresh_units_are_not():
    for mode, twins in (("copy", 4), ("function_preserving", 4), ("copy_noise", 0), ("fresh", 0)):
        for module in _modules():
            units = torch.cat([torch.arange(module.width), torch.tensor([0, 1])])
            growth = GrowthInit(mode, noise_variance=1e-2)
            module.reselect(units, growth)
            # copy and Net2Net halving: units 0 and 1, twice each (the same input weights, so the
            # same gradient direction and, under Adam, the same update); noise and fresh units
            # have weights of their own.
            assert twin_units(module) == twins, (mode, type(module).__name__)


def test_component_reselection_of_a_conv_module_keeps_glu_halves_together():
    conv = _modules()[1]
    conv.units_per_component = 4
    conv.reselect(components_to_units(torch.tensor([0, 1, 2, 3, 3]), 4), GrowthInit("copy"))
    vectors = unit_input_vectors(conv)  # (20, 2 * 16): value and gate rows of each channel
    assert vectors.shape == (20, 32)
    torch.testing.assert_close(vectors[12:16], vectors[16:20])
    assert twin_units(conv) == 8
