from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.models.convolution import ConvolutionModule, _masked_batch_norm
from dmao.models.frontend import lengths_to_mask


def _select_channels(conv: ConvolutionModule, units: list[int]) -> ConvolutionModule:
    """A copy of ``conv`` with channels ``units`` (repeats = duplicates), function-preserving."""
    C = conv.channels
    new = ConvolutionModule(conv.d_model, len(units), conv.kernel_size, conv.dropout)
    index = torch.tensor(units)
    copies = torch.bincount(index, minlength=C).float()[index]
    with torch.no_grad():
        new.pre_norm.load_state_dict(conv.pre_norm.state_dict())
        rows = torch.cat([index, C + index])  # GLU value rows, then the matching gate rows
        new.pointwise1.weight.copy_(conv.pointwise1.weight[rows])
        new.pointwise1.bias.copy_(conv.pointwise1.bias[rows])
        new.depthwise.weight.copy_(conv.depthwise.weight[index])
        new.depthwise.bias.copy_(conv.depthwise.bias[index])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new.norm, name).copy_(getattr(conv.norm, name)[index])
        new.pointwise2.weight.copy_(conv.pointwise2.weight[:, index] / copies)
        new.pointwise2.bias.copy_(conv.pointwise2.bias)
    return new


def _random_batch(d_model: int, lengths: list[int], pad: int = 5):
    x = torch.randn(len(lengths), max(lengths) + pad, d_model)
    return x, lengths_to_mask(torch.tensor(lengths), x.shape[1])


def test_shape_walk_with_channels_unlike_d_model():
    torch.manual_seed(0)
    conv = ConvolutionModule(d_model=32, channels=48, kernel_size=31)
    x, mask = _random_batch(32, [20, 9, 1])
    for mode in (conv.train, conv.eval):
        mode()
        y = conv(x, mask)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert conv.pointwise1.weight.shape == (2 * 48, 32)
    assert conv.depthwise.weight.shape == (48, 1, 31)
    assert conv.pointwise2.weight.shape == (32, 48)
    assert isinstance(conv.norm, nn.BatchNorm1d) and conv.channels == conv.width == 48


def test_parameters_are_units_times_cost_plus_shared():
    conv = ConvolutionModule(d_model=32, channels=48, kernel_size=7)
    shared = 2 * 32 + 32  # pre-LayerNorm + pointwise2 bias
    assert sum(p.numel() for p in conv.parameters()) == 48 * conv.params_per_unit + shared


def test_zero_width_module_has_no_parameters_and_outputs_zeros():
    conv = ConvolutionModule(d_model=32, channels=0)
    assert list(conv.parameters()) == [] and list(conv.buffers()) == []
    x, mask = _random_batch(32, [4, 2])
    assert torch.equal(conv(x, mask), torch.zeros_like(x))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvolutionModule(d_model=32, channels=4, kernel_size=4)


@torch.no_grad()
def test_padding_invariance_eval():
    torch.manual_seed(0)
    conv = ConvolutionModule(d_model=16, channels=24, kernel_size=7).eval()
    conv.norm.running_mean.normal_()  # non-trivial statistics
    conv.norm.running_var.uniform_(0.5, 2.0)
    lengths = [11, 3, 17]
    x, mask = _random_batch(16, lengths, pad=6)
    x = x.masked_fill(~mask[:, :, None], 1e3)  # garbage padding
    batched = conv(x, mask)
    for i, n in enumerate(lengths):
        alone = conv(x[i : i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_training_statistics_ignore_padding():
    """In training mode, BatchNorm statistics come from valid frames only, so the valid outputs
    and the running estimates do not depend on how much padding the batch has."""
    torch.manual_seed(0)
    lengths = [11, 3, 17]
    x, mask = _random_batch(16, lengths, pad=0)
    x_padded = torch.cat([x, torch.full((3, 25, 16), 7.0)], dim=1)
    mask_padded = lengths_to_mask(torch.tensor(lengths), x_padded.shape[1])
    conv = ConvolutionModule(d_model=16, channels=24, kernel_size=7, dropout=0.0).train()
    conv_padded = ConvolutionModule(d_model=16, channels=24, kernel_size=7, dropout=0.0).train()
    conv_padded.load_state_dict(conv.state_dict())
    y, y_padded = conv(x, mask), conv_padded(x_padded, mask_padded)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(y[i, :n], y_padded[i, :n], atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(conv.norm, name), getattr(conv_padded.norm, name))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_masked_batch_norm_equals_batch_norm_without_padding(momentum):
    torch.manual_seed(0)
    ours = nn.BatchNorm1d(6, momentum=momentum)
    reference = nn.BatchNorm1d(6, momentum=momentum)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    reference.load_state_dict(ours.state_dict())
    for _ in range(3):
        x = torch.randn(4, 6, 9) * 3 + 1
        full = torch.ones(4, 9, dtype=torch.bool)
        torch.testing.assert_close(_masked_batch_norm(ours, x, full), reference(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name))


@pytest.mark.parametrize("training", [False, True])
@torch.no_grad()
def test_channel_layout_supports_drop_and_duplicate(training: bool):
    torch.manual_seed(0)
    conv = ConvolutionModule(d_model=16, channels=10, kernel_size=5, dropout=0.0)
    conv.norm.running_mean.normal_()
    conv.norm.running_var.uniform_(0.5, 2.0)
    x, mask = _random_batch(16, [9, 4])
    # Duplicating channel 2 with halved pointwise2 columns computes the same function; in
    # training mode too, because each channel keeps its own BatchNorm statistics.
    grown = _select_channels(conv, [*range(10), 2]).train(training)
    shrunk = _select_channels(conv, [c for c in range(10) if c != 7]).train(training)
    expected = conv.train(training)(x, mask)
    torch.testing.assert_close(grown(x, mask)[mask], expected[mask])
    # Dropping channel 7 removes exactly its contribution (= zeroing its pointwise2 column).
    conv.pointwise2.weight[:, 7] = 0.0
    torch.testing.assert_close(shrunk(x, mask)[mask], conv(x, mask)[mask])
