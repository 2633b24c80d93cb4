"""DMAO invariants after reallocation events, swept over every registered model family.

The allocator knows modules only through the AdaptableModule interface, so every family must give
the same guarantees as the Conformer (tests/method/test_allocator.py): the parameter budget holds
within one component, the optimizer holds exactly the model's parameters, every parameter keeps
training, a model rebuilt from the new architecture computes the same, function-preserving growth
keeps the outputs, and p = 0 changes nothing.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from dmao.method import DmaoAllocator, DmaoConfig, GrowthInit, components_to_units
from dmao.models.registry import build_model, list_models, model_arguments

FAMILIES = [name for name in list_models() if not re.search(r"_d\d+$", name)]
VOCAB, FEATURES = 8, 16


def _args(name: str) -> dict:
    """Tiny size: d=32, 2 blocks, FFN 128 (4 × 32 units), 4 heads of 8, kernel 3."""
    args = dict(
        vocab_size=VOCAB,
        num_features=FEATURES,
        d_model=32,
        num_layers=2,
        head_dim=8,
        conv_kernel_size=3,
        frontend_channels=(4, 4, 4, 4),
    )
    accepted = model_arguments(name)
    return {k: v for k, v in args.items() if k in accepted}


def _model(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(name, **{**_args(name), **overrides})


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 40, FEATURES, generator=g)
    targets = torch.randint(1, VOCAB, (2, 4), generator=g)
    return features, torch.tensor([40, 32]), targets, torch.tensor([4, 3])


def _backward(model, seed: int) -> None:
    features, feature_lens, targets, target_lens = _batch(seed)
    log_probs, out_lens = model(features, feature_lens)
    F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lens).backward()


def _train(model, optimizer, allocator, steps: range) -> list[int]:
    events = []
    for step in steps:
        optimizer.zero_grad()
        _backward(model, step)
        allocator.after_backward(step)
        optimizer.step()
        if allocator.maybe_reallocate(step + 1, optimizer) is not None:
            events.append(step + 1)
    return events


def _setup(name: str, seed: int = 0, total_steps: int = 4, **overrides):
    model = _model(name, seed)
    config = DmaoConfig(
        enabled=True, score_every_steps=1, last_event_fraction=0.5, total_fraction=0.15
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    config.__post_init__()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    allocator = DmaoAllocator(
        model.adaptable_modules(), config, total_steps, shared=model.adaptable_groups()
    )
    return model, optimizer, allocator


def _adaptable_params(model) -> int:
    return sum(p.numel() for m in model.adaptable_modules().values() for p in m.parameters())


def _same_objects(optimizer, model) -> bool:
    in_opt = [p for g in optimizer.param_groups for p in g["params"]]
    return {id(p) for p in in_opt} == {id(p) for p in model.parameters()} and len(in_opt) == len(
        list(model.parameters())
    )


CASES = [
    (name, growth, metric)
    for name in FAMILIES
    for growth, metric in [
        ("copy", "taylor"),
        ("copy_noise", "gradient"),
        ("random", "magnitude"),
        ("function_preserving", "taylor"),
    ]
]


@pytest.mark.parametrize(("name", "growth", "metric"), CASES)
def test_event_invariants(name, growth, metric):
    model, optimizer, allocator = _setup(name, growth_init=growth, metric=metric)
    max_cost = max(m.component_cost() for m in model.adaptable_modules().values())
    before = _adaptable_params(model)
    assert _train(model, optimizer, allocator, range(0, 3)) == [2]
    event = allocator.history[0]
    after = _adaptable_params(model)
    assert abs(after - before) <= max_cost // 2 + 1, "parameter budget not within half a component"
    assert event["params_before"] == before and event["params_after"] == after
    assert event["dropped"] and event["duplicated"]
    assert model.architecture != model.default_architecture
    assert _same_objects(optimizer, model), "optimizer does not hold exactly the model's params"
    # Every parameter trains after the event: finite gradient, and the update changes it.
    old = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    _backward(model, 100)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    optimizer.step()
    for (pname, p), o in zip(model.named_parameters(), old, strict=True):
        assert not torch.equal(p, o), f"{pname} did not change after the event"
    # A model rebuilt with the new architecture loads the state dict and computes the same.
    rebuilt = _model(name, seed=9, architecture=model.architecture)
    rebuilt.load_state_dict(model.state_dict())
    features, feature_lens, _, _ = _batch(7)
    model.eval()
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(features, feature_lens)[0], model(features, feature_lens)[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_macs_budget_holds_within_one_component(name):
    model, optimizer, allocator = _setup(name, budget_unit="macs")
    macs_before = allocator.macs_per_second()
    max_macs = max(
        m.component_macs(allocator.context_frames) for m in model.adaptable_modules().values()
    )
    assert _train(model, optimizer, allocator, range(0, 3)) == [2]
    delta = allocator.macs_per_second() - macs_before
    assert abs(delta) <= round((max_macs // 2 + 1) * allocator.frames_per_second)
    assert _same_objects(optimizer, model)


@pytest.mark.parametrize("mode", ["function_preserving", "fresh"])
@pytest.mark.parametrize("name", FAMILIES)
def test_function_preserving_growth_keeps_model_outputs(name, mode):
    model, optimizer, allocator = _setup(name, growth_init=mode)
    _train(model, optimizer, allocator, range(0, 1))  # trained BatchNorm statistics
    model.eval()
    features, feature_lens, _, _ = _batch(3)
    with torch.no_grad():
        reference = model(features, feature_lens)[0]
    # Growth (not dropping) preserves the function: duplicate the last component of every module.
    for m in model.adaptable_modules().values():
        comps = [*range(m.num_components()), m.num_components() - 1]
        units = components_to_units(torch.tensor(comps), m.units_per_component)
        m.reselect(units, GrowthInit(mode))
    assert all(
        layer[k] > default[k]
        for layer, default in zip(
            model.architecture.layers, model.default_architecture.layers, strict=True
        )
        for k in layer.kinds
    )
    with torch.no_grad():
        torch.testing.assert_close(model(features, feature_lens)[0], reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_fraction_zero_changes_nothing_bit_for_bit(name):
    model, optimizer, allocator = _setup(name, total_fraction=0.0)
    params = list(model.parameters())
    assert _train(model, optimizer, allocator, range(0, 3)) == [2]
    assert allocator.history[0]["dropped"] == [] and allocator.history[0]["duplicated"] == []
    assert list(model.parameters()) == params and _same_objects(optimizer, model)
    twin = _model(name, 0)
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


@pytest.mark.parametrize("name", FAMILIES)
def test_a_module_can_lose_all_its_components(name):
    model, optimizer, allocator = _setup(name)
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    victim_name = next(n for n in modules if n.startswith("encoder.blocks.1."))
    victim = modules[victim_name]
    keeper = next(n for n in modules if n != victim_name)
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores[victim_name] = torch.zeros(victim.num_components())
    scores[keeper] = torch.arange(modules[keeper].num_components(), 0, -1).float() + 5
    allocator.tracker.scores = scores
    before = _adaptable_params(model)
    # Just below the whole module's component cost: the last drop empties it.
    budget = (victim.num_components() - 0.5) * victim.component_cost()
    allocator.reallocate(1, budget / before, optimizer)
    assert victim.width == 0 and list(victim.parameters()) == []
    assert model.architecture.layers[1][victim.kind] == 0 and victim.dropout == 0.0
    max_cost = max(m.component_cost() for m in modules.values())
    assert abs(_adaptable_params(model) - before) <= max_cost // 2 + 1
    assert _same_objects(optimizer, model)
    _train(model, optimizer, allocator, range(1, 2))  # trains on with the module skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
