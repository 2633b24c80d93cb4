"""Model FLOPs of a training step, from torch's ``FlopCounterMode`` with two corrections.

FLOPs here are those of matrix products and convolutions (2 per multiply-accumulate), forward and
backward, frontend included; elementwise work, norms, the CTC loss and the optimizer are not
counted (the convention of MFU: Chowdhery et al. 2022, PaLM, appendix B).

Two gaps of torch 2.13's counter are filled by :data:`FLOP_CORRECTIONS` (checked against an
analytic count in tests/perf/test_flops.py and benchmarks/bench_flops.py):

- ``convolution_backward``: its weight-gradient formula ignores ``groups``, so a depthwise
  Conv1d's backward comes out ~C times too large (cf. pytorch/pytorch PR #183405). The weight
  gradient has exactly the forward's multiply-accumulates, which is what is counted here.
- SDPA's fused CPU kernel (``_scaled_dot_product_flash_attention_for_cpu`` and its backward) has
  no formula, so attention counted 0 on CPU; it gets torch's SDPA forward formula (2 matmuls).
- Every fused SDPA backward is counted as 4 matmuls, the math backend's ``bmm`` calls (twice the
  forward). torch's formulas add the recomputation of ``q·kᵀ`` that flash-style kernels do: that
  is hardware work, not model FLOPs (MFU counts the model's FLOPs whatever the kernel does;
  Chowdhery et al. 2022, appendix B), and it would make the count depend on the backend.

One batch is counted; other batches of the same model are extrapolated by
:meth:`FlopCount.scaled_to`: the frontend's share scales with the padded input frames ``B·T``,
attention's with ``B·T'²`` and everything else with ``B·T'`` (``T' = T // 4`` encoder frames).
That is exact for the counted shape and within ``3 / T`` elsewhere (the pools' floors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_flop_count,
)

from dmao.models.frontend import subsampled_length

__all__ = ["FLOP_CORRECTIONS", "FlopCount", "count_flops"]

aten = torch.ops.aten

# Ops whose FLOPs grow with the square of the sequence length (attention scores and their use).
_ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product", "flash_attention", "efficient_attention")


def _conv_backward_flop(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    out_shape: Any,
    **kwargs: Any,
) -> int:
    """Input gradient: a (transposed) convolution of ``grad_out`` with the weight; weight
    gradient: as many multiply-accumulates as the forward (one per weight element, output
    position and batch item), which ``w_shape = (C_out, C_in / groups, *k)`` gets right for any
    ``groups``."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]), not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def _sdpa_flop(
    query_shape: list[int], key_shape: list[int], value_shape: list[int], *args: Any, **kwargs: Any
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flop(
    grad_out_shape: list[int],
    query_shape: list[int],
    key_shape: list[int],
    value_shape: list[int],
    *args: Any,
    **kwargs: Any,
) -> int:
    """Gradients of ``weights·v`` (2 matmuls) and of ``q·kᵀ`` (2 more), without recomputing
    the scores. All fused SDPA backward ops take ``(grad_out, q, k, v, ...)`` as
    ``(B, H, S, D)``."""
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


FLOP_CORRECTIONS: dict[Any, Callable[..., int]] = {
    aten.convolution_backward: _conv_backward_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward_flop,
}
"""``custom_mapping`` for :class:`FlopCounterMode` (see the module docstring)."""


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward + backward over a batch of ``batch_size × frames`` padded input
    frames, split by how each part scales with the batch shape."""

    batch_size: int
    frames: int
    """Padded input frames ``T`` (10 ms feature frames) of the counted batch."""
    frontend: int
    """Scope ``*.encoder.frontend`` (its convolutions and output linear): ∝ ``B·T``."""
    attention: int
    """``bmm`` and SDPA ops (scores and weighted values): ∝ ``B·T'²``."""
    other: int
    """Everything else (block linears, depthwise convolutions, output layer): ∝ ``B·T'``."""

    @property
    def total(self) -> int:
        """All counted FLOPs of the batch."""
        return self.frontend + self.attention + self.other

    def scaled_to(self, batch_size: int, frames: int) -> float:
        """Estimated FLOPs of the same model on a ``batch_size × frames`` batch (module
        docstring); equal to :attr:`total` for the counted shape."""
        if (batch_size, frames) == (self.batch_size, self.frames):
            return float(self.total)
        enc, enc0 = subsampled_length(frames), subsampled_length(self.frames)
        b = batch_size / self.batch_size
        return (
            self.frontend * b * frames / self.frames
            + self.attention * b * (enc / enc0) ** 2
            + self.other * b * enc / enc0
        )

    def to_dict(self) -> dict[str, int]:
        """JSON-ready fields and the total."""
        return {**asdict(self), "total": self.total}


def count_flops(run: Callable[[], object], batch_size: int, frames: int) -> FlopCount:
    """Count the FLOPs of ``run()`` (one forward + backward over a ``batch_size × frames`` batch)
    with the corrected counter, split into frontend, attention and the rest."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_CORRECTIONS) as counter:
        run()
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()
    frontend = sum(
        sum(ops.values()) for scope, ops in counts.items() if scope.endswith("encoder.frontend")
    )
    attention = sum(
        n for op, n in counts.get("Global", {}).items() if any(a in str(op) for a in _ATTENTION_OPS)
    )
    return FlopCount(
        batch_size=batch_size,
        frames=frames,
        frontend=frontend,
        attention=attention,
        other=total - frontend - attention,
    )
