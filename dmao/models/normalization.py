"""Global mean/variance normalisation of the input features (ESPnet's GlobalMVN).

Raw log-mel fbank has a mean around -4 and a standard deviation around 3 that differ per mel bin
(measured on the built-in corpus); normalising each bin to zero mean and unit variance is what lets
the small CPU recipes leave the CTC "all blank" plateau early. The statistics are buffers, so they
travel with every checkpoint and exported model, and decoding needs no separate stats file.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GlobalFeatureNorm"]


class GlobalFeatureNorm(nn.Module):
    """``(x - mean) / std`` per feature bin; identity until :meth:`set_statistics` is called.

    Args:
        num_features: feature bins F.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("inv_std", torch.ones(num_features))

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, std: Tensor, min_std: float = 1e-3) -> None:
        """Set per-bin statistics ``mean (F,)`` and ``std (F,)`` (std floored at ``min_std``)."""
        if mean.shape != self.mean.shape or std.shape != self.mean.shape:
            raise ValueError(
                f"feature statistics must have shape {tuple(self.mean.shape)}, got mean "
                f"{tuple(mean.shape)} and std {tuple(std.shape)}"
            )
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp_min(min_std))

    def forward(self, features: Tensor) -> Tensor:
        """``features (B, T, F)`` → normalised ``(B, T, F)``."""
        return (features - self.mean) * self.inv_std
