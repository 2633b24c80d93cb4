"""Transformer-CTC: VGG frontend → pre-LN Transformer blocks with per-layer widths → linear.

Block layout (pre-LN, Xiong et al. 2020)::

    x = x + MHSA(LN(x))
    x = x + FF(LN(x))

with a final LayerNorm after the last block (a pre-LN stack never normalises its output
otherwise). The layer norms are inside the modules, as in the Conformer. Unlike the Conformer, no
convolution supplies position information, so fixed sinusoidal positions (Vaswani et al. 2017) are
added to the frontend output; they have no parameters and work for any length.

The adaptable modules of block ``i`` are ``model.encoder.blocks[i].<kind>`` for ``kind`` in
:data:`~dmao.models.architecture.TRANSFORMER_KINDS` (``mhsa, ff``); a module of width 0 is
skipped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dmao.models.architecture import (
    TRANSFORMER_KINDS,
    EncoderArchitecture,
    LayerWidths,
    default_num_heads,
)
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.ctc import EncoderCTCModel
from dmao.models.dropout import dropout
from dmao.models.encoder import BlockStackEncoder
from dmao.models.feed_forward import FeedForward

__all__ = ["TransformerBlock", "TransformerCTC", "TransformerEncoder", "sinusoidal_positions"]


def sinusoidal_positions(
    num_frames: int, d_model: int, device: torch.device | None = None
) -> Tensor:
    """``(num_frames, d_model)`` float32 sinusoidal position encodings (sin on even, cos on odd
    dimensions, wavelengths from 2π to 10000·2π)."""
    position = torch.arange(num_frames, dtype=torch.float32, device=device)[:, None]  # (T, 1)
    rate = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
        * (-math.log(10000.0) / d_model)
    )  # (ceil(d/2),)
    angles = position * rate  # (T, ceil(d/2))
    pe = torch.zeros(num_frames, d_model, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


class TransformerBlock(nn.Module):
    """One pre-LN Transformer block with the module widths given by ``widths``.

    Args:
        d_model: model dimension d.
        widths: heads and FFN hidden units of this block (0 = skipped).
        head_dim: attention head dimension.
        dropout: dropout probability given to both sub-modules.
    """

    def __init__(
        self, d_model: int, widths: LayerWidths, head_dim: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if widths.kinds != TRANSFORMER_KINDS:
            raise ValueError(
                f"TransformerBlock needs widths for {list(TRANSFORMER_KINDS)}, "
                f"got {list(widths.kinds)}"
            )
        self.d_model = d_model
        self.mhsa = MultiHeadSelfAttention(d_model, widths.mhsa, head_dim, dropout)
        self.ff = FeedForward(d_model, widths.ff, dropout)

    @property
    def widths(self) -> LayerWidths:
        """The current widths, read from the sub-modules."""
        return LayerWidths(
            *(getattr(self, kind).width for kind in TRANSFORMER_KINDS), kinds=TRANSFORMER_KINDS
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x (B, T, d)``, ``mask (B, T)`` bool (True = valid) → ``(B, T, d)``."""
        if self.mhsa.width > 0:
            x = x + self.mhsa(x, mask)
        if self.ff.width > 0:
            x = x + self.ff(x)
        return x


class TransformerEncoder(BlockStackEncoder):
    """VGG frontend + sinusoidal positions, one :class:`TransformerBlock` per entry of
    ``architecture``, final LayerNorm.

    Args:
        architecture: per-layer widths (Transformer kinds); its length is the number of blocks.
        num_features: input feature bins F.
        d_model: model dimension d.
        head_dim: attention head dimension.
        dropout: dropout probability of every block sub-module and of the block input.
        frontend_channels: channels of the four frontend convolutions.
    """

    def __init__(
        self,
        architecture: EncoderArchitecture,
        num_features: int = 80,
        d_model: int = 256,
        head_dim: int = 64,
        dropout: float = 0.1,
        frontend_channels: tuple[int, int, int, int] = (32, 64, 64, 32),
    ) -> None:
        super().__init__(
            (
                TransformerBlock(d_model, widths, head_dim, dropout)
                for widths in architecture.layers
            ),
            num_features,
            d_model,
            frontend_channels,
        )
        self.d_model = d_model
        self.dropout = dropout
        self.final_norm = nn.LayerNorm(d_model)

    def before_blocks(self, x: Tensor) -> Tensor:
        """Add sinusoidal positions to ``x (B, T', d)`` and apply the input dropout."""
        x = x + sinusoidal_positions(x.shape[1], self.d_model, x.device).to(x.dtype)
        return dropout(x, self.dropout, self.training)

    def after_blocks(self, x: Tensor) -> Tensor:
        """The final LayerNorm of a pre-LN stack."""
        return self.final_norm(x)


class TransformerCTC(EncoderCTCModel):
    """Pre-LN Transformer encoder with a CTC output layer (blank = index 0).

    Args:
        vocab_size: output labels V including the blank at index 0.
        num_features: input feature bins F.
        d_model: model dimension d.
        num_layers: number of Transformer blocks.
        num_heads: attention heads per block; default ``d_model // head_dim``.
        head_dim: attention head dimension (64).
        ff_multiplier: FFN hidden units per model dimension (4).
        dropout: base dropout probability of every block sub-module (0.1).
        frontend_channels: channels of the four frontend convolutions (32/64/64/32).
        architecture: per-layer widths overriding the uniform ones (e.g. a DMAO result from a
            checkpoint); must have ``num_layers`` layers of Transformer kinds.
        dropout_scaling: give every block module ``min(dropout · width / default width, 0.9)``
            (METHOD.md §4.7), so a model built from a non-uniform architecture trains with the
            dropouts its DMAO run ended with; no effect on uniform widths.
    """

    MODULE_KINDS = TRANSFORMER_KINDS

    def __init__(
        self,
        vocab_size: int,
        num_features: int = 80,
        d_model: int = 256,
        num_layers: int = 12,
        num_heads: int | None = None,
        head_dim: int = 64,
        ff_multiplier: int = 4,
        dropout: float = 0.1,
        frontend_channels: tuple[int, int, int, int] = (32, 64, 64, 32),
        architecture: EncoderArchitecture | None = None,
        dropout_scaling: bool = True,
    ) -> None:
        super().__init__()
        self.check_arguments(vocab_size, dropout)
        default = EncoderArchitecture.repeat(
            num_layers,
            LayerWidths(
                mhsa=default_num_heads(d_model, head_dim, num_heads), ff=ff_multiplier * d_model
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
            make_encoder=lambda widths: TransformerEncoder(
                widths,
                num_features=num_features,
                d_model=d_model,
                head_dim=head_dim,
                dropout=dropout,
                frontend_channels=tuple(frontend_channels),
            ),
            dropout_scaling=dropout_scaling,
        )
