"""An exponential moving average of the weights during training (``train.ema_decay``).

As icefall keeps ``model_avg`` beside the model and NeMo's EMA callback does, the run keeps a
running average of every floating-point parameter and buffer, updated after each optimizer step::

    average ← d · average + (1 − d) · weights,   d = min(ema_decay, (1 + n) / (10 + n))

where ``n`` counts the updates since the average (re)started: the warm-up of ``d`` (timm's
``ModelEmaV2``, TensorFlow's ``num_updates``) lets the average follow the first steps instead of
remembering the random initialisation. Integer buffers (BatchNorm's ``num_batches_tracked``) are
not averaged; the live model's are used.

A DMAO event changes the per-layer widths, so the average of the old shapes cannot be carried
into the new ones: it **restarts from the weights right after each event** (as ``--avg`` averages
only checkpoints with the final architecture, :mod:`dmao.training.averaging`). With the last
event at 40 % of training, the average covers the remaining 60 %.

Training uses the live weights, and ``best.pt`` is chosen by their dev WER. Every validation
also scores the average (:meth:`WeightAverage.applied`; ``valid_ema`` records in the metrics, one
more pass over the dev subset), and ``best-ema.pt`` is the checkpoint whose average had the
lowest dev WER. The average travels in every checkpoint (key ``ema``) and is used where asked:
``dmao decode --ema`` and ``dmao export --ema``, which take ``best-ema.pt`` for ``best``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage", "averaged_weights"]


class WeightAverage:
    """The running average of ``model``'s floating-point state (parameters and buffers).

    Args:
        model: the model whose weights are averaged (the bare model, not a DDP wrapper).
        decay: the largest decay ``d`` (e.g. 0.999: an average over roughly the last 1,000
            steps), in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) (0 turns it off), got {decay}")
        self.decay = decay
        self.updates = 0
        self.weights: dict[str, Tensor] = {}
        self.restart(model)

    def restart(self, model: nn.Module) -> None:
        """Start the average anew from ``model``'s current weights (after a DMAO event)."""
        self.weights = {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if value.is_floating_point()
        }
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (after an optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        names = list(self.weights)
        torch._foreach_lerp_([self.weights[n] for n in names], [state[n] for n in names], 1 - decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Within the block ``model`` holds the average in place of its live floating-point
        state (to validate it); afterwards the live values are back, bit for bit."""
        state = model.state_dict()
        live = {name: state[name].detach().clone() for name in self.weights}
        with torch.no_grad():
            for name, value in self.weights.items():
                state[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    state[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores: the decay, the updates since the (re)start, the average."""
        return {"decay": self.decay, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: Mapping[str, Any], source: str | Path) -> None:
        """Restore :meth:`state_dict` (the model must have the checkpoint's architecture)."""
        weights = state["weights"]
        if set(weights) != set(self.weights) or any(
            weights[n].shape != self.weights[n].shape for n in weights
        ):
            raise ValueError(f"{source}: the averaged weights do not fit the model's")
        device = next(iter(self.weights.values())).device
        self.weights = {n: v.to(device) for n, v in weights.items()}
        self.updates = int(state["updates"])


def averaged_weights(state: Mapping[str, Any], source: str | Path) -> dict[str, Tensor]:
    """A checkpoint's model weights with the running average in place of the live floating-point
    tensors (a ``state_dict`` for the same model).

    Raises:
        ValueError: the checkpoint holds no average (the run was trained without
            ``train.ema_decay``).
    """
    ema = state.get("ema")
    if not ema:
        raise ValueError(
            f"{source} holds no averaged weights: train with train.ema_decay=0.999 (or another "
            "decay) to keep them"
        )
    model = dict(state["model"])
    missing = set(ema["weights"]) - set(model)
    if missing:
        raise ValueError(f"{source}: averaged weights {sorted(missing)[:3]} are not in the model")
    model.update(ema["weights"])
    return model
