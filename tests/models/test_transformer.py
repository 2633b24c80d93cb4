"""Pre-LN Transformer blocks: layout, positions, architecture checks."""

from __future__ import annotations

import math

import pytest
import torch

from dmao.models.architecture import EncoderArchitecture, LayerWidths
from dmao.models.frontend import lengths_to_mask
from dmao.models.transformer import TransformerBlock, TransformerCTC, sinusoidal_positions

D = 32


@torch.no_grad()
def test_block_is_pre_ln_and_skips_width_zero_modules():
    torch.manual_seed(0)
    block = TransformerBlock(D, LayerWidths(mhsa=2, ff=64), head_dim=8, dropout=0.0).eval()
    x = torch.randn(2, 7, D)
    mask = lengths_to_mask(torch.tensor([7, 3]), 7)
    h = x + block.mhsa(x, mask)
    torch.testing.assert_close(block(x, mask), h + block.ff(h))
    no_ff = TransformerBlock(D, LayerWidths(mhsa=2, ff=0), head_dim=8, dropout=0.0).eval()
    no_ff.load_state_dict(block.state_dict(), strict=False)
    torch.testing.assert_close(no_ff(x, mask), h)
    with pytest.raises(ValueError, match="TransformerBlock needs widths"):
        TransformerBlock(D, LayerWidths(1, 1, 1, 1))


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 6)
    assert pe.shape == (50, 6)
    torch.testing.assert_close(pe[:, 0], torch.sin(torch.arange(50.0)))
    torch.testing.assert_close(pe[:, 1], torch.cos(torch.arange(50.0)))
    torch.testing.assert_close(pe[3, 4], torch.tensor(math.sin(3 / 10000 ** (4 / 6))))
    assert sinusoidal_positions(4, 5).shape == (4, 5)  # odd d


@torch.no_grad()
def test_positions_tell_identical_frames_apart(monkeypatch):
    """Without a convolution only the positions tell a frame where it is: identical input frames
    give identical interior outputs without them, different outputs with them."""
    torch.manual_seed(0)
    model = TransformerCTC(vocab_size=6, num_features=8, d_model=D, num_layers=1, head_dim=8)
    model.eval()
    x = torch.randn(1, 1, 8).expand(1, 40, 8)  # the same frame 40 times
    interior = slice(2, 8)  # away from the frontend's zero padding at the edges
    out = model(x, torch.tensor([40]))[0][0, interior]
    assert not torch.allclose(out[0], out[1], atol=1e-4)

    def no_positions(num_frames, d_model, device=None):
        return torch.zeros(num_frames, d_model, device=device)

    monkeypatch.setattr("dmao.models.transformer.sinusoidal_positions", no_positions)
    out = model(x, torch.tensor([40]))[0][0, interior]
    torch.testing.assert_close(out[0], out[1])


def test_model_defaults_and_architecture_checks():
    model = TransformerCTC(vocab_size=10, d_model=128, num_layers=3)
    assert model.architecture == EncoderArchitecture.repeat(3, LayerWidths(mhsa=2, ff=512))
    with pytest.raises(ValueError, match=r"module kinds \['ff1', 'conv'"):
        TransformerCTC(
            vocab_size=10,
            d_model=128,
            num_layers=2,
            architecture=EncoderArchitecture.uniform(2, 128),
        )
    with pytest.raises(ValueError, match="architecture has 3 layers but num_layers=2"):
        TransformerCTC(vocab_size=10, d_model=128, num_layers=2, architecture=model.architecture)
