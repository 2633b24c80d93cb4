"""Convolutional gating MLP (cgMLP), the local branch of E-Branchformer, with adaptable width.

Layout (Peng et al. 2022, Kim et al. 2023; ESPnet ``ConvolutionalGatingMLP``): pre-LayerNorm →
Linear(d, 2C) → GELU → split into values (rows ``[0, C)``) and gates (rows ``[C, 2C)``) → the gates
go through a norm and a depthwise convolution over time → values × gates → dropout →
Linear(C, d) → dropout. The hidden size of the paper's E-Branchformer is 6·d (METHOD.md §6), i.e.
``C = 3d`` gated channels.

Unit layout (what DMAO slices, METHOD.md §2): gated channel ``c`` owns
- rows ``c`` (value) and ``C + c`` (gate) of ``proj1.weight`` / ``.bias`` (scored),
- ``norm.weight[c]``, ``norm.bias[c]`` and the running statistics ``norm.running_mean/var[c]``,
- ``depthwise.weight[c]`` and ``depthwise.bias[c]``,
- column ``c`` of ``proj2.weight`` (outgoing).
So one DMAO component is a group of cgMLP hidden units consistent across the first linear, the
gating norm and convolution and the second linear. ``pre_norm`` and ``proj2.bias`` belong to the
module.

Decisions:
- The gate norm is a (padding-masked) BatchNorm, not ESPnet's LayerNorm over the C gate channels:
  LayerNorm mixes every channel into each channel's statistics, so dropping or duplicating a channel
  (DMAO) would change all the others; BatchNorm normalises each channel with its own statistics,
  which makes reselection exact (the same reason as in :mod:`dmao.models.convolution`).
- Norm before convolution, and the convolution initialised to weight ≈ 0 and bias 1, as ESPnet's
  CSGU: the gates start at 1, so a fresh cgMLP starts as a plain GELU MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method.units import SlicedUnits, UnitSlice

# The masked BatchNorm of the Conformer convolution module: statistics from valid frames only.
from dmao.models.convolution import _masked_batch_norm
from dmao.models.dropout import dropout

__all__ = ["ConvolutionalGatingMLP"]

# ESPnet's CSGU initialisation (espnet2/asr/layers/cgmlp.py): depthwise weights ~ N(0, 1e-6²) and
# bias 1, so every gate starts at ~1.
_GATE_WEIGHT_STD = 1e-6
_GATE_BIAS = 1.0


class ConvolutionalGatingMLP(SlicedUnits, nn.Module):
    """pre-LN → Linear(d, 2C), GELU → values × DWConv(BN(gates)) → Linear(C, d) → dropout.

    Args:
        d_model: model dimension d.
        channels: gated channels C (hidden units = 2C; paper: C = 3d); 0 builds an empty module
            the block skips.
        kernel_size: depthwise kernel size (ESPnet E-Branchformer: 31); odd, for "same" padding.
        dropout: dropout probability, kept as the float attribute ``dropout`` so DMAO can rescale
            it with the width (METHOD.md §4.7).
    """

    def __init__(
        self, d_model: int, channels: int, kernel_size: int = 31, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if channels < 0:
            raise ValueError(f"ConvolutionalGatingMLP channels must be >= 0, got {channels}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"ConvolutionalGatingMLP kernel_size must be odd for 'same' padding, "
                f"got {kernel_size}"
            )
        self.d_model = d_model
        self.kernel_size = kernel_size
        self.dropout = dropout
        if channels == 0:
            # A width-0 module owns nothing (see FeedForward).
            self.pre_norm = self.proj1 = self.norm = self.depthwise = self.proj2 = None
            return
        self.pre_norm = nn.LayerNorm(d_model)
        self.proj1 = nn.Linear(d_model, 2 * channels)  # rows [0, C) values, [C, 2C) gates
        self.norm = nn.BatchNorm1d(channels)
        self.depthwise = nn.Conv1d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        nn.init.normal_(self.depthwise.weight, std=_GATE_WEIGHT_STD)
        nn.init.constant_(self.depthwise.bias, _GATE_BIAS)
        self.proj2 = nn.Linear(channels, d_model)

    @property
    def channels(self) -> int:
        """Current gated channels C, read from the weights (so it follows any resize)."""
        return 0 if self.depthwise is None else self.depthwise.weight.shape[0]

    @property
    def width(self) -> int:
        """Width in DMAO units (gated channels; the hidden size is twice this)."""
        return self.channels

    @property
    def params_per_unit(self) -> int:
        """Parameters one gated channel owns: 2 proj1 rows + biases, its norm scale and shift,
        its depthwise kernel + bias, and its proj2 column."""
        return 2 * (self.d_model + 1) + 2 + (self.kernel_size + 1) + self.d_model

    # DMAO unit interface (dmao.method.units.AdaptableModule): what each gated channel owns.
    UNIT_SUBMODULES = ("pre_norm", "proj1", "norm", "depthwise", "proj2")

    def unit_slices(self) -> list[UnitSlice]:
        """Channel c: value row c and gate row C+c of proj1 (scored, ``groups=2``), its gate
        BatchNorm entries and statistics, its depthwise kernel and bias, proj2 column c."""
        in_bound = 1.0 / self.d_model**0.5
        out_bound = 1.0 / max(self.channels, 1) ** 0.5
        return [
            UnitSlice("proj1.weight", dim=0, groups=2, role="input", init_bound=in_bound),
            UnitSlice("proj1.bias", dim=0, groups=2, init_bound=in_bound),
            UnitSlice("norm.weight", dim=0, init_const=1.0),
            UnitSlice("norm.bias", dim=0, init_const=0.0),
            UnitSlice("norm.running_mean", dim=0, init_const=0.0),
            UnitSlice("norm.running_var", dim=0, init_const=1.0),
            # A freshly initialised gate is the ESPnet initialisation: weight 0, bias 1.
            UnitSlice("depthwise.weight", dim=0, init_const=0.0),
            UnitSlice("depthwise.bias", dim=0, init_const=_GATE_BIAS),
            UnitSlice("proj2.weight", dim=1, role="output", init_bound=out_bound),
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
        h = F.gelu(self.proj1(self.pre_norm(x)))  # (B, T, 2C)
        value, gate = h.chunk(2, dim=-1)  # (B, T, C) each
        gate = _masked_batch_norm(self.norm, gate.transpose(1, 2), mask)  # (B, C, T)
        # Zero the padding so the depthwise kernel sees what "same" padding gives a lone utterance.
        gate = gate.masked_fill(~mask[:, None, :], 0.0)
        gate = self.depthwise(gate).transpose(1, 2)  # (B, T, C)
        h = dropout(value * gate, self.dropout, self.training)  # (B, T, C)
        return dropout(self.proj2(h), self.dropout, self.training)  # (B, T, d)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, channels={self.channels}, "
            f"kernel_size={self.kernel_size}, dropout={self.dropout}"
        )
