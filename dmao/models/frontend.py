"""VGG-style convolutional frontend: (B, T, F) features → (B, T/4, d) encoder input.

Follows i6_models ``VGG4LayerActFrontendV1`` as configured in the reference experiments
(METHOD.md §6): conv1 → conv2 → act → pool(2×1) → conv3 → conv4 → act → pool(2×1) → linear.
The pools reduce time only, so the frequency axis keeps all F bins and the final linear sees
``channels[-1] * F`` inputs.

Ours, unlike the reference: padded frames are zeroed before every convolution, so a batched
utterance sees exactly the zeros that "same" padding gives it when it is alone; the valid outputs
therefore do not depend on how much padding the batch adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VGGFrontend", "lengths_to_mask", "subsampled_length"]

# Each of the two max-pools halves the time axis (kernel = stride = 2, no padding, floor).
_TIME_POOL = 2
# The smallest input that keeps every intermediate time axis non-empty (convolutions refuse
# zero-length inputs); shorter inputs are zero-padded internally and cut back afterwards.
_MIN_FRAMES = _TIME_POOL * _TIME_POOL


def subsampled_length(num_frames: int | Tensor) -> int | Tensor:
    """Number of frontend output frames for ``num_frames`` input frames: ``(T // 2) // 2``.

    Exactly the arithmetic of the two floor-mode max-pools; works on ints and integer tensors.
    """
    return (num_frames // _TIME_POOL) // _TIME_POOL


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean mask ``(B, max_len)``, True at valid frames ``t < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class VGGFrontend(nn.Module):
    """Four 3×3 conv layers with two time-only max-pools (4× subsampling) and a linear to d.

    Args:
        num_features: feature bins F of the input (80 log-mel bins in the paper).
        d_model: output dimension d.
        channels: output channels of conv1..conv4 (paper: 32/64/64/32).
        kernel_size: square conv kernel size; odd, so "same" padding is symmetric.
    """

    def __init__(
        self,
        num_features: int = 80,
        d_model: int = 256,
        channels: tuple[int, int, int, int] = (32, 64, 64, 32),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"VGGFrontend needs 4 conv channel sizes, got {channels!r}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"VGGFrontend kernel_size must be odd for 'same' padding, got {kernel_size}"
            )
        self.num_features = num_features
        self.d_model = d_model
        c1, c2, c3, c4 = channels
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(1, c1, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size, padding=pad)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size, padding=pad)
        self.conv4 = nn.Conv2d(c3, c4, kernel_size, padding=pad)
        # Pool over time only: the paper's frontend keeps the frequency resolution.
        self.pool = nn.MaxPool2d(kernel_size=(_TIME_POOL, 1), stride=(_TIME_POOL, 1))
        # ReLU, as in the reference recipes' frontend config (the Conformer blocks use SiLU).
        self.activation = nn.ReLU()
        self.linear = nn.Linear(c4 * num_features, d_model)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            features: ``(B, T, F)`` float features.
            lengths: ``(B,)`` int64 valid frames per utterance, ``<= T``.

        Returns:
            ``(B, T', d)`` frontend output with ``T' = subsampled_length(T)`` and the ``(B,)``
            output lengths ``subsampled_length(lengths)``. Frames past a length are undefined.
        """
        if features.dim() != 3 or features.shape[-1] != self.num_features:
            raise ValueError(
                f"VGGFrontend expects features (B, T, {self.num_features}), "
                f"got {tuple(features.shape)}"
            )
        num_frames = features.shape[1]
        if num_frames < _MIN_FRAMES:
            features = F.pad(features, (0, 0, 0, _MIN_FRAMES - num_frames))

        x = features.unsqueeze(1)  # (B, 1, T, F)
        mask = lengths_to_mask(lengths, x.shape[2])[:, None, :, None]  # (B, 1, T, 1)
        x = self.conv1(x.masked_fill(~mask, 0.0))  # (B, c1, T, F)
        x = self.conv2(x.masked_fill(~mask, 0.0))  # (B, c2, T, F)
        x = self.pool(self.activation(x))  # (B, c2, T/2, F)

        lengths = lengths // _TIME_POOL
        mask = lengths_to_mask(lengths, x.shape[2])[:, None, :, None]  # (B, 1, T/2, 1)
        x = self.conv3(x.masked_fill(~mask, 0.0))  # (B, c3, T/2, F)
        x = self.conv4(x.masked_fill(~mask, 0.0))  # (B, c4, T/2, F)
        x = self.pool(self.activation(x))  # (B, c4, T/4, F)
        lengths = lengths // _TIME_POOL

        x = x.transpose(1, 2).flatten(2)  # (B, T/4, c4 * F)
        x = self.linear(x)  # (B, T/4, d)
        # Cut off what the internal padding of very short inputs added.
        return x[:, : subsampled_length(num_frames)], lengths
