"""Conformer (macaron) feed-forward module with an adaptable number of hidden units.

Unit layout (what DMAO slices, METHOD.md §2): hidden unit ``i`` owns row ``i`` of
``linear1.weight``, entry ``i`` of ``linear1.bias`` and column ``i`` of ``linear2.weight``.
Removing the unit removes exactly its contribution to the output; duplicating it and halving both
copies' ``linear2`` columns leaves the function unchanged. ``norm`` and ``linear2.bias`` belong to
the module, not to any unit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method.units import SlicedUnits, UnitSlice
from dmao.models.dropout import dropout

__all__ = ["FeedForward"]


class FeedForward(SlicedUnits, nn.Module):
    """pre-LayerNorm → Linear(d, hidden) → SiLU → dropout → Linear(hidden, d) → dropout.

    Args:
        d_model: model dimension d.
        hidden: hidden units; 0 builds an empty module without parameters, which the block skips.
        dropout: dropout probability; kept as the plain float attribute ``dropout`` so DMAO can
            rescale it with the width (METHOD.md §4.7).
    """

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"FeedForward hidden must be >= 0, got {hidden}")
        self.d_model = d_model
        self.dropout = dropout
        # A width-0 module owns nothing at all: its norm and output bias would otherwise be
        # parameters that never receive a gradient.
        self.norm = nn.LayerNorm(d_model) if hidden > 0 else None
        self.linear1 = nn.Linear(d_model, hidden) if hidden > 0 else None
        self.linear2 = nn.Linear(hidden, d_model) if hidden > 0 else None

    @property
    def hidden(self) -> int:
        """Current number of hidden units, read from the weights (so it follows any resize)."""
        return 0 if self.linear1 is None else self.linear1.weight.shape[0]

    @property
    def width(self) -> int:
        """Width in DMAO units (hidden units)."""
        return self.hidden

    @property
    def params_per_unit(self) -> int:
        """Parameters one hidden unit owns: its W1 row, b1 entry and W2 column."""
        return 2 * self.d_model + 1

    # DMAO unit interface (dmao.method.units.AdaptableModule): what each hidden unit owns.
    UNIT_SUBMODULES = ("norm", "linear1", "linear2")
    # growth_init=gradmax: a new unit with a zero W1 row and b1 outputs SiLU(0) = 0 (function
    # kept) and its W1 row gets the gradient SiLU'(0)·W2ᵀ∂L/∂z·hᵀ (dmao.method.gradmax).
    GRADMAX_ZERO = ("linear1.weight", "linear1.bias")

    def unit_slices(self) -> list[UnitSlice]:
        """Hidden unit i: row i of linear1 (scored), b1[i], column i of linear2 (outgoing)."""
        in_bound = 1.0 / self.d_model**0.5  # nn.Linear's default init bound, fan_in = d
        out_bound = 1.0 / max(self.hidden, 1) ** 0.5
        return [
            UnitSlice("linear1.weight", dim=0, role="input", init_bound=in_bound),
            UnitSlice("linear1.bias", dim=0, init_bound=in_bound),
            UnitSlice("linear2.weight", dim=1, role="output", init_bound=out_bound),
        ]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` → ``(B, T, d)``; all zeros for a width-0 module."""
        if self.linear1 is None:
            return torch.zeros_like(x)
        h = F.silu(self.linear1(self.norm(x)))  # (B, T, hidden)
        h = dropout(h, self.dropout, self.training)
        return dropout(self.linear2(h), self.dropout, self.training)  # (B, T, d)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, dropout={self.dropout}"
