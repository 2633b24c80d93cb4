"""Multi-head self-attention with an adaptable number of fixed-size heads.

Plain MHSA without positional encoding (METHOD.md §6): the convolution module supplies relative
position information.

The three input projections are one fused ``qkv`` linear layer (one GEMM instead of three, in
the forward and in the backward), laid out like PyTorch's ``nn.MultiheadAttention.in_proj_weight``:
rows ``[0, H*Dh)`` are Q, ``[H*Dh, 2*H*Dh)`` K, ``[2*H*Dh, 3*H*Dh)`` V.

Unit layout (what DMAO slices, METHOD.md §2): head ``h`` owns rows ``[h*Dh, (h+1)*Dh)`` of each
of the Q, K and V thirds of ``qkv`` (weights and biases; a ``groups=3`` :class:`UnitSlice`) and
the same columns of ``out.weight``; ``Dh`` is ``head_dim``. Heads are contiguous blocks, never
strided. ``norm`` and ``out.bias`` belong to the module.

Checkpoints written before the fusion (separate ``q``, ``k``, ``v`` layers) load unchanged: a
state-dict pre-hook concatenates their tensors into ``qkv`` (:func:`fuse_legacy_qkv`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method.units import SlicedUnits, UnitSlice
from dmao.models.dropout import attention_with_dropout, dropout

__all__ = ["MultiHeadSelfAttention", "fuse_legacy_qkv", "legacy_qkv_modules"]


def legacy_qkv_modules(state_dict: Mapping[str, Tensor]) -> list[str]:
    """Key prefixes of the attention modules a state dict holds in the layout before the fused
    QKV projection (separate ``q``, ``k``, ``v`` layers), e.g. ``["encoder.blocks.0.mhsa."]``."""
    return [k[: -len("q.weight")] for k in state_dict if k.endswith("mhsa.q.weight")]


def fuse_legacy_qkv(state_dict: dict[str, Tensor], prefix: str) -> None:
    """Rewrite, in place, an attention module's old ``q``/``k``/``v`` entries as one ``qkv``.

    ``prefix`` is the module's key prefix (e.g. ``"encoder.blocks.0.mhsa."``). Each of
    ``{prefix}{q,k,v}.{weight,bias}`` (``(H*Dh, d)`` and ``(H*Dh,)``) is removed and their
    concatenation in Q, K, V order stored as ``{prefix}qkv.{weight,bias}`` (``(3*H*Dh, d)`` and
    ``(3*H*Dh,)``). A state dict without the old keys is left alone; one with only some of them
    is left for ``load_state_dict`` to report as missing/unexpected keys.
    """
    for attr in ("weight", "bias"):
        keys = [f"{prefix}{name}.{attr}" for name in ("q", "k", "v")]
        if all(k in state_dict for k in keys):
            state_dict[f"{prefix}qkv.{attr}"] = torch.cat([state_dict.pop(k) for k in keys])


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
        self.register_load_state_dict_pre_hook(_fuse_legacy_hook)
        if num_heads == 0:
            # A width-0 module owns nothing (see FeedForward).
            self.norm = self.qkv = self.out = None
            return
        inner = num_heads * head_dim
        self.norm = nn.LayerNorm(d_model)
        # One fused projection: Q, K and V are three blocks of rows (groups of the unit slice),
        # in each of which head h owns one contiguous block.
        # Initialised exactly as the three separate layers were before the fusion (the same
        # draws from the same RNG stream), so a seed gives the same initial weights as before.
        parts = [nn.Linear(d_model, inner) for _ in range(3)]  # q, k, v
        self.qkv = nn.Linear(d_model, 3 * inner, device="meta")  # no draw; replaced below
        self.qkv.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]))
        self.qkv.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]))
        self.out = nn.Linear(inner, d_model)

    @property
    def num_heads(self) -> int:
        """Current number of heads, read from the weights (so it follows any resize)."""
        return 0 if self.qkv is None else self.qkv.weight.shape[0] // (3 * self.head_dim)

    @property
    def width(self) -> int:
        """Width in DMAO units (heads)."""
        return self.num_heads

    @property
    def params_per_unit(self) -> int:
        """Parameters one head owns: Dh rows (+ biases) of each of Q, K, V and Dh columns of out."""
        return 3 * self.head_dim * (self.d_model + 1) + self.head_dim * self.d_model

    # DMAO unit interface (dmao.method.units.AdaptableModule): what each head owns. A head is
    # always one component (METHOD.md §2), whatever the granularity.
    UNIT_SUBMODULES = ("norm", "qkv", "out")
    # growth_init=gradmax: a new head with zero V rows (group 2 of qkv) outputs A·0 = 0 (function
    # kept); its Q and K are copied, since q = k = 0 is a saddle where neither gets a gradient
    # (dmao.method.gradmax).
    GRADMAX_ZERO = (("qkv.weight", 2), ("qkv.bias", 2))
    ONE_UNIT_PER_COMPONENT = True

    def sequence_macs_per_unit(self, context_frames: int) -> int:
        """Per head and query frame: q·kᵀ over ``context_frames`` keys plus the weighted sum of
        as many values, ``Dh`` MACs each."""
        return 2 * self.head_dim * context_frames

    def unit_slices(self) -> list[UnitSlice]:
        """Head h: rows [h*Dh, (h+1)*Dh) of each of the Q, K, V blocks of qkv (scored) and the
        same columns of out."""
        Dh = self.head_dim
        in_bound = 1.0 / self.d_model**0.5
        out_bound = 1.0 / max(self.num_heads * Dh, 1) ** 0.5
        return [
            UnitSlice(
                "qkv.weight", dim=0, unit_size=Dh, groups=3, role="input", init_bound=in_bound
            ),
            UnitSlice("qkv.bias", dim=0, unit_size=Dh, groups=3, init_bound=in_bound),
            UnitSlice("out.weight", dim=1, unit_size=Dh, role="output", init_bound=out_bound),
        ]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """
        Args:
            x: ``(B, T, d)``.
            mask: ``(B, T)`` bool, True at valid frames; padded frames are never attended to.

        Returns:
            ``(B, T, d)``; all zeros for a width-0 module. Padded frames hold undefined values.
        """
        if self.qkv is None:
            return torch.zeros_like(x)
        B, T, _ = x.shape
        H, Dh = self.num_heads, self.head_dim
        qkv = self.qkv(self.norm(x))  # (B, T, 3*H*Dh): Q, K and V in one GEMM
        # (B, T, 3, H, Dh) → (3, B, H, T, Dh): strided views, no copy.
        q, k, v = qkv.view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, Dh) each
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


def _fuse_legacy_hook(
    module: nn.Module,
    state_dict: dict[str, Tensor],
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    fuse_legacy_qkv(state_dict, prefix)
