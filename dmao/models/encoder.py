"""The encoder skeleton every model family shares: global feature normalisation, the VGG frontend
(4x time subsampling), then a stack of blocks that each take ``(x, mask)`` and report their
per-layer ``widths``. The Conformer and the E-Branchformer differ only in the block they stack;
the Transformer also adds positions before the stack and a final norm after it (the two hooks)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from dmao.models.architecture import EncoderArchitecture
from dmao.models.frontend import VGGFrontend, lengths_to_mask
from dmao.models.normalization import GlobalFeatureNorm

__all__ = ["BlockStackEncoder"]


class BlockStackEncoder(nn.Module):
    """``feature_norm`` → ``frontend`` → ``blocks`` (in this registration order, which fixes the
    parameter order that optimizer states in checkpoints rely on).

    Args:
        blocks: the encoder blocks, bottom first; each has ``widths`` and ``forward(x, mask)``.
        num_features: input feature bins F.
        d_model: model dimension d.
        frontend_channels: channels of the four frontend convolutions.
    """

    def __init__(
        self,
        blocks: Iterable[nn.Module],
        num_features: int,
        d_model: int,
        frontend_channels: tuple[int, int, int, int],
    ) -> None:
        super().__init__()
        self.feature_norm = GlobalFeatureNorm(num_features)
        self.frontend = VGGFrontend(num_features, d_model, frontend_channels)
        self.blocks = nn.ModuleList(blocks)

    @property
    def architecture(self) -> EncoderArchitecture:
        """The current per-layer widths, read from the modules."""
        return EncoderArchitecture([block.widths for block in self.blocks])

    def before_blocks(self, x: Tensor) -> Tensor:
        """Hook on the frontend output ``(B, T', d)`` before the first block (identity here)."""
        return x

    def after_blocks(self, x: Tensor) -> Tensor:
        """Hook on the last block's output ``(B, T', d)`` (identity here)."""
        return x

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``features (B, T, F)``, ``feature_lens (B,)`` → ``(B, T', d)``, ``out_lens (B,)``."""
        x, out_lens = self.frontend(self.feature_norm(features), feature_lens)  # (B, T', d)
        x = self.before_blocks(x)
        mask = lengths_to_mask(out_lens, x.shape[1])  # (B, T')
        for block in self.blocks:
            x = block(x, mask)
        return self.after_blocks(x), out_lens
