"""Width-scaled dropout (METHOD.md §4.7): a property of the architecture, not of the event.

A module at ``width`` units trains with ``min(base · width / default_width, cap)``. Every model
built with non-default widths applies it at construction (when its ``dropout_scaling`` is on), and
the allocator applies the same function after each event, so a DMAO run and a model trained from
scratch with the architecture it found (the control) have the same dropout in every module; before
this was a property of the model, the control trained every module at the base dropout while its
DMAO run ended at 0.15–0.2 in grown modules and 0.05 in halved ones (issue 15).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

__all__ = ["MAX_SCALED_DROPOUT", "apply_width_scaled_dropout", "width_scaled_dropout"]

# Upper bound of a width-scaled dropout probability: a module that grew a lot still passes signal.
MAX_SCALED_DROPOUT = 0.9


def width_scaled_dropout(
    base_dropout: float, width: int, default_width: int, cap: float = MAX_SCALED_DROPOUT
) -> float:
    """``min(base_dropout · width / default_width, cap)``; 0 for a width-0 module."""
    if default_width <= 0:
        raise ValueError(f"default_width must be > 0, got {default_width}")
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    return min(base_dropout * width / default_width, cap)


def apply_width_scaled_dropout(modules: Mapping[str, nn.Module]) -> dict[str, float]:
    """Set ``dropout`` of every module whose ``dropout_scaling`` is on (default on) from its
    ``base_dropout``, ``width`` and ``default_width``; returns the dropout of every module."""
    result = {}
    for name, m in modules.items():
        if getattr(m, "dropout_scaling", True):
            if m.default_width is None or m.base_dropout is None:
                raise ValueError(f"DMAO module {name} has no default_width/base_dropout set")
            m.dropout = width_scaled_dropout(m.base_dropout, m.width, m.default_width)
        result[name] = float(m.dropout)
    return result
