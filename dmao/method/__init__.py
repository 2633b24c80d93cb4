"""DMAO: score, drop and duplicate encoder units during training (METHOD.md).

Layout: ``units`` (the interface models implement, torch only) ← ``scores`` (EMA scores),
``optimizer_state`` (optimizer remap), ``schedule``, ``config``, ``plan`` (which components an
event drops and grows), ``budget`` (costs), ``dropout`` (width-scaled dropout), ``growth`` (how a
new copy starts), ``gradmax`` and ``reference`` (growth modes), ``rewarmup`` (LR re-warm-up)
← ``allocator`` (events).
Nothing here imports ``dmao.models``: the method knows modules only through
:class:`~dmao.method.units.AdaptableModule`.
"""

from __future__ import annotations

from dmao.method.allocator import DmaoAllocator, ReallocationEvent
from dmao.method.config import DmaoConfig
from dmao.method.growth import GrowthInit
from dmao.method.optimizer_state import remap_optimizer
from dmao.method.plan import BudgetError, SharedSubmodule
from dmao.method.schedule import event_schedule
from dmao.method.scores import ScoreTracker
from dmao.method.units import (
    AdaptableModule,
    ParamRemap,
    SlicedUnits,
    UnitSlice,
    components_to_units,
)

__all__ = [
    "AdaptableModule",
    "BudgetError",
    "DmaoAllocator",
    "DmaoConfig",
    "GrowthInit",
    "ParamRemap",
    "ReallocationEvent",
    "ScoreTracker",
    "SharedSubmodule",
    "SlicedUnits",
    "UnitSlice",
    "components_to_units",
    "event_schedule",
    "remap_optimizer",
]
