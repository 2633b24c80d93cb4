"""DMAO events on a real tiny ConformerCTC: budget, optimizer, schedule, rollback, checkpoints."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from dmao.method import (
    DmaoAllocator,
    DmaoConfig,
    ScoreTracker,
    event_schedule,
)
from dmao.models.architecture import EncoderArchitecture
from dmao.models.conformer import ConformerCTC

NUM_FEATURES = 16


def _model(seed: int = 0) -> ConformerCTC:
    torch.manual_seed(seed)
    # d=32, 2 blocks: FFN 128 hidden (4 × 32 units), conv 32 channels (4 × 8), 4 heads of 8.
    return ConformerCTC(
        vocab_size=8,
        num_features=NUM_FEATURES,
        d_model=32,
        num_layers=2,
        head_dim=8,
        conv_kernel_size=3,
        frontend_channels=(4, 4, 4, 4),
    )


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 40, NUM_FEATURES, generator=g)
    feature_lens = torch.tensor([40, 32])
    targets = torch.randint(1, 8, (2, 4), generator=g)
    return features, feature_lens, targets, torch.tensor([4, 3])


def _backward(model: ConformerCTC, seed: int) -> None:
    features, feature_lens, targets, target_lens = _batch(seed)
    log_probs, out_lens = model(features, feature_lens)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lens, blank=0)
    loss.backward()


def _train(model, optimizer, allocator, steps: range) -> list[int]:
    """Run optimizer steps ``steps``; returns the steps after which an event happened."""
    events = []
    for step in steps:  # step = updates completed before this one
        optimizer.zero_grad()
        _backward(model, step)
        allocator.after_backward(step)
        optimizer.step()
        if allocator.maybe_reallocate(step + 1, optimizer) is not None:
            events.append(step + 1)
    return events


def _setup(seed: int = 0, **overrides):
    model = _model(seed)
    config = DmaoConfig(
        enabled=True, score_every_steps=1, last_event_fraction=0.5, total_fraction=0.15
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    config.__post_init__()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    allocator = DmaoAllocator(model.adaptable_modules(), config, total_steps=4)
    return model, optimizer, allocator


def _adaptable(model: ConformerCTC) -> int:
    return sum(p.numel() for m in model.adaptable_modules().values() for p in m.parameters())


def _same_objects(optimizer, model) -> bool:
    in_opt = [p for g in optimizer.param_groups for p in g["params"]]
    return {id(p) for p in in_opt} == {id(p) for p in model.parameters()} and len(in_opt) == len(
        list(model.parameters())
    )


def test_schedule_is_fractions_of_total_steps():
    assert event_schedule(1000, 0.15, 1, 0.15) == [(150, 0.15)]
    assert event_schedule(1000, 0.2, 4, 0.2) == [(50, 0.05), (100, 0.05), (150, 0.05), (200, 0.05)]
    with pytest.raises(ValueError, match="own step"):
        event_schedule(10, 0.15, 4, 0.15)


def test_ema_scores():
    model = _model()
    modules = model.adaptable_modules()
    tracker = ScoreTracker(modules, metric="magnitude", ema_beta=0.1, score_every_steps=10)
    for m in modules.values():
        m.set_granularity(4)
    assert tracker.maybe_measure(0) and not tracker.maybe_measure(5) and tracker.due(10)
    first = {k: v.clone() for k, v in tracker.scores.items()}
    name = "encoder.blocks.0.ff1"
    with torch.no_grad():
        modules[name].linear1.weight.mul_(2)
    tracker.measure(10)
    torch.testing.assert_close(tracker.scores[name], 0.1 * first[name] + 0.9 * 2 * first[name])
    tracker.reset()
    assert tracker.scores == {} and tracker.due(11)


@pytest.mark.parametrize("seed", range(20))
def test_event_invariants_for_many_seeds(seed: int):
    growth = ["copy", "copy_noise", "random", "function_preserving", "fresh"][seed % 5]
    metric = ["taylor", "gradient", "magnitude"][seed % 3]
    model, optimizer, allocator = _setup(seed, growth_init=growth, metric=metric)
    max_cost = max(m.component_cost() for m in model.adaptable_modules().values())
    before = _adaptable(model)
    events = _train(model, optimizer, allocator, range(0, 3))
    assert events == [2]  # 0.5 × 4 steps, and nowhere else
    event = allocator.history[0]
    after = _adaptable(model)
    assert abs(after - before) <= max_cost // 2 + 1  # exact budget: within half a component
    assert event["params_before"] == before and event["params_after"] == after
    assert event["dropped"] and event["duplicated"]
    assert model.architecture != model.default_architecture
    assert _same_objects(optimizer, model)
    # Every parameter trains after the event: finite gradient, and the update changes it.
    old = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    _backward(model, 100)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    optimizer.step()
    for (name, p), o in zip(model.named_parameters(), old, strict=True):
        assert not torch.equal(p, o), f"{name} did not change after the event"
    # A model rebuilt with the saved architecture loads the state dict and computes the same.
    rebuilt = ConformerCTC(**_rebuild_args(), architecture=model.architecture)
    rebuilt.load_state_dict(model.state_dict())
    features, feature_lens, _, _ = _batch(7)
    model.eval()
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(features, feature_lens)[0], model(features, feature_lens)[0])


def _rebuild_args() -> dict:
    """The constructor arguments of :func:`_model` (without the architecture)."""
    return dict(
        vocab_size=8,
        num_features=NUM_FEATURES,
        d_model=32,
        num_layers=2,
        head_dim=8,
        conv_kernel_size=3,
        frontend_channels=(4, 4, 4, 4),
    )


def test_fraction_zero_changes_nothing_bit_for_bit():
    model, optimizer, allocator = _setup(total_fraction=0.0)
    params = list(model.parameters())
    assert _train(model, optimizer, allocator, range(0, 3)) == [2]
    assert allocator.history[0]["dropped"] == [] and allocator.history[0]["duplicated"] == []
    assert list(model.parameters()) == params and _same_objects(optimizer, model)
    # The same run without DMAO, bit for bit: weights, buffers and optimizer state.
    twin = _model(0)
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=1e-3)
    for step in range(3):
        twin_opt.zero_grad()
        _backward(twin, step)
        twin_opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k]), k
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, twin_opt.state[q][key])


def test_resume_after_an_event_matches_the_uninterrupted_run():
    model, optimizer, allocator = _setup()
    _train(model, optimizer, allocator, range(0, 3))
    buffer = io.BytesIO()
    torch.save(
        {
            "architecture": model.architecture.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "dmao": allocator.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    # Resume: rebuild with the saved architecture BEFORE loading the state dicts.
    arch = EncoderArchitecture.from_dict(checkpoint["architecture"])
    resumed = ConformerCTC(**_rebuild_args(), architecture=arch)
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-3, weight_decay=1e-3)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    resumed_alloc = DmaoAllocator(resumed.adaptable_modules(), allocator.config, total_steps=4)
    resumed_alloc.load_state_dict(checkpoint["dmao"])
    for m, r in zip(
        model.adaptable_modules().values(), resumed.adaptable_modules().values(), strict=True
    ):
        assert m.dropout == r.dropout  # width-scaled dropout is re-applied on construction
    torch.manual_seed(123)  # the same dropout masks in both continuations
    _train(model, optimizer, allocator, range(3, 4))
    torch.manual_seed(123)
    _train(resumed, resumed_opt, resumed_alloc, range(3, 4))
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_adam_moments_follow_the_units():
    model, optimizer, allocator = _setup(duplicate_moments="copy")
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    ff = modules["encoder.blocks.0.ff1"]
    upc = ff.units_per_component  # 32 units per component, 4 components
    with torch.no_grad():
        ids = torch.arange(ff.width, dtype=torch.float32)
        optimizer.state[ff.linear1.weight]["exp_avg"].copy_(ids[:, None].expand(-1, 32))
        optimizer.state[ff.linear2.weight]["exp_avg_sq"].copy_(ids[None, :].expand(32, -1))
    step_before = optimizer.state[ff.linear1.weight]["step"].clone()
    # Rank: component 1 of this module lowest, component 2 highest, everything else in between.
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores["encoder.blocks.0.ff1"] = torch.tensor([1.0, 0.0, 9.0, 8.0])
    allocator.tracker.scores = scores
    allocator.tracker.last_measured_step = 0
    # Budget below one component: drop 1; grow what lands closest to the removed cost: one
    # component of the same size (the paper's rule would add 2 and 3, one component too many).
    event = allocator.reallocate(1, 0.01, optimizer)
    assert [(d["module"], d["component"]) for d in event.dropped] == [("encoder.blocks.0.ff1", 1)]
    assert [(d["module"], d["component"]) for d in event.duplicated] == [
        ("encoder.blocks.0.ff1", 2)
    ]
    assert event.params_after == event.params_before
    comps = [0, 2, 2, 3]
    expected = torch.cat([torch.arange(c * upc, (c + 1) * upc) for c in comps]).float()
    state1 = optimizer.state[ff.linear1.weight]
    assert torch.equal(state1["exp_avg"][:, 0], expected)
    assert torch.equal(optimizer.state[ff.linear2.weight]["exp_avg_sq"][0], expected)
    assert torch.equal(state1["step"], step_before)
    assert _same_objects(optimizer, model)


def test_zero_moments_for_new_copies():
    model, optimizer, allocator = _setup(duplicate_moments="zeros")
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores["encoder.blocks.1.mhsa"] = torch.tensor([0.0, 1.0, 8.0, 9.0])
    allocator.tracker.scores = scores
    mhsa = modules["encoder.blocks.1.mhsa"]
    old = optimizer.state[mhsa.qkv.weight]["exp_avg"].clone()
    allocator.reallocate(1, 0.005, optimizer)
    new = optimizer.state[mhsa.qkv.weight]["exp_avg"]  # heads [1, 2, 3, 3'], 8 rows each
    assert new.shape == old.shape  # one head dropped, one grown: the exact budget
    for g in range(3):  # the Q, K and V blocks of the fused projection, 32 rows each
        assert torch.equal(new[g * 32 : g * 32 + 24], old[g * 32 + 8 : g * 32 + 32])
        assert torch.equal(new[g * 32 + 24 : g * 32 + 32], torch.zeros(8, 32))


def test_allocator_state_dict_round_trip():
    model, optimizer, allocator = _setup()
    _train(model, optimizer, allocator, range(0, 3))
    state = allocator.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    other = DmaoAllocator(model.adaptable_modules(), allocator.config, total_steps=4)
    other.load_state_dict(loaded)
    again = other.state_dict()
    assert again["event_index"] == 1 and again["history"] == state["history"]
    for k, v in state["tracker"]["scores"].items():
        assert torch.equal(again["tracker"]["scores"][k], v)
    assert again["tracker"]["last_measured_step"] == state["tracker"]["last_measured_step"]
    with pytest.raises(ValueError, match="schedule"):
        DmaoAllocator(model.adaptable_modules(), allocator.config, total_steps=40).load_state_dict(
            loaded
        )


def test_failure_mid_apply_restores_model_and_optimizer(monkeypatch):
    model, optimizer, allocator = _setup()
    _train(model, optimizer, allocator, range(0, 1))
    optimizer.zero_grad()
    _backward(model, 1)
    allocator.after_backward(1)
    optimizer.step()  # the update that ends at the event step 2
    modules = model.adaptable_modules()
    plan = allocator.plan(0.15).new_components
    assert len(plan) >= 2
    victim = modules[list(plan)[1]]  # the second changed module: the first is already rebuilt
    real = victim.reselect

    def failing(units, growth):
        real(units, growth)
        raise RuntimeError("injected")

    monkeypatch.setattr(victim, "reselect", failing)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.named_parameters())
    opt_state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    groups = [list(g["params"]) for g in optimizer.param_groups]
    arch, dropouts = model.architecture, {n: m.dropout for n, m in modules.items()}
    with pytest.raises(RuntimeError, match="injected"):
        allocator.maybe_reallocate(2, optimizer)
    assert model.architecture == arch and allocator.event_index == 0
    assert list(model.named_parameters()) == params
    assert model.state_dict().keys() == state.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [list(g["params"]) for g in optimizer.param_groups] == groups
    assert {id(p) for p in optimizer.state} == set(opt_state)
    for p, s in optimizer.state.items():
        for k, v in s.items():
            assert torch.equal(v, opt_state[id(p)][k])
    assert {n: m.dropout for n, m in modules.items()} == dropouts
    monkeypatch.undo()
    assert allocator.maybe_reallocate(2, optimizer) is not None  # and then it works


def test_dropout_scales_with_width():
    model, optimizer, allocator = _setup(total_fraction=0.3)
    _train(model, optimizer, allocator, range(0, 2))
    for m in model.adaptable_modules().values():
        assert m.dropout == pytest.approx(min(0.1 * m.width / m.default_width, 0.9))


def test_a_module_can_lose_all_its_components():
    model, optimizer, allocator = _setup()
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    mhsa = modules["encoder.blocks.1.mhsa"]
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores["encoder.blocks.1.mhsa"] = torch.zeros(4)
    scores["encoder.blocks.0.ff1"] = torch.tensor([9.0, 8.0, 7.0, 6.0])
    allocator.tracker.scores = scores
    before = _adaptable(model)
    budget = 3.5 * mhsa.component_cost()  # the 4th head's drop exceeds it
    event = allocator.reallocate(1, budget / before, optimizer)
    assert mhsa.width == 0 and list(mhsa.parameters()) == []
    assert [d["module"] for d in event.dropped] == ["encoder.blocks.1.mhsa"] * 4
    assert model.architecture.layers[1].mhsa == 0 and mhsa.dropout == 0.0
    max_cost = max(m.component_cost() for m in modules.values())
    assert abs(_adaptable(model) - before) <= max_cost // 2 + 1
    assert _same_objects(optimizer, model)
    _train(model, optimizer, allocator, range(1, 2))  # trains on with the module skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_scores_are_measured_right_before_an_event():
    model, optimizer, allocator = _setup(score_every_steps=1000)
    _train(model, optimizer, allocator, range(0, 1))
    assert allocator.tracker.last_measured_step == 0  # the first step after a reset
    optimizer.zero_grad()
    _backward(model, 1)
    assert allocator.after_backward(1)  # not due, but the update ends at the event step 2
    assert allocator.tracker.num_measurements == 2


@pytest.mark.parametrize("frames", [20, 50])
def test_component_macs_match_torch_flop_counter(frames: int):
    """Our per-component MAC counts against torch's FLOP counter on the real modules (SDPA on
    its math backend, which the counter sees as the two batched matmuls it is)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = _model().eval()
    mask = torch.ones(1, frames, dtype=torch.bool)
    for name, module in model.adaptable_modules().items():
        module.set_granularity(4)
        x = torch.randn(1, frames, 32)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            module(x) if module.kind.startswith("ff") else module(x, mask)
        measured = counter.get_total_flops() / 2 / frames  # MACs per frame
        assert module.num_components() * module.component_macs(frames) == measured, name


def test_macs_budget_keeps_compute_constant():
    model, optimizer, allocator = _setup(budget_unit="macs", total_fraction=0.3)
    modules = model.adaptable_modules()
    assert allocator.context_frames == 375  # 15 s at 25 frames/s
    max_cost = max(m.component_macs(375) for m in modules.values())
    before = allocator.macs_per_second()
    _train(model, optimizer, allocator, range(0, 3))
    event = allocator.history[0]
    after = allocator.macs_per_second()
    assert event["budget_unit"] == "macs"
    assert event["macs_per_second_before"] == before and event["macs_per_second_after"] == after
    # The invariant of the params budget, in MACs: within one component (per second: x25).
    assert abs(after - before) <= 25 * (max_cost // 2 + 1)
    assert event["budget"] == pytest.approx(0.3 * before, abs=25)
    assert sum(e["cost"] for e in event["dropped"]) > event["budget"]
    assert _same_objects(optimizer, model)


def test_macs_budget_prices_heads_by_context_length():
    """A longer context makes heads dearer; FFN and conv units do not care."""
    _, _, short = _setup(budget_unit="macs", macs_context_seconds=1.0)
    _, _, long = _setup(budget_unit="macs", macs_context_seconds=60.0)
    for name, module in short.modules.items():
        cheap, dear = (
            module.component_macs(short.context_frames),
            module.component_macs(long.context_frames),
        )
        assert (cheap < dear) if module.kind == "mhsa" else (cheap == dear), name
