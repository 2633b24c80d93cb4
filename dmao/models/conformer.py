"""Conformer-CTC: VGG frontend → Conformer blocks with per-layer widths → linear → log-softmax.

Block layout (METHOD.md §6): FF1 (half-step) → Conv → MHSA → FF2 (half-step) → LayerNorm, each
sub-module pre-normed with its own residual connection. Every block may have its own widths
(:class:`~dmao.models.architecture.LayerWidths`); a module of width 0 is skipped and adds nothing
to the residual stream (ours; the reference code added ``x`` again, METHOD.md §2).

The adaptable modules of block ``i`` are ``model.encoder.blocks[i].<kind>`` for ``kind`` in
:data:`~dmao.models.architecture.CONFORMER_KINDS`; replacing one with a module of another width
is all it takes to change the architecture, and ``model.architecture`` reads the widths back.
"""

from __future__ import annotations

from torch import Tensor, nn

from dmao.models.architecture import CONFORMER_KINDS, EncoderArchitecture, LayerWidths
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.convolution import ConvolutionModule
from dmao.models.ctc import EncoderCTCModel
from dmao.models.encoder import BlockStackEncoder
from dmao.models.feed_forward import FeedForward

__all__ = ["ConformerBlock", "ConformerCTC", "ConformerEncoder"]

# Macaron half-step residuals (Gulati et al. 2020): each of the two FFNs adds half its output.
_FF_RESIDUAL_SCALE = 0.5


class ConformerBlock(nn.Module):
    """One Conformer block with the module widths given by ``widths``.

    Args:
        d_model: model dimension d.
        widths: FFN hidden units, conv channels and heads of this block (0 = skipped).
        head_dim: attention head dimension.
        conv_kernel_size: depthwise convolution kernel size.
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
        self.d_model = d_model
        self.ff1 = FeedForward(d_model, widths.ff1, dropout)
        self.conv = ConvolutionModule(d_model, widths.conv, conv_kernel_size, dropout)
        self.mhsa = MultiHeadSelfAttention(d_model, widths.mhsa, head_dim, dropout)
        self.ff2 = FeedForward(d_model, widths.ff2, dropout)
        self.final_norm = nn.LayerNorm(d_model)

    @property
    def widths(self) -> LayerWidths:
        """The current widths, read from the sub-modules."""
        return LayerWidths(
            *(getattr(self, kind).width for kind in CONFORMER_KINDS), kinds=CONFORMER_KINDS
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x (B, T, d)``, ``mask (B, T)`` bool (True = valid) → ``(B, T, d)``."""
        # Width-0 modules are skipped outright rather than adding their zero output.
        if self.ff1.width > 0:
            x = x + _FF_RESIDUAL_SCALE * self.ff1(x)
        if self.conv.width > 0:
            x = x + self.conv(x, mask)
        if self.mhsa.width > 0:
            x = x + self.mhsa(x, mask)
        if self.ff2.width > 0:
            x = x + _FF_RESIDUAL_SCALE * self.ff2(x)
        return self.final_norm(x)


class ConformerEncoder(BlockStackEncoder):
    """VGG frontend followed by one :class:`ConformerBlock` per entry of ``architecture``.

    Args:
        architecture: per-layer widths; its length is the number of blocks.
        num_features: input feature bins F.
        d_model: model dimension d.
        head_dim: attention head dimension.
        conv_kernel_size: depthwise convolution kernel size.
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
                ConformerBlock(d_model, widths, head_dim, conv_kernel_size, dropout)
                for widths in architecture.layers
            ),
            num_features,
            d_model,
            frontend_channels,
        )


class ConformerCTC(EncoderCTCModel):
    """Conformer encoder with a CTC output layer (blank = index 0).

    Args:
        vocab_size: output labels V including the blank at index 0.
        num_features: input feature bins F (80 log-mel bins in the paper).
        d_model: model dimension d.
        num_layers: number of Conformer blocks.
        num_heads: attention heads per block; default ``d_model // head_dim``.
        head_dim: attention head dimension (paper: 64).
        ff_multiplier: FFN hidden units per model dimension (paper: 4).
        conv_kernel_size: depthwise convolution kernel size (paper: 31).
        dropout: base dropout probability of every block sub-module (paper: 0.1).
        frontend_channels: channels of the four frontend convolutions (paper: 32/64/64/32).
        architecture: per-layer widths overriding the uniform ones derived from ``num_layers``,
            ``num_heads``, ``ff_multiplier`` and ``d_model`` (e.g. a DMAO result from a
            checkpoint); must have ``num_layers`` layers.
        dropout_scaling: give every block module ``min(dropout · width / default width, 0.9)``
            (METHOD.md §4.7), so a model built from a non-uniform architecture trains with the
            dropouts its DMAO run ended with; no effect on uniform widths.
    """

    MODULE_KINDS = CONFORMER_KINDS

    def __init__(
        self,
        vocab_size: int,
        num_features: int = 80,
        d_model: int = 256,
        num_layers: int = 12,
        num_heads: int | None = None,
        head_dim: int = 64,
        ff_multiplier: int = 4,
        conv_kernel_size: int = 31,
        dropout: float = 0.1,
        frontend_channels: tuple[int, int, int, int] = (32, 64, 64, 32),
        architecture: EncoderArchitecture | None = None,
        dropout_scaling: bool = True,
    ) -> None:
        super().__init__()
        self.check_arguments(vocab_size, dropout)
        default = EncoderArchitecture.uniform(
            num_layers, d_model, ff_multiplier, head_dim, num_heads
        )
        self.build(
            vocab_size=vocab_size,
            num_features=num_features,
            d_model=d_model,
            head_dim=head_dim,
            dropout=dropout,
            default=default,
            architecture=architecture,
            make_encoder=lambda widths: ConformerEncoder(
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
