"""What the drop/grow budget counts (METHOD.md §4.2): parameters, or multiply-accumulates.

:class:`BudgetMeter` prices components and totals for the allocator. A component costs
``component_cost()`` parameters (biases included) or ``component_macs(context_frames)``
multiply-accumulates per output frame (``budget_unit=macs``; reported per second of audio). The
adaptable total includes the shared sub-modules a model declares (an E-Branchformer block's merge),
so freeing one shows up in the count the budget invariant checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from dmao.method.plan import ModuleGroup, SharedSubmodule
from dmao.method.units import AdaptableModule

__all__ = ["BudgetMeter", "adaptable_macs_per_second", "adaptable_params"]


def adaptable_params(modules: Mapping[str, AdaptableModule]) -> int:
    """Parameters of the adaptable modules."""
    return sum(p.numel() for m in modules.values() for p in m.parameters())


def adaptable_macs_per_second(
    modules: Mapping[str, AdaptableModule],
    context_seconds: float = 15.0,
    frames_per_second: float = 25.0,
) -> int:
    """Multiply-accumulates per second of audio of the adaptable modules (attention's
    length-dependent part counted at ``context_seconds``): the compute DMAO moves, comparable
    between a baseline and a DMAO run of the same recipe."""
    context_frames = max(1, round(context_seconds * frames_per_second))
    return _macs_per_second(modules, context_frames, frames_per_second)


def _macs_per_second(
    modules: Mapping[str, AdaptableModule], context_frames: int, frames_per_second: float
) -> int:
    macs = sum(m.num_components() * m.component_macs(context_frames) for m in modules.values())
    return round(macs * frames_per_second)


def _macs_per_frame(module: nn.Module) -> int:
    """Weight entries of the Linear/Conv1d layers of a (shared) sub-module: MACs per frame."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d)))


class BudgetMeter:
    """Prices of components and totals in the budget unit.

    Args:
        modules: the adaptable modules by name.
        shared: sub-modules freed with the last module of their group.
        unit: ``params`` or ``macs``.
        context_frames: sequence length at which attention's MACs are priced.
        frames_per_second: converts MACs per frame to MACs per second of audio (reports).
    """

    def __init__(
        self,
        modules: Mapping[str, AdaptableModule],
        shared: Sequence[SharedSubmodule],
        unit: str,
        context_frames: int,
        frames_per_second: float,
    ) -> None:
        self.modules, self.shared, self.unit = modules, shared, unit
        self.context_frames, self.frames_per_second = context_frames, frames_per_second

    def component(self, module: AdaptableModule) -> int:
        """One component's cost (MACs per output frame for ``macs``)."""
        if self.unit == "macs":
            return module.component_macs(self.context_frames)
        return module.component_cost()

    def _shared_cost(self, sub: nn.Module) -> int:
        return (
            _macs_per_frame(sub)
            if self.unit == "macs"
            else sum(p.numel() for p in sub.parameters())
        )

    def total(self) -> int:
        """Adaptable cost, shared sub-modules included."""
        if self.unit == "macs":
            total = sum(m.num_components() * self.component(m) for m in self.modules.values())
        else:
            total = adaptable_params(self.modules)
        for g in self.shared:
            sub = getattr(g.owner, g.attribute)
            if sub is not None:
                total += self._shared_cost(sub)
        return total

    def module_shared(self, name: str) -> int:
        """What emptying module ``name`` frees besides its components (norms, output bias); a
        MACs budget has nothing shared there (they do no multiply-accumulates)."""
        if self.unit == "macs":
            return 0
        m = self.modules[name]
        return sum(p.numel() for p in m.parameters()) - m.num_components() * self.component(m)

    def groups(self) -> list[ModuleGroup]:
        """The live shared sub-modules as priced groups for :func:`~dmao.method.plan.plan_event`."""
        return [
            ModuleGroup(g.modules, self._shared_cost(sub), g.name)
            for g in self.shared
            if (sub := getattr(g.owner, g.attribute)) is not None
        ]

    def report(self, cost: int) -> int:
        """A cost as logged: parameters, or MACs per second of audio."""
        return round(cost * self.frames_per_second) if self.unit == "macs" else cost

    def macs_per_second(self) -> int:
        """Multiply-accumulates per second of audio of all adaptable modules."""
        return _macs_per_second(self.modules, self.context_frames, self.frames_per_second)
