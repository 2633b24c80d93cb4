"""Fair events (issue 15): exact budget, protection of grown components over several events,
random ranking, cosine spacing, width-scaled dropout as a model property, E-Branchformer blocks
that lose both branches, and the budget check as an explicit error."""

from __future__ import annotations

import pytest
import torch
from test_allocator_models import _backward, _model, _same_objects, _setup, _train

from dmao.config import config_from_dict
from dmao.method import event_schedule
from dmao.method.allocator import BudgetError
from dmao.method.plan import ModuleGroup, plan_event
from dmao.models.architecture import EncoderArchitecture


def _allocator(name: str, seed: int = 0, total_steps: int = 4, **overrides):
    """A tiny model of family ``name``, its AdamW and an allocator with the E-Branchformer's
    shared merges declared (test_allocator_models._setup)."""
    return _setup(name, seed, total_steps, **overrides)


# --- the plan as numbers -------------------------------------------------------------------------


def test_plan_picks_the_last_component_that_lands_closest():
    # Two modules: A's components cost 10, B's cost 3. Budget 9: drop A0 (10 > 9).
    scores = {"A": torch.tensor([0.0, 5.0, 6.0]), "B": torch.tensor([9.0, 8.0, 7.0, 1.0])}
    counts = {"A": 3, "B": 4}
    costs = {"A": 10, "B": 3}
    plan = plan_event(scores, counts, costs, {"A": 0, "B": 0}, budget=9)
    assert [(d["module"], d["component"]) for d in plan.dropped] == [("A", 0)]
    # B0, B1, B2 (9) stay below 10; then adding A2 (+10) would end at Δ = +9, B3 (+3) at +2,
    # stopping at −1: the closest is to stop.
    assert [(d["module"], d["component"]) for d in plan.duplicated] == [
        ("B", 0),
        ("B", 1),
        ("B", 2),
    ]
    assert plan.delta == -1
    assert plan.new_components == {"A": [1, 2], "B": [0, 0, 1, 1, 2, 2, 3]}
    # With A costing 11, stopping is at −2 and B3 brings it to +1: B3 is added.
    plan = plan_event(scores, counts, {"A": 11, "B": 3}, {"A": 0, "B": 0}, budget=9)
    assert [d["component"] for d in plan.duplicated] == [0, 1, 2, 3] and plan.delta == 1


def test_plan_may_stop_short_when_that_is_closer():
    scores = {"A": torch.tensor([0.0, 9.0]), "B": torch.tensor([5.0])}
    plan = plan_event(scores, {"A": 2, "B": 1}, {"A": 10, "B": 16}, {"A": 0, "B": 0}, budget=5)
    # A0 (10) is dropped; the top component A1 (10) grows it back exactly.
    assert plan.delta == 0
    scores = {"A": torch.tensor([0.0, 1.0]), "B": torch.tensor([5.0])}
    plan = plan_event(scores, {"A": 2, "B": 1}, {"A": 10, "B": 16}, {"A": 0, "B": 0}, budget=5)
    # Top is B (16): Δ = +6 with it; A1 (10) gives Δ = 0: the closer one is taken.
    assert [(d["module"], d["component"]) for d in plan.duplicated] == [("A", 1)]
    assert plan.delta == 0


def test_protected_components_are_not_dropped_and_the_plan_says_when_it_cannot():
    scores = {"A": torch.tensor([0.0, 1.0, 2.0, 3.0])}
    protected = {"A": [True, False, False, False]}
    plan = plan_event(scores, {"A": 4}, {"A": 1}, {"A": 0}, budget=0.5, protected=protected)
    assert [d["component"] for d in plan.dropped] == [1]
    with pytest.raises(BudgetError, match="protected"):
        plan_event(scores, {"A": 4}, {"A": 1}, {"A": 0}, budget=2, protected={"A": [True] * 4})


def test_a_group_frees_its_shared_parameters_with_its_last_module():
    scores = {"g": torch.tensor([0.0]), "l": torch.tensor([0.1]), "f": torch.arange(9.0, 3.0, -1)}
    group = ModuleGroup(("g", "l"), shared_cost=7, name="merge")
    plan = plan_event(
        scores, {"g": 1, "l": 1, "f": 6}, {"g": 5, "l": 5, "f": 4}, {"g": 1, "l": 1, "f": 0},
        budget=6, groups=[group],
    )  # fmt: skip
    assert plan.freed_groups == ["merge"]
    assert plan.removed == 5 + 1 + 5 + 1 + 7


# --- several events with fresh growth ------------------------------------------------------------


@pytest.mark.parametrize("num_events", [2, 3])
@pytest.mark.parametrize("grace", [0, 10])
def test_fresh_growth_is_not_dropped_at_the_next_event_before_it_was_measured(num_events, grace):
    """With fresh growth a new copy scores exactly 0 (zero outgoing weights): without protection
    the next event drops it first; with ``grace_measurements=10`` (more than the 4 steps between
    events measure) it survives."""
    steps = 4 * num_events
    model, optimizer, allocator = _allocator(
        "conformer_ctc", total_steps=steps, growth_init="fresh", num_events=num_events,
        last_event_fraction=1.0, total_fraction=0.3, grace_measurements=grace,
    )  # fmt: skip
    new_copies: set[tuple[str, int]] = set()
    redropped = 0
    for step in range(steps):
        optimizer.zero_grad()
        _backward(model, step)
        allocator.after_backward(step)
        optimizer.step()
        ages = {n: a.clone() for n, a in allocator.measured_since_growth.items()}
        event = allocator.maybe_reallocate(step + 1, optimizer)
        if event is None:
            continue
        dropped = {(d["module"], d["component"]) for d in event.dropped}
        redropped += len(dropped & new_copies)
        if grace:
            for name, c in dropped:
                assert ages[name][c] >= grace, f"{name}[{c}] dropped after {ages[name][c]}"
        new_copies = {
            (n, c)
            for n, a in allocator.measured_since_growth.items()
            for c in (a == 0).nonzero().flatten().tolist()
        }
        assert new_copies, "the event grew nothing"
    assert len(allocator.history) == num_events
    if grace:
        assert redropped == 0
    else:
        assert redropped > 0  # the failure the protection exists for (issue 15: 7 of 7)


def test_growth_counts_survive_a_checkpoint():
    model, optimizer, allocator = _allocator(
        "conformer_ctc", total_steps=8, growth_init="fresh", num_events=2, last_event_fraction=1.0
    )
    _train(model, optimizer, allocator, range(0, 4))
    state = allocator.state_dict()
    _, _, other = _allocator(
        "conformer_ctc", total_steps=8, growth_init="fresh", num_events=2, last_event_fraction=1.0
    )
    other.modules = model.adaptable_modules()
    other.load_state_dict(state)
    for name, ages in allocator.measured_since_growth.items():
        assert torch.equal(other.measured_since_growth[name], ages)
    assert any((a == 0).any() for a in other.measured_since_growth.values())


# --- random ranking, cosine spacing ---------------------------------------------------------------


def test_random_ranking_is_seeded_and_ignores_the_scores():
    def run(seed: int):
        model, optimizer, allocator = _allocator("conformer_ctc", metric="random")
        torch.manual_seed(seed)
        _train(model, optimizer, allocator, range(0, 2))
        return model.architecture, allocator.history[0]

    arch_a, event_a = run(1)
    arch_b, _ = run(1)
    arch_c, _ = run(2)
    assert arch_a == arch_b and arch_a != arch_c
    # The ranking is the random draw (the tracker's placeholder scores are all 0).
    ranked = [d["score"] for d in event_a["dropped"] + event_a["duplicated"]]
    assert all(0.0 < s < 1.0 for s in ranked) and len(set(ranked)) == len(ranked)


def test_cosine_spacing_moves_most_early_and_sums_to_p():
    even = event_schedule(1000, 0.5, 4, 0.2)
    cosine = event_schedule(1000, 0.5, 4, 0.2, "cosine")
    assert [s for s, _ in even] == [s for s, _ in cosine] == [125, 250, 375, 500]
    fractions = [f for _, f in cosine]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] > 0.05 > fractions[-1]
    assert sum(fractions) == pytest.approx(0.2)
    assert [f for _, f in even] == [0.05] * 4


# --- width-scaled dropout belongs to the model ---


@pytest.mark.parametrize("name", ["conformer_ctc", "ebranchformer_ctc", "transformer_ctc"])
def test_a_model_built_from_a_dmao_architecture_has_the_dmao_runs_dropout(name):
    model, optimizer, allocator = _allocator(name, total_fraction=0.3)
    _train(model, optimizer, allocator, range(0, 2))
    assert model.architecture != model.default_architecture
    control = _model(name, seed=5, architecture=model.architecture, dropout=0.1)
    assert control.module_dropout() == model.module_dropout()
    assert len(set(control.module_dropout().values())) > 1
    assert sum(p.numel() for p in control.parameters()) == sum(
        p.numel() for p in model.parameters()
    )
    plain = _model(name, seed=5, architecture=model.architecture, dropout_scaling=False)
    assert set(plain.module_dropout().values()) == {0.1}


def test_old_configs_with_dmao_dropout_scaling_still_load():
    cfg = config_from_dict({"dmao": {"dropout_scaling": False}})
    assert cfg.model.dropout_scaling is False
    with pytest.raises(ValueError, match="disagree"):
        config_from_dict({"dmao": {"dropout_scaling": False}, "model": {"dropout_scaling": True}})


# --- E-Branchformer: both branches emptied --------------------------------------------------------


def test_ebranchformer_block_without_branches_frees_its_merge():
    model, optimizer, allocator = _allocator("ebranchformer_ctc")
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    block = model.encoder.blocks[1]
    merge_params = sum(p.numel() for p in block.merge.parameters())
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores["encoder.blocks.1.mhsa"] = torch.zeros(modules["encoder.blocks.1.mhsa"].num_components())
    scores["encoder.blocks.1.cgmlp"] = torch.zeros(
        modules["encoder.blocks.1.cgmlp"].num_components()
    )
    scores["encoder.blocks.0.ff1"] = torch.tensor([9.0, 8.0, 7.0, 6.0])
    allocator.tracker.scores = scores
    total_before = sum(p.numel() for p in model.parameters())
    branches = sum(p.numel() for n in ("mhsa", "cgmlp") for p in getattr(block, n).parameters())
    fraction = (branches + merge_params - 1) / allocator.total_cost()
    event = allocator.reallocate(1, fraction, optimizer)
    assert block.mhsa.width == 0 and block.cgmlp.width == 0 and block.merge is None
    assert event.freed == ["encoder.blocks.1.merge"]
    max_cost = max(m.component_cost() for m in modules.values())
    # The merge's parameters went back into the budget: the whole model stays within it.
    assert abs(sum(p.numel() for p in model.parameters()) - total_before) <= max_cost // 2 + 1
    assert _same_objects(optimizer, model)
    optimizer.zero_grad()
    _backward(model, 3)
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} gets no gradient"
    rebuilt = _model("ebranchformer_ctc", seed=3, architecture=model.architecture)
    assert rebuilt.encoder.blocks[1].merge is None
    rebuilt.load_state_dict(model.state_dict())


# --- the budget check is an error, not an assert ---


def test_a_broken_budget_raises_budget_error_and_rolls_back(monkeypatch):
    model, optimizer, allocator = _allocator("conformer_ctc")
    _train(model, optimizer, allocator, range(0, 1))
    ff = model.adaptable_modules()["encoder.blocks.0.ff1"]
    arch = model.architecture
    real = type(ff).component_cost
    # A module that under-reports its cost makes the plan grow too much: the check must catch it.
    monkeypatch.setattr(type(ff), "component_cost", lambda self: real(self) // 8)
    scores = {n: torch.ones(m.num_components()) for n, m in model.adaptable_modules().items()}
    scores["encoder.blocks.0.ff1"] = torch.tensor([9.0, 8.0, 7.0, 6.0])
    allocator.tracker.scores = scores
    with pytest.raises(BudgetError, match="half a component"):
        allocator.reallocate(1, 0.1, optimizer)
    assert model.architecture == arch and _same_objects(optimizer, model)
    assert isinstance(arch, EncoderArchitecture)


def test_plan_aims_at_the_runs_budget_not_the_events_start():
    scores = {"A": torch.tensor([0.0, 9.0, 8.0]), "B": torch.tensor([7.0, 6.0, 5.0, 4.0])}
    counts, costs, shared = {"A": 3, "B": 4}, {"A": 10, "B": 3}, {"A": 0, "B": 0}
    # The model is 6 below its run's budget: grow 6 more than the 10 removed.
    plan = plan_event(scores, counts, costs, shared, budget=9, target_delta=6)
    # A1 (10), then the closest of A2 (+10 → 20) and B0 (+3 → 13) to the target 16: B0.
    assert plan.removed == 10 and plan.added == 13
    assert abs(plan.delta - 6) <= 5  # within half a component of where the run should be
    assert plan_event(scores, counts, costs, shared, budget=9).delta == 0


@pytest.mark.parametrize("spacing", ["even", "cosine"])
def test_several_events_do_not_drift_from_the_budget(spacing):
    model, optimizer, allocator = _allocator(
        "conformer_ctc", total_steps=16, growth_init="fresh", num_events=4,
        last_event_fraction=1.0, total_fraction=0.4, event_spacing=spacing, grace_measurements=0,
    )  # fmt: skip
    budget = allocator.total_cost()
    half = max(m.component_cost() for m in model.adaptable_modules().values()) // 2 + 1
    for step in range(16):
        optimizer.zero_grad()
        _backward(model, step)
        allocator.after_backward(step)
        optimizer.step()
        if allocator.maybe_reallocate(step + 1, optimizer) is not None:
            assert abs(allocator.total_cost() - budget) <= half
    assert len(allocator.history) == 4 and allocator.run_budget == budget
