"""E-Branchformer blocks: layout, skipped modules and branches, architecture checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmao.models.architecture import EncoderArchitecture, LayerWidths
from dmao.models.ebranchformer import EBranchformerBlock, EBranchformerCTC
from dmao.models.frontend import lengths_to_mask

D = 32


def _block(ff1: int, mhsa: int, cgmlp: int, ff2: int, seed: int = 0) -> EBranchformerBlock:
    torch.manual_seed(seed)
    widths = LayerWidths(ff1=ff1, mhsa=mhsa, cgmlp=cgmlp, ff2=ff2)
    return EBranchformerBlock(D, widths, head_dim=8, conv_kernel_size=5, dropout=0.0).eval()


def _input():
    x = torch.randn(2, 9, D)
    return x, lengths_to_mask(torch.tensor([9, 6]), 9)


@torch.no_grad()
def test_block_is_the_e_branchformer_layout():
    b = _block(64, 2, 48, 64)
    x, mask = _input()
    h = x + 0.5 * b.ff1(x)
    c = torch.cat([b.mhsa(h, mask), b.cgmlp(h, mask)], dim=-1).masked_fill(~mask[..., None], 0)
    h = h + b.merge.proj(c + b.merge.depthwise(c.transpose(1, 2)).transpose(1, 2))
    h = h + 0.5 * b.ff2(h)
    torch.testing.assert_close(b(x, mask), b.final_norm(h))
    assert b.widths == LayerWidths(ff1=64, mhsa=2, cgmlp=48, ff2=64)


@torch.no_grad()
def test_a_skipped_branch_enters_the_merge_as_zeros_and_two_skip_the_merge():
    full = _block(64, 2, 48, 64)
    no_attention = _block(64, 0, 48, 64)
    no_attention.load_state_dict(full.state_dict(), strict=False)
    assert not any(n.startswith("mhsa.") for n, _ in no_attention.named_parameters())
    x, mask = _input()
    h = x + 0.5 * full.ff1(x)
    local = full.cgmlp(h, mask)
    h = h + full.merge(torch.zeros_like(local), local, mask)
    h = h + 0.5 * full.ff2(h)
    torch.testing.assert_close(no_attention(x, mask), full.final_norm(h))

    no_branches = _block(64, 0, 0, 64)
    no_branches.load_state_dict(full.state_dict(), strict=False)
    no_branches.final_norm = nn.Identity()
    h = x + 0.5 * full.ff1(x)
    torch.testing.assert_close(no_branches(x, mask), h + 0.5 * full.ff2(h))


def test_model_defaults_and_architecture_checks():
    model = EBranchformerCTC(vocab_size=10, d_model=128, num_layers=2)
    assert model.architecture.layers[0] == LayerWidths(ff1=512, mhsa=2, cgmlp=384, ff2=512)
    assert model.encoder.blocks[0].cgmlp.kernel_size == 31
    assert model.encoder.blocks[0].merge.depthwise.kernel_size == (31,)
    conformer_arch = EncoderArchitecture.uniform(2, 128)
    with pytest.raises(ValueError, match=r"module kinds \['ff1', 'conv'.*another model type"):
        EBranchformerCTC(vocab_size=10, d_model=128, num_layers=2, architecture=conformer_arch)
    with pytest.raises(ValueError, match="must be even"):
        EBranchformerCTC(vocab_size=10, d_model=65, num_heads=1, cgmlp_multiplier=3)
    with pytest.raises(ValueError, match="EBranchformerCTC vocab_size must be >= 2"):
        EBranchformerCTC(vocab_size=1)
    with pytest.raises(ValueError, match="EBranchformerBlock needs widths"):
        EBranchformerBlock(D, LayerWidths(1, 1, 1, 1))
