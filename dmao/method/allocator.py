"""The DMAO allocator: scores during training, drops and duplicates at scheduled steps.

How a training loop uses it (``step`` = optimizer updates completed so far)::

    allocator = DmaoAllocator(model.adaptable_modules(), cfg.dmao, total_steps)
    ...
    loss.backward()
    allocator.after_backward(step)            # before clipping and optimizer.step()
    clip_grad_norm_(...); optimizer.step(); scheduler.step(); step += 1
    event = allocator.maybe_reallocate(step, optimizer)   # after the update, before zero_grad
    optimizer.zero_grad()

An event (METHOD.md §4) plans which components to drop and duplicate (:mod:`dmao.method.plan`:
one global ranking, the budget kept to within half a component), rebuilds every changed module,
remaps the optimizer and rescales dropout. It is all or nothing: on any error the previous
sub-modules, dropouts and optimizer state are put back.

Decisions:
- Costs (:mod:`dmao.method.budget`) are exact parameter counts or MACs, shared parameters freed
  with the last component included, so |after − before| ≤ half the costliest component holds
  for the real count; a violation raises :class:`BudgetError` (an ``assert`` would vanish under
  ``python -O``).
- Components grown at an event are not dropped before they have been measured
  ``grace_measurements`` times (see :mod:`dmao.method.plan`); the per-component count of
  measurements since growth is part of the checkpointed state.
- ``metric="random"``: the ranking at an event is a random permutation from the global torch RNG
  (the recipe seeds it per (seed, step), the same on every rank): the standard control of the
  pruning literature — do the scores matter at all?
- Dropout is width-scaled (:mod:`dmao.method.dropout`) for every module whose
  ``dropout_scaling`` is on; the models apply the same rule when they are built, so a control
  trained from the found architecture has the same dropouts as the DMAO run.
- With ``growth_init`` ``random``, ``fresh`` or ``gradmax`` new copies start with zero moments
  when ``duplicate_moments=copy``: the original's moments describe different weights; an explicit
  ``second`` (the original's second moment, first moment zero) is honoured.
- ``rewarmup_steps``: after an event the learning rate of the new units (or all) ramps up
  (:mod:`dmao.method.rewarmup`; :meth:`after_backward` and :meth:`maybe_reallocate` bracket
  every update, so the loop must call both on every step).
- ``growth_init="gradmax"``: a :class:`~dmao.method.gradmax.GradMaxCollector` is started
  ``growth_gradmax_steps`` updates before each event (in :meth:`maybe_reallocate`, or at
  construction if the window begins at step 0) and stopped at the event, before any module is
  rebuilt; each module then grows with its own E[∂L/∂z·hᵀ]. A module without statistics grows
  ``fresh``. The statistics are not checkpointed (a resumed run collects from the resume on).
- ``growth_init="reference"`` rebuilds modules as the authors' code does
  (:mod:`dmao.method.reference`): by default every non-empty module at every event
  (``reference_rebuild``), with ``perturb_only`` every component kept once (widths unchanged, the
  plan is computed but not applied: the event records no drop or duplicate); the rebuilt
  parameters are left out of the optimizer (``reference_optimizer=frozen``, kept in
  ``self.frozen``) or enter it with empty state (``fresh``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from dmao.method.budget import BudgetMeter, adaptable_macs_per_second, adaptable_params
from dmao.method.config import DmaoConfig
from dmao.method.dropout import apply_width_scaled_dropout
from dmao.method.gradmax import GradMaxCollector, gradmax_taps
from dmao.method.growth import GrowthInit
from dmao.method.optimizer_state import remap_optimizer
from dmao.method.plan import (
    BudgetError,
    EventPlan,
    ReallocationEvent,
    SharedSubmodule,
    plan_event,
)
from dmao.method.reference import (
    FrozenParameters,
    ReferenceSettings,
    apply_reference_optimizer,
    reference_reselect,
)
from dmao.method.rewarmup import UpdateRamp
from dmao.method.schedule import config_event_schedule
from dmao.method.scores import ScoreTracker
from dmao.method.units import AdaptableModule, ParamRemap, components_to_units

__all__ = [
    "BudgetError",
    "DmaoAllocator",
    "ReallocationEvent",
    "SharedSubmodule",
    "adaptable_macs_per_second",
]

log = logging.getLogger(__name__)

# Measurements since growth of a component that was never grown (the model's own components).
_MATURE = 1 << 30


class DmaoAllocator:
    """Owns the DMAO scores, schedule and events of one training run.

    Args:
        modules: the adaptable modules by name (e.g. ``ConformerCTC.adaptable_modules()``); each
            must have ``kind``, ``default_width`` and ``base_dropout`` set.
        config: the method settings.
        total_steps: optimizer steps of the whole run (the schedule is a fraction of it).
        frames_per_second: output frames per second of audio of the encoder (25 for 10 ms
            features subsampled 4×); converts MACs per frame to MACs per second of audio.
        shared: sub-modules used only while one of a group of modules is non-empty (e.g.
            ``EBranchformerCTC.adaptable_groups()``).
    """

    def __init__(
        self,
        modules: Mapping[str, AdaptableModule],
        config: DmaoConfig,
        total_steps: int,
        frames_per_second: float = 25.0,
        shared: Sequence[SharedSubmodule] = (),
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
        self.shared = list(shared)
        for group in self.shared:
            unknown = [n for n in group.modules if n not in self.modules]
            if unknown:
                raise ValueError(f"DMAO shared sub-module {group.name}: unknown modules {unknown}")
        self.meter = BudgetMeter(
            self.modules, self.shared, config.budget_unit, self.context_frames, frames_per_second
        )
        # The run's budget: every event lands within half a component of it (checkpointed).
        self.run_budget = self.meter.total()
        self.schedule = config_event_schedule(config, total_steps)
        self.tracker = ScoreTracker(
            self.modules, config.metric, config.ema_beta, config.score_every_steps
        )
        self.event_index = 0
        self.history: list[dict[str, Any]] = []
        self.growth = GrowthInit(
            config.growth_init,
            config.growth_noise_variance,
            split_alpha=config.growth_split_alpha,
            gradmax_scale=config.growth_gradmax_scale,
        )
        # growth_init=reference: the authors' rebuild (METHOD.md §8); parameters it froze.
        self.reference = (
            ReferenceSettings.from_config(config) if config.growth_init == "reference" else None
        )
        self.frozen = FrozenParameters()
        # Learning-rate re-warm-up of the new units (or all) after each event.
        self.ramp = UpdateRamp(config.rewarmup_steps, config.rewarmup_scope)
        # growth_init=gradmax: hooks that collect E[∂L/∂z·hᵀ], only in a window before an event.
        self.gradmax = GradMaxCollector() if config.growth_init == "gradmax" else None
        self._maybe_start_gradmax(0)
        # Per module, per component: measurements taken since the component was grown.
        self.measured_since_growth = {
            n: torch.full((m.num_components(),), _MATURE, dtype=torch.int64)
            for n, m in self.modules.items()
        }
        apply_width_scaled_dropout(self.modules)

    # -- training loop hooks ------------------------------------------------------------------

    def after_backward(self, step: int) -> bool:
        """Measure scores if due (or if the update about to be made ends at an event).

        Call after ``backward()`` and before clipping/``optimizer.step()``; ``step`` is the number
        of updates completed before this one. Returns whether a measurement was taken.
        """
        self.ramp.before_step(self.parameter)
        if self.event_index >= len(self.schedule):
            return False  # no event left: scores are never used again
        if (
            step + 1 == self.schedule[self.event_index][0]
            and self.tracker.last_measured_step != step
        ):
            measured = self.tracker.measure(step)
        else:
            measured = self.tracker.maybe_measure(step)
        if measured:
            for ages in self.measured_since_growth.values():
                ages.add_(1).clamp_(max=_MATURE)
        return measured

    def is_due(self, step: int) -> bool:
        """Whether :meth:`maybe_reallocate` would run an event after ``step`` updates."""
        return self.event_index < len(self.schedule) and step >= self.schedule[self.event_index][0]

    def maybe_reallocate(
        self, step: int, optimizer: torch.optim.Optimizer
    ) -> ReallocationEvent | None:
        """Run the next event if ``step`` (updates completed) has reached its scheduled step.

        Call after every update (it also finishes the update's learning-rate re-warm-up and opens
        the GradMax window)."""
        self.ramp.after_step(self.parameter)
        if not self.is_due(step):
            self._maybe_start_gradmax(step)
            return None
        _, fraction = self.schedule[self.event_index]
        event = self.reallocate(step, fraction, optimizer)
        self.event_index += 1
        self.history.append(event.to_dict())
        self._maybe_start_gradmax(step)  # the next event's window may begin at once
        return event

    def _maybe_start_gradmax(self, step: int) -> None:
        """Start collecting GradMax statistics ``growth_gradmax_steps`` updates before the next
        event (``step`` = updates completed; the next forward is the first one collected)."""
        if self.gradmax is None or self.gradmax.active or self.event_index >= len(self.schedule):
            return
        if step >= self.schedule[self.event_index][0] - self.config.growth_gradmax_steps:
            self.gradmax.start(self.modules)

    def _growth_for(self, name: str) -> GrowthInit:
        """How module ``name`` grows: with ``gradmax``, with its own statistics (``fresh`` if it
        has none: not tapped, or no training step seen in the window)."""
        if self.gradmax is None:
            return self.growth
        matrix = self.gradmax.matrix(name)
        if matrix is None:
            if gradmax_taps(self.modules[name]) is not None:
                log.warning("DMAO gradmax: no statistics for %s; it grows fresh", name)
            return replace(self.growth, mode="fresh")
        return replace(self.growth, gradient_outer=matrix)

    # -- the event ----------------------------------------------------------------------------

    def _ranking_scores(self) -> dict[str, Tensor]:
        if self.config.metric == "random":
            return {n: torch.rand(m.num_components()) for n, m in self.modules.items()}
        return dict(self.tracker.scores)

    def protected(self) -> dict[str, list[bool]]:
        """Per module and component: may not be dropped now (grown, not measured enough)."""
        grace = self.config.grace_measurements
        return {n: (ages < grace).tolist() for n, ages in self.measured_since_growth.items()}

    def plan(self, fraction: float) -> EventPlan:
        """What an event with ``fraction`` would drop and duplicate now (nothing is changed)."""
        if fraction > 0 and not self.tracker.scores:
            raise RuntimeError(
                "DMAO event without any score measurement: call after_backward(step) after "
                "every backward pass"
            )
        names = list(self.modules)
        costs = {n: self.meter.component(self.modules[n]) for n in names}
        counts = {n: self.modules[n].num_components() for n in names}
        shared = {n: self.meter.module_shared(n) for n in names}
        return plan_event(
            self._ranking_scores(),
            counts,
            costs,
            shared,
            int(fraction * self.total_cost()),
            self.protected(),
            self.meter.groups(),
            target_delta=self.run_budget - self.total_cost(),
        )

    def _entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        kind = self.modules[entry["module"]].kind
        return {**entry, "kind": kind, "cost": self.meter.report(entry["cost"])}

    def total_cost(self) -> int:
        """Adaptable cost in the budget unit, shared sub-modules included."""
        return self.meter.total()

    def macs_per_second(self) -> int:
        """Multiply-accumulates per second of audio of all adaptable modules."""
        return self.meter.macs_per_second()

    def reallocate(
        self, step: int, fraction: float, optimizer: torch.optim.Optimizer
    ) -> ReallocationEvent:
        """Plan, validate and apply one event; all or nothing (see the module docstring)."""
        started = time.perf_counter()
        if self.gradmax is not None:
            self.gradmax.stop()  # before any reselect: the hooks live on the replaced sub-modules
        plan = self.plan(fraction)
        rebuilds = self._rebuilds(plan)
        if self.config.perturb_only:  # the same rebuilds, no reallocation (widths unchanged)
            plan = replace(plan, new_components={}, dropped=[], duplicated=[], freed_groups=[])
        widths_before = {n: m.width for n, m in self.modules.items()}
        params_before = adaptable_params(self.modules)
        macs_before = self.macs_per_second()
        before = self.total_cost()
        max_cost = max(self.meter.component(m) for m in self.modules.values())

        # Everything the apply phase replaces, to put back on failure. Reselect and the optimizer
        # remap never edit tensors in place, so references are enough.
        saved_children = {n: dict(m._modules) for n, m in self.modules.items()}
        saved_shared = [(g, getattr(g.owner, g.attribute)) for g in self.shared]
        saved_dropout = {n: m.dropout for n, m in self.modules.items()}
        saved_groups = [list(g["params"]) for g in optimizer.param_groups]
        saved_state = dict(optimizer.state)
        saved_frozen = list(self.frozen.params)
        try:
            remaps: list[ParamRemap] = []
            for name, comps in rebuilds.items():
                module = self.modules[name]
                if self.reference is not None:
                    comps_t = torch.tensor(comps, dtype=torch.int64)
                    remaps.extend(reference_reselect(module, comps_t, self.reference).values())
                    continue
                units = components_to_units(
                    torch.tensor(comps, dtype=torch.int64), module.units_per_component
                )
                remaps.extend(module.reselect(units, self._growth_for(name)).values())
            for g, sub in saved_shared:
                if sub is not None and g.name in plan.freed_groups:
                    remaps.extend(ParamRemap(old=p, new=None) for p in sub.parameters())
                    setattr(g.owner, g.attribute, None)
            moments = self.config.duplicate_moments
            if self.growth.fresh_weights and moments == "copy":
                moments = "zeros"  # the original's moments describe other weights
            if self.reference is not None:
                mode = self.config.reference_optimizer
                apply_reference_optimizer(optimizer, remaps, mode, self.frozen)
            else:
                remap_optimizer(optimizer, remaps, moments)
            dropout_after = apply_width_scaled_dropout(self.modules)
            self._check_budget(step, before, max_cost, bool(plan.new_components))
        except BaseException:
            for name, module in self.modules.items():
                for child, sub in saved_children[name].items():
                    setattr(module, child, sub)
                module.dropout = saved_dropout[name]
            for g, sub in saved_shared:
                setattr(g.owner, g.attribute, sub)
            for group, params in zip(optimizer.param_groups, saved_groups, strict=True):
                group["params"] = params
            optimizer.state.clear()
            optimizer.state.update(saved_state)
            self.frozen.params = saved_frozen
            log.error("DMAO event at step %d failed; model and optimizer restored", step)
            raise
        self._age_components(plan.new_components)
        self.ramp.start(self._ramp_targets(remaps))
        event = ReallocationEvent(
            index=self.event_index,
            step=step,
            fraction=fraction,
            budget_unit=self.config.budget_unit,
            budget=self.meter.report(int(fraction * before)),
            params_before=params_before,
            params_after=adaptable_params(self.modules),
            macs_per_second_before=macs_before,
            macs_per_second_after=self.macs_per_second(),
            dropped=[self._entry(e) for e in plan.dropped],
            duplicated=[self._entry(e) for e in plan.duplicated],
            widths_before=widths_before,
            widths_after={n: m.width for n, m in self.modules.items()},
            protected=sum(sum(p) for p in self.protected().values()),
            freed=list(plan.freed_groups),
            dropout_after=dropout_after,
            seconds=round(time.perf_counter() - started, 4),
        )
        # The components changed, so the old scores describe nothing any more (METHOD.md §3).
        self.tracker.reset()
        if self.gradmax is not None:
            self.gradmax.clear()
        log.info("DMAO event: %s", json.dumps(event.to_dict()))
        return event

    def parameter(self, name: str) -> nn.Parameter:
        """The live parameter named ``"<module>|<path>"`` (``"encoder.blocks.0.ff1|fc.bias"``)."""
        module, _, path = name.partition("|")
        return self.modules[module].get_parameter(path)

    def _names(self) -> dict[int, str]:
        return {id(p): f"{n}|{path}" for n, m in self.modules.items()
                for path, p in m.named_parameters()}  # fmt: skip

    def _ramp_targets(
        self, remaps: list[ParamRemap]
    ) -> dict[str, tuple[int | None, Tensor | None]]:
        """What the re-warm-up ramps after an event: the new units' positions, or everything."""
        names = self._names()
        if self.config.rewarmup_scope == "all":
            return {name: (None, None) for name in names.values()}
        return {names[id(r.new)]: (r.dim, r.fresh) for r in remaps
                if r.new is not None and r.fresh is not None and id(r.new) in names}  # fmt: skip

    def _rebuilds(self, plan: EventPlan) -> dict[str, list[int]]:
        """The new component list of every module the event rebuilds: the plan's changes, or with
        ``growth_init=reference`` the modules ``reference_rebuild`` names (every non-empty one by
        default, as the authors' code), each with every component once under ``perturb_only``."""
        if self.reference is None:
            return dict(plan.new_components)
        names = (
            [n for n, m in self.modules.items() if m.num_components() > 0]
            if self.config.reference_rebuild == "all"
            else list(plan.new_components)
        )
        keep = {n: list(range(self.modules[n].num_components())) for n in names}
        if self.config.perturb_only:
            return keep
        return {n: plan.new_components.get(n, keep[n]) for n in names}

    def _check_budget(self, step: int, before: int, max_cost: int, changed: bool) -> None:
        """The budget invariant (METHOD.md §4.4) on the real count in the budget unit: within
        half a component of the run's budget (an event that changes nothing: exactly as before)."""
        after = self.total_cost()
        reference = self.run_budget if changed else before
        delta = after - reference
        if abs(delta) > (max_cost // 2 + 1 if changed else 0):
            raise BudgetError(
                f"DMAO event at step {step}: adaptable {self.config.budget_unit} went from "
                f"{before} to {after}, {delta:+} from the run's budget {reference}; expected "
                f"within half a component ({max_cost // 2})"
            )

    def _age_components(self, new_components: Mapping[str, list[int]]) -> None:
        """Carry every surviving component's measurement count; new copies start at 0."""
        for name, comps in new_components.items():
            old = self.measured_since_growth[name]
            index = torch.tensor(comps, dtype=torch.int64)
            ages = old[index].clone() if comps else torch.zeros(0, dtype=torch.int64)
            seen: set[int] = set()
            for j, c in enumerate(comps):
                if c in seen:
                    ages[j] = 0
                seen.add(c)
            self.measured_since_growth[name] = ages

    # -- checkpointing ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Scores, event index and history (the architecture itself lives in the model)."""
        return {
            "event_index": self.event_index,
            "history": [dict(e) for e in self.history],
            "tracker": self.tracker.state_dict(),
            "schedule": [list(e) for e in self.schedule],
            "measured_since_growth": {n: a.clone() for n, a in self.measured_since_growth.items()},
            "rewarmup": self.ramp.state_dict(),
            "run_budget": self.run_budget,
            "frozen": [self._names()[id(p)] for p in self.frozen.params],
        }

    def load_state_dict(
        self, state: Mapping[str, Any], optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Restore :meth:`state_dict`. With parameters frozen by a reference event, pass the
        optimizer (built from all model parameters) BEFORE loading its state: they leave it again,
        so its parameter list matches the saved optimizer state."""
        schedule = [tuple(e) for e in state["schedule"]]
        done = int(state["event_index"])
        # The event steps must agree, and so must the fractions of the events already made; those
        # still to come may differ (another dmao.total_fraction, continuing a shared prefix).
        if [s for s, _ in schedule] != [s for s, _ in self.schedule] or schedule[:done] != [
            tuple(e) for e in self.schedule[:done]
        ]:
            raise ValueError(
                f"DMAO state was saved with schedule {schedule}, this run has {self.schedule}; "
                f"total_steps or the dmao.* schedule settings changed"
            )
        self.event_index = done
        self.history = [dict(e) for e in state["history"]]
        self.tracker.load_state_dict(state["tracker"])
        self.ramp.load_state_dict(state.get("rewarmup", {}), self._names().values())
        # Before the first event the budget is the cost of the model as built, in this run's
        # budget unit (a shared prefix may have been trained with another); checkpoints written
        # before the run's budget was kept: the cost it has now.
        if self.event_index > 0:
            self.run_budget = int(state.get("run_budget", self.total_cost()))
        if state.get("frozen"):
            if optimizer is None:
                raise ValueError("DMAO state has frozen parameters: pass the optimizer too")
            self.frozen.refreeze([self.parameter(n) for n in state["frozen"]], optimizer)
        if self.gradmax is not None:  # a window opened at construction may be for a past event
            self.gradmax.stop()
            self.gradmax.clear()
        # Checkpoints written before grown components were protected have no counts: all mature.
        ages = state.get("measured_since_growth", {})
        for name, m in self.modules.items():
            saved = ages.get(name)
            if saved is not None and saved.shape != (m.num_components(),):
                raise ValueError(
                    f"DMAO state: {name} has {tuple(saved.shape)} growth counts, the module has "
                    f"{m.num_components()} components"
                )
            self.measured_since_growth[name] = (
                saved.clone().long()
                if saved is not None
                else torch.full((m.num_components(),), _MATURE, dtype=torch.int64)
            )
