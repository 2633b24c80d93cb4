"""The DMAO allocator: scores during training, drops and duplicates at scheduled steps.

How a training loop uses it (``step`` = optimizer updates completed so far)::

    allocator = DmaoAllocator(model.adaptable_modules(), cfg.dmao, total_steps)
    ...
    loss.backward()
    allocator.after_backward(step)            # before clipping and optimizer.step()
    clip_grad_norm_(...); optimizer.step(); scheduler.step(); step += 1
    event = allocator.maybe_reallocate(step, optimizer)   # after the update, before zero_grad
    optimizer.zero_grad()

An event (METHOD.md §4) ranks all components of all modules in ONE list, drops from the bottom
until the removed cost exceeds P = p_k × (adaptable parameters), duplicates from the top (each at
most once, never a component dropped in the same event) until the added cost exceeds both P and
the removed cost, rebuilds every changed module, remaps the optimizer and rescales dropout. It is
all or nothing: on any error the previous sub-modules, dropouts and optimizer state are put back.

Decisions:
- Costs are exact parameter counts: a component is ``component_cost()`` parameters, and the drop
  that empties a module also frees the module's shared parameters (norm, output bias), so the
  invariant "after − before ∈ (0, one component]" holds for the real parameter count.
- With ``budget_unit="macs"`` a component costs ``component_macs(context_frames)`` multiply-
  accumulates per output frame (reported per second of audio with ``frames_per_second``), and
  the same invariant holds for the encoder's MACs; the parameter count may then drift.
- Duplicates are placed right after their original; ties in the ranking are broken by module order
  and component index, so a plan is deterministic.
- Dropout is ``base_dropout × width / default_width``, capped at 0.9 so a module that grew a lot
  still passes a signal; it is (re)applied when the allocator is built too, so a model rebuilt from
  a checkpoint with a DMAO architecture gets the same dropouts as the run that made it.
- With ``growth_init="random"`` or ``"fresh"`` new copies start with zero moments whatever
  ``duplicate_moments`` says: the original's moments describe different weights.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from dmao.method.config import DmaoConfig
from dmao.method.optimizer_state import remap_optimizer
from dmao.method.schedule import event_schedule
from dmao.method.scores import ScoreTracker
from dmao.method.units import AdaptableModule, GrowthInit, components_to_units

__all__ = ["DmaoAllocator", "ReallocationEvent"]

log = logging.getLogger(__name__)

# Upper bound of a width-scaled dropout probability (see the module docstring).
MAX_SCALED_DROPOUT = 0.9


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _adaptable_params(modules: Mapping[str, AdaptableModule]) -> int:
    return sum(p.numel() for m in modules.values() for p in m.parameters())


def _adaptable_macs(modules: Mapping[str, AdaptableModule], context_frames: int) -> int:
    """Multiply-accumulates per output frame of all adaptable modules."""
    return sum(m.num_components() * m.component_macs(context_frames) for m in modules.values())


class DmaoAllocator:
    """Owns the DMAO scores, schedule and events of one training run.

    Args:
        modules: the adaptable modules by name (e.g. ``ConformerCTC.adaptable_modules()``); each
            must have ``kind``, ``default_width`` and ``base_dropout`` set.
        config: the method settings.
        total_steps: optimizer steps of the whole run (the schedule is a fraction of it).
        frames_per_second: output frames per second of audio of the encoder (25 for 10 ms
            features subsampled 4×); converts MACs per frame to MACs per second of audio.
    """

    def __init__(
        self,
        modules: Mapping[str, AdaptableModule],
        config: DmaoConfig,
        total_steps: int,
        frames_per_second: float = 25.0,
    ) -> None:
        self.modules = dict(modules)
        self.config = config
        self.frames_per_second = frames_per_second
        self.context_frames = max(1, round(config.macs_context_seconds * frames_per_second))
        for name, m in self.modules.items():
            if not isinstance(m, AdaptableModule):
                raise TypeError(f"DMAO module {name} ({type(m).__name__}) is not AdaptableModule")
            if config.budget_unit == "macs" and not hasattr(m, "component_macs"):
                raise TypeError(
                    f"DMAO module {name} ({type(m).__name__}) has no component_macs(), which "
                    f"dmao.budget_unit=macs needs; use budget_unit=params or implement it"
                )
            m.set_granularity(config.granularity)
            m.num_components()  # validates the width against the granularity
        self.schedule = event_schedule(
            total_steps, config.last_event_fraction, config.num_events, config.total_fraction
        )
        self.tracker = ScoreTracker(
            self.modules, config.metric, config.ema_beta, config.score_every_steps
        )
        self.event_index = 0
        self.history: list[dict[str, Any]] = []
        self.growth = GrowthInit(config.growth_init, config.growth_noise_variance)
        if config.dropout_scaling:
            self._scale_dropout()

    # -- training loop hooks ------------------------------------------------------------------

    def after_backward(self, step: int) -> bool:
        """Measure scores if due (or if the update about to be made ends at an event).

        Call after ``backward()`` and before clipping/``optimizer.step()``; ``step`` is the number
        of updates completed before this one. Returns whether a measurement was taken.
        """
        if self.event_index >= len(self.schedule):
            return False  # no event left: scores are never used again
        if (
            step + 1 == self.schedule[self.event_index][0]
            and self.tracker.last_measured_step != step
        ):
            return self.tracker.measure(step)
        return self.tracker.maybe_measure(step)

    def maybe_reallocate(
        self, step: int, optimizer: torch.optim.Optimizer
    ) -> ReallocationEvent | None:
        """Run the next event if ``step`` (updates completed) has reached its scheduled step."""
        if self.event_index >= len(self.schedule) or step < self.schedule[self.event_index][0]:
            return None
        _, fraction = self.schedule[self.event_index]
        event = self.reallocate(step, fraction, optimizer)
        self.event_index += 1
        self.history.append(event.to_dict())
        return event

    # -- the event ----------------------------------------------------------------------------

    def plan(self, fraction: float) -> tuple[dict[str, list[int]], dict[str, Any]]:
        """The new component list of every changed module, and the event record fields."""
        names = list(self.modules)
        scores = self.tracker.scores
        if fraction > 0 and not scores:
            raise RuntimeError(
                "DMAO event without any score measurement: call after_backward(step) after "
                "every backward pass"
            )
        unit = self.config.budget_unit
        total = self._total_cost()
        budget = int(fraction * total)
        record: dict[str, Any] = {
            "budget_unit": unit,
            "budget": self._report(budget),
            "dropped": [],
            "duplicated": [],
        }
        if budget <= 0:
            return {}, record
        entries = []  # (score, module order, component, name)
        for order, name in enumerate(names):
            for c, s in enumerate(scores[name].tolist()):
                entries.append((s, order, c, name))
        entries.sort()
        costs = {n: self._component_cost(self.modules[n]) for n in names}
        remaining = {n: self.modules[n].num_components() for n in names}
        # Emptying a module also frees its shared parameters (norms, output bias); they do no
        # multiply-accumulates, so a MACs budget has nothing shared.
        shared = {
            n: sum(p.numel() for p in self.modules[n].parameters()) - remaining[n] * costs[n]
            if unit == "params"
            else 0
            for n in names
        }
        dropped: set[tuple[str, int]] = set()
        removed = 0
        for s, _, c, name in entries:
            if removed > budget:
                break
            remaining[name] -= 1
            cost = costs[name] + (shared[name] if remaining[name] == 0 else 0)
            removed += cost
            dropped.add((name, c))
            record["dropped"].append(self._entry(name, c, s, cost))
        duplicated: set[tuple[str, int]] = set()
        added = 0
        for s, _, c, name in reversed(entries):
            if added > budget and added > removed:
                break
            if (name, c) in dropped:
                continue
            added += costs[name]
            duplicated.add((name, c))
            record["duplicated"].append(self._entry(name, c, s, costs[name]))
        if not (added > budget and added > removed):
            raise RuntimeError(
                f"DMAO plan: cannot grow {removed} {unit} back (only {added} growable); "
                f"fraction {fraction} is too large for this model"
            )
        new_components: dict[str, list[int]] = {}
        for name in names:
            touched = [c for n, c in dropped | duplicated if n == name]
            if not touched:
                continue
            comps: list[int] = []
            for c in range(self.modules[name].num_components()):
                if (name, c) not in dropped:
                    comps.append(c)
                    if (name, c) in duplicated:
                        comps.append(c)
            new_components[name] = comps
        return new_components, record

    def _entry(self, name: str, component: int, score: float, cost: int) -> dict[str, Any]:
        kind = self.modules[name].kind
        return {
            "module": name,
            "kind": kind,
            "component": component,
            "score": score,
            "cost": self._report(cost),
        }

    def _component_cost(self, module: AdaptableModule) -> int:
        """One component's cost in the budget unit (MACs per output frame for ``macs``)."""
        if self.config.budget_unit == "macs":
            return module.component_macs(self.context_frames)
        return module.component_cost()

    def _total_cost(self) -> int:
        if self.config.budget_unit == "macs":
            return _adaptable_macs(self.modules, self.context_frames)
        return _adaptable_params(self.modules)

    def _report(self, cost: int) -> int:
        """A cost as logged: parameters, or MACs per second of audio."""
        if self.config.budget_unit == "macs":
            return round(cost * self.frames_per_second)
        return cost

    def macs_per_second(self) -> int:
        """Multiply-accumulates per second of audio of all adaptable modules."""
        return round(_adaptable_macs(self.modules, self.context_frames) * self.frames_per_second)

    def reallocate(
        self, step: int, fraction: float, optimizer: torch.optim.Optimizer
    ) -> ReallocationEvent:
        """Plan, validate and apply one event; all or nothing (see the module docstring)."""
        new_components, record = self.plan(fraction)
        widths_before = {n: m.width for n, m in self.modules.items()}
        params_before = _adaptable_params(self.modules)
        macs_before = self.macs_per_second()
        before = self._total_cost()
        max_cost = max(self._component_cost(m) for m in self.modules.values())

        # Everything the apply phase replaces, to put back on failure. Reselect and the optimizer
        # remap never edit tensors in place, so references are enough.
        saved_children = {n: dict(m._modules) for n, m in self.modules.items()}
        saved_dropout = {n: m.dropout for n, m in self.modules.items()}
        saved_groups = [list(g["params"]) for g in optimizer.param_groups]
        saved_state = dict(optimizer.state)
        try:
            remaps = []
            for name, comps in new_components.items():
                module = self.modules[name]
                units = components_to_units(
                    torch.tensor(comps, dtype=torch.int64), module.units_per_component
                )
                remaps.extend(module.reselect(units, self.growth).values())
            moments = "zeros" if self.growth.fresh_weights else self.config.duplicate_moments
            remap_optimizer(optimizer, remaps, moments)
            if self.config.dropout_scaling:
                self._scale_dropout()
            after = self._total_cost()
            delta = after - before
            # The budget invariant (METHOD.md §4.4), on the real count in the budget unit.
            ok = delta == 0 if not new_components else 0 < delta <= max_cost
            assert ok, (
                f"DMAO event at step {step}: adaptable {self.config.budget_unit} went from "
                f"{before} to {after} (delta {delta}), expected within one component "
                f"({max_cost}) of the budget"
            )
        except BaseException:
            for name, module in self.modules.items():
                for child, sub in saved_children[name].items():
                    setattr(module, child, sub)
                module.dropout = saved_dropout[name]
            for group, params in zip(optimizer.param_groups, saved_groups, strict=True):
                group["params"] = params
            optimizer.state.clear()
            optimizer.state.update(saved_state)
            log.error("DMAO event at step %d failed; model and optimizer restored", step)
            raise
        event = ReallocationEvent(
            index=self.event_index,
            step=step,
            fraction=fraction,
            params_before=params_before,
            params_after=_adaptable_params(self.modules),
            macs_per_second_before=macs_before,
            macs_per_second_after=self.macs_per_second(),
            widths_before=widths_before,
            widths_after={n: m.width for n, m in self.modules.items()},
            **record,
        )
        # The components changed, so the old scores describe nothing any more (METHOD.md §3).
        self.tracker.reset()
        log.info("DMAO event: %s", json.dumps(event.to_dict()))
        return event

    def _scale_dropout(self) -> None:
        for name, m in self.modules.items():
            if m.default_width is None or m.base_dropout is None:
                raise ValueError(f"DMAO module {name} has no default_width/base_dropout set")
            scaled = m.base_dropout * m.width / m.default_width
            m.dropout = min(scaled, MAX_SCALED_DROPOUT)

    # -- checkpointing ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Scores, event index and history (the architecture itself lives in the model)."""
        return {
            "event_index": self.event_index,
            "history": [dict(e) for e in self.history],
            "tracker": self.tracker.state_dict(),
            "schedule": [list(e) for e in self.schedule],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        schedule = [tuple(e) for e in state["schedule"]]
        if schedule != [tuple(e) for e in self.schedule]:
            raise ValueError(
                f"DMAO state was saved with schedule {schedule}, this run has {self.schedule}; "
                f"total_steps or the dmao.* schedule settings changed"
            )
        self.event_index = int(state["event_index"])
        self.history = [dict(e) for e in state["history"]]
        self.tracker.load_state_dict(state["tracker"])
