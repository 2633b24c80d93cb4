"""E-Branchformer-CTC: VGG frontend → E-Branchformer blocks with per-layer widths → linear.

Block layout (Kim et al. 2023, "E-Branchformer"; ESPnet ``EBranchformerEncoderLayer``)::

    x = x + ½·FF1(x)
    g = MHSA(x)                      global branch  (pre-LN inside the module)
    l = cgMLP(x)                     local branch   (pre-LN inside the module)
    c = [g ; l]                      (B, T, 2d)
    x = x + Linear(c + DWConv(c))    merge module: NOT adapted by DMAO
    x = x + ½·FF2(x)
    x = LayerNorm(x)

The adaptable modules of block ``i`` are ``model.encoder.blocks[i].<kind>`` for ``kind`` in
:data:`~dmao.models.architecture.EBRANCHFORMER_KINDS` (``ff1, mhsa, cgmlp, ff2``); a module of width
0 is skipped. A skipped branch enters the merge as zeros (a concatenation with nothing in it); when
both branches are skipped the merge is removed too, as there is nothing to merge (DMAO counts its
parameters as freed: :meth:`EBranchformerCTC.adaptable_groups`).

Sizes (METHOD.md §6): FFN hidden 4·d, cgMLP hidden 6·d (3·d gated channels), d/64 heads, kernel 31
for the cgMLP gate and the merge convolution: 12 blocks at d = 256 / 384 / 512 give
25.7 / 56.9 / 100.2 M parameters with the Conformer's frontend and ~80 output labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmao.method.plan import SharedSubmodule
from dmao.models.architecture import (
    EBRANCHFORMER_KINDS,
    EncoderArchitecture,
    LayerWidths,
    default_num_heads,
)
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.cgmlp import ConvolutionalGatingMLP
from dmao.models.ctc import EncoderCTCModel
from dmao.models.dropout import dropout
from dmao.models.encoder import BlockStackEncoder
from dmao.models.feed_forward import FeedForward

__all__ = ["BranchMerge", "EBranchformerBlock", "EBranchformerCTC", "EBranchformerEncoder"]

# Macaron half-step residuals, as in the Conformer.
_FF_RESIDUAL_SCALE = 0.5


class BranchMerge(nn.Module):
    """The E-Branchformer merge: ``Linear(c + DWConv(c))`` of the concatenated branches ``c``.

    Not adaptable: its size depends only on d (METHOD.md §2).

    Args:
        d_model: model dimension d (the concatenation has 2d channels).
        kernel_size: depthwise kernel size over time; odd, for "same" padding.
        dropout: output dropout probability.
    """

    def __init__(self, d_model: int, kernel_size: int = 31, dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"BranchMerge kernel_size must be odd for 'same' padding, got {kernel_size}"
            )
        self.dropout = dropout
        self.depthwise = nn.Conv1d(
            2 * d_model, 2 * d_model, kernel_size, padding=kernel_size // 2, groups=2 * d_model
        )
        self.proj = nn.Linear(2 * d_model, d_model)

    def forward(self, global_branch: Tensor, local_branch: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, d)`` branch outputs, ``mask (B, T)`` bool (True = valid) → ``(B, T, d)``."""
        c = torch.cat([global_branch, local_branch], dim=-1)  # (B, T, 2d)
        # Zero the padding so the depthwise kernel sees what "same" padding gives a lone utterance.
        c = c.masked_fill(~mask[:, :, None], 0.0)
        c = c + self.depthwise(c.transpose(1, 2)).transpose(1, 2)  # (B, T, 2d)
        return dropout(self.proj(c), self.dropout, self.training)  # (B, T, d)


class EBranchformerBlock(nn.Module):
    """One E-Branchformer block with the module widths given by ``widths``.

    Args:
        d_model: model dimension d.
        widths: FFN hidden units, heads and cgMLP gated channels of this block (0 = skipped).
        head_dim: attention head dimension.
        conv_kernel_size: kernel size of the cgMLP gate and merge depthwise convolutions.
        dropout: dropout probability given to every sub-module.
    """

    def __init__(
        self,
        d_model: int,
        widths: LayerWidths,
        head_dim: int = 64,
        conv_kernel_size: int = 31,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if widths.kinds != EBRANCHFORMER_KINDS:
            raise ValueError(
                f"EBranchformerBlock needs widths for {list(EBRANCHFORMER_KINDS)}, "
                f"got {list(widths.kinds)}"
            )
        self.d_model = d_model
        self.ff1 = FeedForward(d_model, widths.ff1, dropout)
        self.mhsa = MultiHeadSelfAttention(d_model, widths.mhsa, head_dim, dropout)
        self.cgmlp = ConvolutionalGatingMLP(d_model, widths.cgmlp, conv_kernel_size, dropout)
        # With both branches empty there is nothing to merge: no merge parameters either (DMAO
        # frees them when it empties the last branch, dmao.method.plan.SharedSubmodule).
        self.merge = (
            BranchMerge(d_model, conv_kernel_size, dropout) if widths.mhsa or widths.cgmlp else None
        )
        self.ff2 = FeedForward(d_model, widths.ff2, dropout)
        self.final_norm = nn.LayerNorm(d_model)

    @property
    def widths(self) -> LayerWidths:
        """The current widths, read from the sub-modules."""
        return LayerWidths(
            *(getattr(self, kind).width for kind in EBRANCHFORMER_KINDS),
            kinds=EBRANCHFORMER_KINDS,
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x (B, T, d)``, ``mask (B, T)`` bool (True = valid) → ``(B, T, d)``."""
        if self.ff1.width > 0:
            x = x + _FF_RESIDUAL_SCALE * self.ff1(x)
        if self.merge is not None and (self.mhsa.width > 0 or self.cgmlp.width > 0):
            # A width-0 module returns zeros without computing anything.
            x = x + self.merge(self.mhsa(x, mask), self.cgmlp(x, mask), mask)
        if self.ff2.width > 0:
            x = x + _FF_RESIDUAL_SCALE * self.ff2(x)
        return self.final_norm(x)


class EBranchformerEncoder(BlockStackEncoder):
    """VGG frontend followed by one :class:`EBranchformerBlock` per entry of ``architecture``.

    Args:
        architecture: per-layer widths (E-Branchformer kinds); its length is the number of blocks.
        num_features: input feature bins F.
        d_model: model dimension d.
        head_dim: attention head dimension.
        conv_kernel_size: cgMLP gate and merge depthwise kernel size.
        dropout: dropout probability of every block sub-module.
        frontend_channels: channels of the four frontend convolutions.
    """

    def __init__(
        self,
        architecture: EncoderArchitecture,
        num_features: int = 80,
        d_model: int = 256,
        head_dim: int = 64,
        conv_kernel_size: int = 31,
        dropout: float = 0.1,
        frontend_channels: tuple[int, int, int, int] = (32, 64, 64, 32),
    ) -> None:
        super().__init__(
            (
                EBranchformerBlock(d_model, widths, head_dim, conv_kernel_size, dropout)
                for widths in architecture.layers
            ),
            num_features,
            d_model,
            frontend_channels,
        )


class EBranchformerCTC(EncoderCTCModel):
    """E-Branchformer encoder with a CTC output layer (blank = index 0).

    Args:
        vocab_size: output labels V including the blank at index 0.
        num_features: input feature bins F.
        d_model: model dimension d.
        num_layers: number of E-Branchformer blocks.
        num_heads: attention heads per block; default ``d_model // head_dim``.
        head_dim: attention head dimension (64).
        ff_multiplier: macaron FFN hidden units per model dimension (4).
        cgmlp_multiplier: cgMLP hidden units (values + gates) per model dimension (METHOD.md §6:
            6, i.e. ``3·d`` gated channels); ``cgmlp_multiplier * d_model`` must be even.
        conv_kernel_size: cgMLP gate and merge depthwise kernel size (31).
        dropout: base dropout probability of every block sub-module (0.1).
        frontend_channels: channels of the four frontend convolutions (32/64/64/32).
        architecture: per-layer widths overriding the uniform ones (e.g. a DMAO result from a
            checkpoint); must have ``num_layers`` layers of E-Branchformer kinds.
        dropout_scaling: give every block module ``min(dropout · width / default width, 0.9)``
            (METHOD.md §4.7), so a model built from a non-uniform architecture trains with the
            dropouts its DMAO run ended with; no effect on uniform widths.
    """

    MODULE_KINDS = EBRANCHFORMER_KINDS

    def __init__(
        self,
        vocab_size: int,
        num_features: int = 80,
        d_model: int = 256,
        num_layers: int = 12,
        num_heads: int | None = None,
        head_dim: int = 64,
        ff_multiplier: int = 4,
        cgmlp_multiplier: int = 6,
        conv_kernel_size: int = 31,
        dropout: float = 0.1,
        frontend_channels: tuple[int, int, int, int] = (32, 64, 64, 32),
        architecture: EncoderArchitecture | None = None,
        dropout_scaling: bool = True,
    ) -> None:
        super().__init__()
        self.check_arguments(vocab_size, dropout)
        if (cgmlp_multiplier * d_model) % 2 != 0:
            raise ValueError(
                f"EBranchformerCTC: cgmlp_multiplier * d_model = {cgmlp_multiplier * d_model} "
                f"hidden units must be even (half values, half gates)"
            )
        ff_hidden = ff_multiplier * d_model
        default = EncoderArchitecture.repeat(
            num_layers,
            LayerWidths(
                ff1=ff_hidden,
                mhsa=default_num_heads(d_model, head_dim, num_heads),
                cgmlp=cgmlp_multiplier * d_model // 2,
                ff2=ff_hidden,
            ),
        )
        self.build(
            vocab_size=vocab_size,
            num_features=num_features,
            d_model=d_model,
            head_dim=head_dim,
            dropout=dropout,
            default=default,
            architecture=architecture,
            make_encoder=lambda widths: EBranchformerEncoder(
                widths,
                num_features=num_features,
                d_model=d_model,
                head_dim=head_dim,
                conv_kernel_size=conv_kernel_size,
                dropout=dropout,
                frontend_channels=tuple(frontend_channels),
            ),
            dropout_scaling=dropout_scaling,
        )

    def adaptable_groups(self) -> list[SharedSubmodule]:
        """Each block's branch merge, used only while its ``mhsa`` or ``cgmlp`` is non-empty."""
        return [
            SharedSubmodule(
                (f"encoder.blocks.{i}.mhsa", f"encoder.blocks.{i}.cgmlp"), block, "merge"
            )
            for i, block in enumerate(self.encoder.blocks)
        ]
