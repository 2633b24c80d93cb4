"""Conformer convolution module with an adaptable number of channels.

Unit layout (what DMAO slices, METHOD.md §2): channel ``c`` owns
- rows ``c`` (GLU value) and ``channels + c`` (GLU gate) of ``pointwise1.weight`` / ``.bias``,
- ``depthwise.weight[c]`` and ``depthwise.bias[c]``,
- ``norm.weight[c]``, ``norm.bias[c]`` and the running statistics ``norm.running_mean/var[c]``,
- column ``c`` of ``pointwise2.weight``.
``pre_norm`` and ``pointwise2.bias`` belong to the module. The pointwise convolutions are
``nn.Linear`` on ``(B, T, ·)`` (the same maths as a kernel-1 Conv1d) so their rows and columns slice
like the feed-forward module's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method.units import SlicedUnits, UnitSlice
from dmao.models.dropout import dropout

__all__ = ["ConvolutionModule"]


class ConvolutionModule(SlicedUnits, nn.Module):
    """pre-LN → Linear(d, 2C), GLU → depthwise Conv1d → BatchNorm → SiLU → Linear(C, d) → dropout.

    Args:
        d_model: model dimension d.
        channels: channels C (may differ from d); 0 builds an empty module the block skips.
        kernel_size: depthwise kernel size (paper: 31); odd, so "same" padding is symmetric.
        dropout: output dropout probability, kept as the float attribute ``dropout`` so DMAO can
            rescale it with the width (METHOD.md §4.7).
    """

    def __init__(
        self, d_model: int, channels: int, kernel_size: int = 31, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if channels < 0:
            raise ValueError(f"ConvolutionModule channels must be >= 0, got {channels}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"ConvolutionModule kernel_size must be odd for 'same' padding, got {kernel_size}"
            )
        self.d_model = d_model
        self.kernel_size = kernel_size
        self.dropout = dropout
        if channels == 0:
            # A width-0 module owns nothing (see FeedForward).
            self.pre_norm = self.pointwise1 = self.depthwise = self.norm = self.pointwise2 = None
            return
        self.pre_norm = nn.LayerNorm(d_model)
        # Rows [0, C) are the GLU values, rows [C, 2C) the matching gates.
        self.pointwise1 = nn.Linear(d_model, 2 * channels)
        self.depthwise = nn.Conv1d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        # BatchNorm, not LayerNorm: BatchNorm normalises every channel with its own statistics, so
        # dropping channels or duplicating one (DMAO) leaves every surviving channel's
        # normalisation exactly as it was. LayerNorm over channels would mix all channels into
        # each channel's statistics and change them whenever the channel set changes.
        self.norm = nn.BatchNorm1d(channels)
        self.pointwise2 = nn.Linear(channels, d_model)

    @property
    def channels(self) -> int:
        """Current number of channels, read from the weights (so it follows any resize)."""
        return 0 if self.depthwise is None else self.depthwise.weight.shape[0]

    @property
    def width(self) -> int:
        """Width in DMAO units (channels)."""
        return self.channels

    @property
    def params_per_unit(self) -> int:
        """Parameters one channel owns: 2 pointwise1 rows + biases, its depthwise kernel + bias,
        its norm scale and shift, and its pointwise2 column."""
        return 2 * (self.d_model + 1) + (self.kernel_size + 1) + 2 + self.d_model

    # DMAO unit interface (dmao.method.units.AdaptableModule): what each channel owns.
    UNIT_SUBMODULES = ("pre_norm", "pointwise1", "depthwise", "norm", "pointwise2")

    def unit_slices(self) -> list[UnitSlice]:
        """Channel c: GLU value row c and gate row C+c of pointwise1 (scored, ``groups=2``), its
        depthwise kernel and bias, its BatchNorm entries and statistics, pointwise2 column c."""
        in_bound = 1.0 / self.d_model**0.5
        dw_bound = 1.0 / self.kernel_size**0.5  # depthwise fan_in = kernel_size
        out_bound = 1.0 / max(self.channels, 1) ** 0.5
        return [
            UnitSlice("pointwise1.weight", dim=0, groups=2, role="input", init_bound=in_bound),
            UnitSlice("pointwise1.bias", dim=0, groups=2, init_bound=in_bound),
            UnitSlice("depthwise.weight", dim=0, init_bound=dw_bound),
            UnitSlice("depthwise.bias", dim=0, init_bound=dw_bound),
            UnitSlice("norm.weight", dim=0, init_const=1.0),
            UnitSlice("norm.bias", dim=0, init_const=0.0),
            UnitSlice("norm.running_mean", dim=0, init_const=0.0),
            UnitSlice("norm.running_var", dim=0, init_const=1.0),
            UnitSlice("pointwise2.weight", dim=1, role="output", init_bound=out_bound),
        ]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """
        Args:
            x: ``(B, T, d)``.
            mask: ``(B, T)`` bool, True at valid frames.

        Returns:
            ``(B, T, d)``; all zeros for a width-0 module. Padded frames hold undefined values.
        """
        if self.depthwise is None:
            return torch.zeros_like(x)
        h = F.glu(self.pointwise1(self.pre_norm(x)), dim=-1)  # (B, T, C)
        # Zero the padding so the depthwise kernel sees what "same" padding gives a lone utterance.
        h = h.masked_fill(~mask[:, :, None], 0.0).transpose(1, 2)  # (B, C, T)
        h = self.depthwise(h)  # (B, C, T)
        h = _masked_batch_norm(self.norm, h, mask)  # (B, C, T)
        h = F.silu(h).transpose(1, 2)  # (B, T, C)
        return dropout(self.pointwise2(h), self.dropout, self.training)  # (B, T, d)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, channels={self.channels}, "
            f"kernel_size={self.kernel_size}, dropout={self.dropout}"
        )


def _masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, mask: Tensor) -> Tensor:
    """``norm(x)`` for ``x (B, C, T)``, but training statistics come from valid frames only.

    nn.BatchNorm1d would average over padded frames too, so the statistics (and the running
    estimates used at test time) would depend on how much padding each batch happens to have.
    Evaluation mode uses the running estimates and needs no mask.
    """
    if not norm.training or not norm.track_running_stats:
        return norm(x)
    valid = mask[:, None, :].to(torch.float32)  # (B, 1, T)
    count = valid.sum().clamp(min=1.0)
    x32 = x.float()  # statistics in float32 under mixed precision, as nn.BatchNorm does
    mean = (x32 * valid).sum(dim=(0, 2)) / count  # (C,)
    var = (((x32 - mean[None, :, None]) * valid) ** 2).sum(dim=(0, 2)) / count  # (C,) biased
    with torch.no_grad():
        # Same update rule as nn.BatchNorm1d: momentum-weighted, with the unbiased variance.
        norm.num_batches_tracked.add_(1)
        momentum = (
            norm.momentum
            if norm.momentum is not None
            else 1.0 / float(norm.num_batches_tracked)  # cumulative moving average
        )
        unbiased_var = var * (count / (count - 1.0).clamp(min=1.0))
        norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
        norm.running_var.lerp_(unbiased_var.to(norm.running_var.dtype), momentum)
    # y = x * scale + shift with per-channel scale and shift: one fused pass over (B, C, T)
    # instead of four (subtract, scale, weight, bias); ~40 % less time for this function, fwd +
    # bwd (BENCHMARKS.md "Speed").
    scale = torch.rsqrt(var + norm.eps)  # (C,)
    shift = -mean * scale  # (C,)
    if norm.affine:
        scale = scale * norm.weight
        shift = shift * norm.weight + norm.bias
    y = torch.addcmul(shift[None, :, None], x32, scale[None, :, None])  # (B, C, T)
    return y.to(x.dtype)
