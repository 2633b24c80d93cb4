"""When DMAO events happen: fractions of the total optimizer steps (METHOD.md §5).

Fractions rather than step numbers make one schedule hold for any run length, world size and
gradient accumulation (the step counter is the optimizer-step counter).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dmao.method.config import DmaoConfig

__all__ = ["config_event_schedule", "event_schedule"]


def event_schedule(
    total_steps: int,
    last_event_fraction: float,
    num_events: int,
    total_fraction: float,
    spacing: str = "even",
) -> list[tuple[int, float]]:
    """The events as ``(step, fraction)`` pairs, in step order.

    Event ``i`` (1-based) happens after ``round(last_event_fraction * i / num_events *
    total_steps)`` optimizer steps. With ``spacing="even"`` it moves ``total_fraction /
    num_events`` of the adaptable parameters; with ``"cosine"`` (RigL's drop-fraction schedule,
    arXiv 1911.11134) a share ∝ ``(1 + cos(π (i−1) / num_events)) / 2`` of ``total_fraction``, so
    early events move most and the last ones little.

    Raises:
        ValueError: if ``total_steps`` is too small to give every event its own step >= 1.
    """
    if total_steps < 1:
        raise ValueError(f"DMAO schedule: total_steps must be >= 1, got {total_steps}")
    if num_events < 1:
        raise ValueError(f"DMAO schedule: num_events must be >= 1, got {num_events}")
    steps = [
        round(last_event_fraction * i / num_events * total_steps) for i in range(1, 1 + num_events)
    ]
    if steps[0] < 1 or len(set(steps)) != num_events:
        raise ValueError(
            f"DMAO schedule: {num_events} events up to {last_event_fraction} of {total_steps} "
            f"steps fall on steps {steps}; every event needs its own step >= 1 "
            f"(train longer or use fewer events)"
        )
    if spacing == "even":
        weights = [1.0] * num_events
    elif spacing == "cosine":
        weights = [(1 + math.cos(math.pi * i / num_events)) / 2 for i in range(num_events)]
    else:
        raise ValueError(f"DMAO schedule: spacing must be 'even' or 'cosine', got {spacing!r}")
    total = sum(weights)
    return [(step, total_fraction * w / total) for step, w in zip(steps, weights, strict=True)]


def config_event_schedule(config: DmaoConfig, total_steps: int) -> list[tuple[int, float]]:
    """:func:`event_schedule` of a run's ``dmao`` settings over ``total_steps`` optimizer steps
    (what the allocator runs, and what ``dmao compare --search-retrain`` stops after)."""
    return event_schedule(
        total_steps,
        config.last_event_fraction,
        config.num_events,
        config.total_fraction,
        config.event_spacing,
    )
