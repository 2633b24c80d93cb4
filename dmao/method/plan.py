"""Which components an event drops and duplicates (METHOD.md §4.1–4.4), as a pure function.

:func:`plan_event` sees only numbers: the smoothed scores, the cost of one component of every
module, the parameters a module frees when its last component goes, and which components may not be
dropped yet. It returns the new component list of every changed module and the record of what was
dropped and duplicated. The allocator applies the plan; nothing here touches a tensor of a model.

Decisions:
- One global ranking over all modules; ties are broken by module order, then component index, so
  a plan is deterministic.
- Drop from the bottom until the removed cost exceeds P (METHOD.md §4.3). Components grown at an
  earlier event that have not been measured ``grace_measurements`` times yet are *protected*: a
  ``fresh`` copy starts with zero outgoing weights, so its input-side Taylor score is exactly 0 at
  its first measurement and the next event would drop it first on evidence that cannot see it
  (measured on a tiny Conformer: 7 of 7 drops were the previous event's growth at 10 steps apart).
- Grow from the top (never a component dropped in the same event, each at most once) while the
  added cost stays below the removed cost (plus ``target_delta``: what earlier events left off
  the run's budget); the last component is then chosen to bring the budget closest: stopping
  short or adding one more, of any module among the rest of the ranking (the best ranked of each
  cost). So the model stays within half of the costliest component of the run's budget, where the
  paper's rule ("until the added cost exceeds both P and the removed cost") ends up to one whole
  component larger per event (+0.5 % of the demo model, +250 k parameters on the 42 M model).
- Groups: a model may declare that several modules share parameters that are used only while at
  least one of them is non-empty (an E-Branchformer block's merge of its two branches). Emptying
  the last one frees those parameters too, and the plan counts them as removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

__all__ = [
    "BudgetError",
    "EventPlan",
    "ModuleGroup",
    "ReallocationEvent",
    "SharedSubmodule",
    "plan_event",
]


class BudgetError(RuntimeError):
    """An event cannot keep the budget (METHOD.md §4.4), or a rebuilt model broke it."""


@dataclass(frozen=True)
class SharedSubmodule:
    """A sub-module that a model uses only while one of ``modules`` is non-empty.

    What a model declares (``adaptable_groups()``) so an event that empties all of ``modules``
    also removes ``getattr(owner, attribute)`` (setting it to None) and counts its parameters as
    freed: an E-Branchformer block's branch merge when both branches are emptied. Otherwise the
    merge gets no gradient (dead parameters outside the budget, and DDP without
    ``find_unused_parameters`` fails on the next step).
    """

    modules: tuple[str, ...]
    owner: Any
    attribute: str

    @property
    def name(self) -> str:
        return f"{self.modules[0].rpartition('.')[0]}.{self.attribute}"


@dataclass(frozen=True)
class ModuleGroup:
    """Modules whose ``shared_cost`` parameters are freed when ALL of them are emptied."""

    modules: tuple[str, ...]
    shared_cost: int
    name: str = ""


@dataclass
class EventPlan:
    """The outcome of :func:`plan_event`."""

    new_components: dict[str, list[int]]
    """Module name → old component indices in their new order (a duplicate right after its
    original); only modules that change."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    removed: int = 0
    """Cost removed, in the budget unit (per output frame for MACs)."""
    added: int = 0
    freed_groups: list[str] = field(default_factory=list)
    """Names of the :class:`ModuleGroup` s whose shared parameters this event frees."""

    @property
    def delta(self) -> int:
        """``added − removed``: the planned change of the budgeted cost."""
        return self.added - self.removed


def plan_event(
    scores: Mapping[str, Tensor],
    num_components: Mapping[str, int],
    costs: Mapping[str, int],
    shared: Mapping[str, int],
    budget: int,
    protected: Mapping[str, Sequence[bool]] | None = None,
    groups: Sequence[ModuleGroup] = (),
    target_delta: int = 0,
) -> EventPlan:
    """Plan one drop-and-grow event.

    Args:
        scores: module name → ``(num_components,)`` smoothed scores (higher = more useful). The
            order of the mapping is the tie-break order.
        num_components: module name → current number of components.
        costs: module name → cost of one component in the budget unit.
        shared: module name → cost freed besides its components when the module is emptied
            (its norm, output bias; 0 for a MACs budget).
        budget: P, the cost to move; ``<= 0`` plans nothing.
        protected: module name → per component, True if it must not be dropped now.
        groups: modules sharing parameters that are freed with the last of them.
        target_delta: how much the event should change the total (``budget at the start of the
            run − cost now``): with several events each one lands within half a component of
            the run's budget, so the small differences do not add up (they did: +12 k after
            three cosine-spaced events on the small recipe, all within half a component each).

    Raises:
        BudgetError: if the model cannot grow back what the budget removes.
    """
    names = list(scores)
    result = EventPlan(new_components={})
    if budget <= 0:
        return result
    protected = protected or {}
    entries = []  # (score, module order, component, name): ascending = least useful first
    for order, name in enumerate(names):
        values = scores[name].tolist()
        if len(values) != num_components[name]:
            raise ValueError(
                f"DMAO plan: {name} has {num_components[name]} components but {len(values)} scores"
            )
        for c, s in enumerate(values):
            entries.append((s, order, c, name))
    entries.sort()
    remaining = dict(num_components)
    group_of = {m: g for g in groups for m in g.modules}
    dropped: set[tuple[str, int]] = set()
    for s, _, c, name in entries:
        if result.removed > budget:
            break
        if protected.get(name) is not None and protected[name][c]:
            continue
        remaining[name] -= 1
        cost = costs[name] + (shared[name] if remaining[name] == 0 else 0)
        group = group_of.get(name)
        if (
            remaining[name] == 0
            and group is not None
            and all(remaining[m] == 0 for m in group.modules)
        ):
            cost += group.shared_cost
            result.freed_groups.append(group.name)
        result.removed += cost
        dropped.add((name, c))
        result.dropped.append(_entry(name, c, s, cost))
    if result.removed <= budget:
        raise BudgetError(
            f"DMAO plan: only {result.removed} of the budget {budget} can be dropped (the rest "
            f"is protected: grown at the last event and not measured enough yet)"
        )

    # Grow while below the target, then pick the last component that lands closest to it.
    target = result.removed + target_delta
    candidates = [e for e in reversed(entries) if (e[3], e[2]) not in dropped]
    duplicated: list[tuple[float, int, str]] = []
    i = 0
    while i < len(candidates) and result.added + costs[candidates[i][3]] < target:
        s, _, c, name = candidates[i]
        result.added += costs[name]
        duplicated.append((s, c, name))
        i += 1
    best: tuple[int, int] | None = None  # (|Δ| if the candidate is added, its position)
    seen_costs: set[int] = set()
    for j in range(i, len(candidates)):
        cost = costs[candidates[j][3]]
        if cost in seen_costs:
            continue  # the best ranked of each cost is the one to take
        seen_costs.add(cost)
        gap = abs(result.added + cost - target)
        if best is None or gap < best[0]:
            best = (gap, j)
    if best is not None and best[0] < abs(result.added - target):
        s, _, c, name = candidates[best[1]]
        result.added += costs[name]
        duplicated.append((s, c, name))
    if abs(result.added - target) > max(costs.values()) // 2 + 1:
        raise BudgetError(
            f"DMAO plan: cannot grow {target} back (only {result.added} left to duplicate); the "
            f"fraction is too large for this model"
        )
    result.duplicated = [_entry(name, c, s, costs[name]) for s, c, name in duplicated]

    grown = {(name, c) for _, c, name in duplicated}
    for name in names:
        if not any(n == name for n, _ in dropped | grown):
            continue
        comps: list[int] = []
        for c in range(num_components[name]):
            if (name, c) not in dropped:
                comps.append(c)
                if (name, c) in grown:
                    comps.append(c)
        result.new_components[name] = comps
    return result


def _entry(name: str, component: int, score: float, cost: int) -> dict[str, Any]:
    return {"module": name, "component": component, "score": score, "cost": cost}


@dataclass
class ReallocationEvent:
    """What one event did; :meth:`to_dict` is JSON-able (for metrics logs and checkpoints)."""

    index: int
    step: int
    fraction: float
    budget_unit: str
    """``params`` or ``macs`` (multiply-accumulates per second of audio)."""
    budget: int
    """P of METHOD.md §4 in ``budget_unit``; ``cost`` of the dropped/duplicated entries too."""
    params_before: int
    params_after: int
    macs_per_second_before: int
    macs_per_second_after: int
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """``{"module", "kind", "component", "score", "cost"}`` per dropped component."""
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    """Same fields, per duplicated component."""
    widths_before: dict[str, int] = field(default_factory=dict)
    widths_after: dict[str, int] = field(default_factory=dict)
    protected: int = 0
    """Components that could not be dropped (grown earlier, not measured enough yet)."""
    freed: list[str] = field(default_factory=list)
    """Shared sub-modules removed with the last module of their group."""
    dropout_after: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall time of the event (plan, rebuild, optimizer remap, checks)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
