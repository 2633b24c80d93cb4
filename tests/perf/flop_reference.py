"""An independent FLOP count of a CTC model's forward + backward, for the dmao.perf tests.

torch's plain ``FlopCounterMode`` (no corrections) with SDPA forced to its math backend, so that
attention is counted as the ``bmm`` calls it makes; only the depthwise convolutions are recounted
by hand, because the plain counter's weight-gradient formula ignores ``groups``: forward, input
gradient and weight gradient are each 2 FLOPs x B·T'·C·K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def reference_flops(model: nn.Module, batch_size: int, frames: int) -> int:
    """FLOPs of forward + CTC + backward of ``model`` on a random ``(batch_size, frames, 80)``
    batch (all utterances full length; FLOPs depend on the padded shape only)."""
    features = torch.randn(batch_size, frames, 80)
    lens = torch.full((batch_size,), frames)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        log_probs, out_lens = model(features, lens)  # (B, T', V)
        targets = torch.ones(batch_size, 1, dtype=torch.long)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), targets, out_lens, torch.ones(batch_size, dtype=torch.long)
        )
        loss.backward()
    model.zero_grad(set_to_none=True)
    counts = counter.get_flop_counts()

    def convolutions(ops: dict) -> int:
        return sum(n for op, n in ops.items() if "convolution" in str(op))

    frontend = sum(convolutions(ops) for s, ops in counts.items() if s.endswith("encoder.frontend"))
    depthwise_counted = convolutions(counts["Global"]) - frontend
    encoder_frames = frames // 4  # two floor-mode time pools of 2
    depthwise = sum(
        3 * 2 * batch_size * encoder_frames * block.conv.channels * block.conv.kernel_size
        for block in model.encoder.blocks
        if block.conv.depthwise is not None
    )
    return counter.get_total_flops() - depthwise_counted + depthwise
