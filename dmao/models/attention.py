"""Multi-head self-attention with an adaptable number of fixed-size heads.

Plain MHSA without positional encoding (METHOD.md §6): the convolution module supplies relative
position information.

Unit layout (what DMAO slices, METHOD.md §2): head ``h`` owns rows ``[h*Dh, (h+1)*Dh)`` of
``q``, ``k`` and ``v`` (weights and biases) and the same columns of ``out.weight``; ``Dh`` is
``head_dim``. Heads are contiguous blocks, never strided. ``norm`` and ``out.bias`` belong to the
module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method.units import SlicedUnits, UnitSlice
from dmao.models.dropout import attention_with_dropout, dropout

__all__ = ["MultiHeadSelfAttention"]


class MultiHeadSelfAttention(SlicedUnits, nn.Module):
    """pre-LayerNorm → q, k, v projections → dot-product attention → out projection → dropout.

    Args:
        d_model: model dimension d.
        num_heads: heads H (need not be ``d / head_dim``); 0 builds an empty module the block skips.
        head_dim: dimension Dh of each head (paper: 64, fixed while H changes).
        dropout: dropout probability on the attention weights and on the output, kept as the
            float attribute ``dropout`` so DMAO can rescale it with the width (METHOD.md §4.7).
    """

    def __init__(
        self, d_model: int, num_heads: int, head_dim: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if num_heads < 0:
            raise ValueError(f"MultiHeadSelfAttention num_heads must be >= 0, got {num_heads}")
        self.d_model = d_model
        self.head_dim = head_dim
        self.dropout = dropout
        if num_heads == 0:
            # A width-0 module owns nothing (see FeedForward).
            self.norm = self.q = self.k = self.v = self.out = None
            return
        inner = num_heads * head_dim
        self.norm = nn.LayerNorm(d_model)
        # Separate projections (not one fused qkv matrix) so that a head's rows are one
        # contiguous block in each of them.
        self.q = nn.Linear(d_model, inner)
        self.k = nn.Linear(d_model, inner)
        self.v = nn.Linear(d_model, inner)
        self.out = nn.Linear(inner, d_model)

    @property
    def num_heads(self) -> int:
        """Current number of heads, read from the weights (so it follows any resize)."""
        return 0 if self.q is None else self.q.weight.shape[0] // self.head_dim

    @property
    def width(self) -> int:
        """Width in DMAO units (heads)."""
        return self.num_heads

    @property
    def params_per_unit(self) -> int:
        """Parameters one head owns: Dh rows (+ biases) of q, k, v and Dh columns of out."""
        return 3 * self.head_dim * (self.d_model + 1) + self.head_dim * self.d_model

    # DMAO unit interface (dmao.method.units.AdaptableModule): what each head owns. A head is
    # always one component (METHOD.md §2), whatever the granularity.
    UNIT_SUBMODULES = ("norm", "q", "k", "v", "out")
    # growth_init=gradmax: a new head with zero V rows outputs A·0 = 0 (function kept); its Q and
    # K are copied, since q = k = 0 is a saddle where neither gets a gradient (dmao.method.gradmax).
    GRADMAX_ZERO = ("v.weight", "v.bias")
    ONE_UNIT_PER_COMPONENT = True

    def sequence_macs_per_unit(self, context_frames: int) -> int:
        """Per head and query frame: q·kᵀ over ``context_frames`` keys plus the weighted sum of
        as many values, ``Dh`` MACs each."""
        return 2 * self.head_dim * context_frames

    def unit_slices(self) -> list[UnitSlice]:
        """Head h: rows [h*Dh, (h+1)*Dh) of q, k, v (scored) and the same columns of out."""
        Dh = self.head_dim
        in_bound = 1.0 / self.d_model**0.5
        out_bound = 1.0 / max(self.num_heads * Dh, 1) ** 0.5
        slices = []
        for name in ("q", "k", "v"):
            slices.append(
                UnitSlice(f"{name}.weight", dim=0, unit_size=Dh, role="input", init_bound=in_bound)
            )
            slices.append(UnitSlice(f"{name}.bias", dim=0, unit_size=Dh, init_bound=in_bound))
        slices.append(
            UnitSlice("out.weight", dim=1, unit_size=Dh, role="output", init_bound=out_bound)
        )
        return slices

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """
        Args:
            x: ``(B, T, d)``.
            mask: ``(B, T)`` bool, True at valid frames; padded frames are never attended to.

        Returns:
            ``(B, T, d)``; all zeros for a width-0 module. Padded frames hold undefined values.
        """
        if self.q is None:
            return torch.zeros_like(x)
        B, T, _ = x.shape
        H, Dh = self.num_heads, self.head_dim
        h = self.norm(x)
        q = self.q(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.v(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        # An utterance with no valid frame would mask every key and turn softmax into NaN; let it
        # attend everywhere instead. Its outputs are padding anyway.
        key_mask = mask | ~mask.any(dim=1, keepdim=True)  # (B, T)
        if self.training and self.dropout > 0.0 and x.device.type == "cpu":
            # SDPA with dropout runs its math backend on CPU anyway, with a slow bernoulli_ mask
            # (dmao.models.dropout); the same maths with a faster mask.
            a = attention_with_dropout(q, k, v, key_mask, self.dropout)  # (B, H, T, Dh)
        else:
            a = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=key_mask[:, None, None, :],  # (B, 1, 1, T): True = may attend
                dropout_p=self.dropout if self.training else 0.0,
            )  # (B, H, T, Dh)
        a = a.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H*Dh), head h at [h*Dh, (h+1)*Dh)
        return dropout(self.out(a), self.dropout, self.training)  # (B, T, d)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"dropout={self.dropout}"
        )
