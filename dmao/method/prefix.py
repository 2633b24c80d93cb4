"""Which DMAO runs train identically until their first event, and up to which step.

Many of the settings of an event — how much moves, how grown units start, their optimizer state
and learning-rate re-warm-up, the budget unit, the authors' rebuild — are read only when the event
runs. Two runs of the same recipe and seed that differ only in such *event-time* settings make
exactly the same updates before their first event, so they can share that training: one run
trains the common prefix, the others continue from its checkpoint (``dmao compare
--share-prefix``), and a resume accepts a checkpoint whose event-time settings differ while no
event has happened yet.

Not event-time (they shape the scores or move the event, so runs that differ in them part at step
0): ``enabled``, ``metric``, ``ema_beta``, ``score_every_steps``, ``granularity`` and the schedule
(``last_event_fraction``, ``num_events``, ``event_spacing``). ``growth_init=gradmax`` collects
statistics for ``growth_gradmax_steps`` updates before an event, so a GradMax run shares only the
steps before that window.
"""

from __future__ import annotations

from typing import Any

from dmao.method.config import DmaoConfig
from dmao.method.schedule import config_event_schedule

__all__ = ["EVENT_TIME_KEYS", "event_time_differences", "last_shared_step", "without_event_time"]

EVENT_TIME_KEYS = (
    "total_fraction",
    "rewarmup_steps",
    "rewarmup_scope",
    "grace_measurements",
    "growth_init",
    "growth_noise_variance",
    "growth_split_alpha",
    "growth_gradmax_steps",
    "growth_gradmax_scale",
    "duplicate_moments",
    "budget_unit",
    "macs_context_seconds",
    "reference_ffn_pairing",
    "reference_glu_mixing",
    "reference_norm_reset",
    "reference_reset_uncopied",
    "reference_noise_variance",
    "reference_rebuild",
    "reference_optimizer",
    "perturb_only",
)
"""``DmaoConfig`` fields that are read only when an event runs (or, for GradMax, in the window
before it: see :func:`last_shared_step`)."""


def last_shared_step(config: DmaoConfig, total_steps: int) -> int:
    """The last optimizer step up to which a run of ``config`` trains like any run that differs
    from it only in :data:`EVENT_TIME_KEYS`: before the update that takes the first event's
    forced score measurement, and before GradMax's statistics window opens.

    Returns 0 when DMAO is off (nothing to share) or the first event comes too early.
    """
    if not config.enabled:
        return 0
    first_event = config_event_schedule(config, total_steps)[0][0]
    window = config.growth_gradmax_steps if config.growth_init == "gradmax" else 0
    return max(0, first_event - 1 - window)


def without_event_time(dmao: dict[str, Any]) -> dict[str, Any]:
    """A ``dmao`` config section (as a dict) without its event-time settings."""
    return {k: v for k, v in dmao.items() if k not in EVENT_TIME_KEYS}


def event_time_differences(
    saved: DmaoConfig, current: DmaoConfig, step: int, total_steps: int
) -> list[str]:
    """The event-time settings in which a checkpoint of step ``step`` (written with ``saved``)
    may differ from a run of ``current`` that continues from it: all that differ, if nothing
    else differs and ``step`` lies within both runs' shared prefix; else none (a resume then
    compares every setting)."""
    a, b = saved.to_dict(), current.to_dict()
    if without_event_time(a) != without_event_time(b):
        return []
    if step > min(last_shared_step(saved, total_steps), last_shared_step(current, total_steps)):
        return []
    return [k for k in EVENT_TIME_KEYS if a[k] != b[k]]
