"""Growth that keeps the function and can pay during training: ``split``, ``gradmax`` and
``duplicate_moments=second`` (docs/dmao_api.md §6).

Invariants checked against production code (reselect, remap_optimizer, GradMaxCollector,
DmaoAllocator): the function is kept where claimed, the Adam state follows the documented rule,
the optimizer holds exactly the model's parameters and every one of them trains, the budget holds.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from test_allocator_models import (
    _adaptable_params,
    _backward,
    _batch,
    _model,
    _same_objects,
    _train,
)
from torch import nn

from dmao.method import DmaoAllocator, DmaoConfig, GrowthInit, components_to_units
from dmao.method.gradmax import GradMaxCollector
from dmao.method.optimizer_state import remap_optimizer
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.cgmlp import ConvolutionalGatingMLP
from dmao.models.convolution import ConvolutionModule
from dmao.models.feed_forward import FeedForward

D = 8
ALPHA = 0.6
UNITS = torch.tensor([0, 1, 1, 2, 3, 3])  # units 1 and 3 duplicated, each right after itself


def _module(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "ffn":
        return FeedForward(D, 4, dropout=0.0)
    if kind == "mhsa":
        return MultiHeadSelfAttention(D, 4, head_dim=2, dropout=0.0)
    module = (
        ConvolutionModule(D, 4, kernel_size=3, dropout=0.0)
        if kind == "conv"
        else ConvolutionalGatingMLP(D, 4, kernel_size=3, dropout=0.0)
    )
    with torch.no_grad():  # non-trivial statistics and gates, so both modes test the slicing
        module.norm.running_mean.normal_()
        module.norm.running_var.uniform_(0.5, 2.0)
        module.depthwise.weight.normal_()
    return module


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, FeedForward):
        return module(x)
    return module(x, torch.ones(x.shape[:2], dtype=torch.bool))


def _outgoing(module: nn.Module):
    s = next(s for s in module.unit_slices() if s.role == "output")
    return s, module.get_parameter(s.path)


KINDS = ["ffn", "conv", "mhsa", "cgmlp"]


# -- split -----------------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_split_keeps_the_output_and_the_twins_differ(kind: str, train: bool):
    module = _module(kind).train(train)
    x = torch.randn(2, 6, D)
    torch.manual_seed(5)
    before = _run(module, x)
    s, old_out = _outgoing(module)
    old_out = old_out.detach().clone()
    module.reselect(UNITS, GrowthInit("split", split_alpha=ALPHA))
    torch.manual_seed(5)
    torch.testing.assert_close(_run(module, x), before, atol=1e-6, rtol=0)
    _, new_out = _outgoing(module)
    size = s.unit_size
    for first, second, unit in [(1, 2, 1), (4, 5, 3)]:
        block = lambda j: new_out.narrow(s.dim, j * size, size)  # noqa: E731
        source = old_out.narrow(s.dim, unit * size, size)
        torch.testing.assert_close(block(first), ALPHA * source)
        torch.testing.assert_close(block(second), (1 - ALPHA) * source)
        assert not torch.equal(block(first), block(second)), "split twins must differ"
    torch.testing.assert_close(new_out.narrow(s.dim, 0, size), old_out.narrow(s.dim, 0, size))


def _ffn_loss(ffn: FeedForward, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((ffn(x) - target) ** 2).sum()


def _adam_ffn(fused: bool = False, steps: int = 2):
    ffn = _module("ffn")
    optimizer = torch.optim.AdamW(ffn.parameters(), lr=1e-2, weight_decay=1e-3, fused=fused)
    x, target = torch.randn(2, 5, D), torch.randn(2, 5, D)
    for _ in range(steps):
        optimizer.zero_grad()
        _ffn_loss(ffn, x, target).backward()
        optimizer.step()
    return ffn, optimizer, x, target


def test_split_scales_the_moments_of_everything_but_the_outgoing_weights():
    ffn, optimizer, _, _ = _adam_ffn()
    old = {name: {k: v.clone() for k, v in optimizer.state[p].items()}
           for name, p in ffn.named_parameters()}  # fmt: skip
    remaps = ffn.reselect(UNITS, GrowthInit("split", split_alpha=ALPHA))
    remap_optimizer(optimizer, remaps.values(), "copy")
    share = torch.tensor([1.0, ALPHA, 1 - ALPHA, 1.0, ALPHA, 1 - ALPHA])
    for name, dim, power in [("linear1.weight", 0, 1), ("linear1.bias", 0, 1)]:
        state = optimizer.state[ffn.get_parameter(name)]
        for key, p in [("exp_avg", power), ("exp_avg_sq", 2 * power)]:
            expected = old[name][key].index_select(dim, UNITS)
            expected = expected * (share**p).reshape([-1] + [1] * (expected.dim() - 1))
            torch.testing.assert_close(state[key], expected, rtol=1e-6, atol=0)
        assert torch.equal(state["step"], old[name]["step"])
    # The outgoing weights' gradient does not depend on the split: moments are plain copies.
    state2 = optimizer.state[ffn.linear2.weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state2[key], old["linear2.weight"][key].index_select(1, UNITS))
    # Parameters of no unit keep their object and their state.
    assert torch.equal(optimizer.state[ffn.linear2.bias]["exp_avg"], old["linear2.bias"]["exp_avg"])


def test_split_scales_the_gradients_as_the_moment_rule_assumes():
    """Why the moments are scaled: the unit's other entries get its share of the gradient."""
    ffn = _module("ffn")
    x, target = torch.randn(2, 5, D), torch.randn(2, 5, D)
    _ffn_loss(ffn, x, target).backward()
    g1, g2 = ffn.linear1.weight.grad.clone(), ffn.linear2.weight.grad.clone()
    ffn.reselect(UNITS, GrowthInit("split", split_alpha=ALPHA))
    _ffn_loss(ffn, x, target).backward()
    share = torch.tensor([1.0, ALPHA, 1 - ALPHA, 1.0, ALPHA, 1 - ALPHA])
    torch.testing.assert_close(ffn.linear1.weight.grad, g1[UNITS] * share[:, None])
    torch.testing.assert_close(ffn.linear2.weight.grad, g2[:, UNITS])


def test_adam_moves_split_twins_incoming_weights_alike():
    """A documented limit: Adam's update is invariant to a per-coordinate gradient scale, so with
    consistently scaled moments the twins' incoming weights first get the same update; they
    separate as their outgoing columns stop being proportional (and through dropout masks)."""
    ffn, optimizer, x, target = _adam_ffn()
    remaps = ffn.reselect(UNITS, GrowthInit("split", split_alpha=ALPHA))
    remap_optimizer(optimizer, remaps.values(), "copy")
    w = ffn.linear1.weight.detach().clone()
    optimizer.zero_grad()
    _ffn_loss(ffn, x, target).backward()
    optimizer.step()
    delta = ffn.linear1.weight.detach() - w
    torch.testing.assert_close(delta[1], delta[2], atol=1e-6, rtol=1e-4)
    assert not torch.equal(ffn.linear2.weight[:, 1], ffn.linear2.weight[:, 2])


@pytest.mark.parametrize("growth", ["copy", "split"])
def test_fused_adamw_state_follows_the_units(growth: str):
    try:
        ffn, optimizer, x, target = _adam_ffn(fused=True)
    except (RuntimeError, ValueError) as error:  # no fused AdamW on this build
        pytest.skip(f"fused AdamW unavailable: {error}")
    ids = torch.arange(4, dtype=torch.float32)
    with torch.no_grad():
        optimizer.state[ffn.linear1.weight]["exp_avg"].copy_(ids[:, None].expand(-1, D))
        optimizer.state[ffn.linear2.weight]["exp_avg_sq"].copy_(ids[None, :].expand(D, -1))
    remaps = ffn.reselect(UNITS, GrowthInit(growth, split_alpha=ALPHA))
    remap_optimizer(optimizer, remaps.values(), "copy")
    share = torch.tensor([1.0, ALPHA, 1 - ALPHA, 1.0, ALPHA, 1 - ALPHA])
    share = share if growth == "split" else torch.ones(6)
    expected = UNITS.float() * share
    torch.testing.assert_close(optimizer.state[ffn.linear1.weight]["exp_avg"][:, 0], expected)
    assert torch.equal(optimizer.state[ffn.linear2.weight]["exp_avg_sq"][0], UNITS.float())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in ffn.parameters()}
    old = [p.detach().clone() for p in ffn.parameters()]
    optimizer.zero_grad()
    _ffn_loss(ffn, x, target).backward()
    optimizer.step()  # the fused kernel accepts the remapped state
    for p, o in zip(ffn.parameters(), old, strict=True):
        assert torch.isfinite(p).all() and not torch.equal(p, o)


# -- duplicate_moments=second ----------------------------------------------------------------


@pytest.mark.parametrize("growth", ["copy", "fresh", "split"])
def test_second_moments_for_new_copies(growth: str):
    ffn, optimizer, _, _ = _adam_ffn()
    old = {name: {k: v.clone() for k, v in optimizer.state[p].items()}
           for name, p in ffn.named_parameters()}  # fmt: skip
    units = torch.tensor([0, 1, 2, 3, 1])  # the copy of unit 1 is the last position
    remaps = ffn.reselect(units, GrowthInit(growth, split_alpha=ALPHA))
    remap_optimizer(optimizer, remaps.values(), "second")
    share = ALPHA if growth == "split" else 1.0
    for name, dim in [("linear1.weight", 0), ("linear1.bias", 0), ("linear2.weight", 1)]:
        state = optimizer.state[ffn.get_parameter(name)]
        copy = state["exp_avg_sq"].narrow(dim, 4, 1)
        original = old[name]["exp_avg_sq"].narrow(dim, 1, 1)
        split = (1 - ALPHA) if growth == "split" and name != "linear2.weight" else 1.0
        torch.testing.assert_close(copy, original * split**2, rtol=1e-6, atol=0)
        assert not state["exp_avg"].narrow(dim, 4, 1).any(), f"{name}: first moment must be 0"
        kept = old[name]["exp_avg"].narrow(dim, 0, 4)
        if growth == "split" and name != "linear2.weight":
            factor = torch.tensor([1.0, share, 1.0, 1.0])
            kept = kept * factor.reshape([-1] + [1] * (kept.dim() - 1))
        torch.testing.assert_close(state["exp_avg"].narrow(dim, 0, 4), kept, rtol=1e-6, atol=0)
        assert torch.equal(state["step"], old[name]["step"])


@pytest.mark.parametrize("moments", ["zeros", "second"])
def test_zero_moments_overshoot_as_the_config_docstring_says(moments: str):
    """DmaoConfig.duplicate_moments: with a kept step count, zero moments give up to ~1.55× too
    large updates at β = (0.9, 0.98); the original's second moment gives none (torch's AdamW)."""
    lr, g = 1e-3, 0.5
    p = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.98), eps=1e-16, weight_decay=0.0)
    p.grad = torch.full_like(p, g)
    optimizer.step()
    state = optimizer.state[p]
    state["step"].fill_(10_000)  # a unit born late in training: bias corrections ≈ 1
    state["exp_avg"].zero_()
    state["exp_avg_sq"].fill_(0.0 if moments == "zeros" else g * g)
    ratios = []
    for _ in range(40):
        before = p.detach().clone()
        p.grad = torch.full_like(p, g)
        optimizer.step()
        ratios.append(float((before - p.detach()).abs() / lr))
    n = torch.arange(1, 41, dtype=torch.float64)
    if moments == "zeros":
        expected = (1 - 0.9**n) / (1 - 0.98**n).sqrt()
        torch.testing.assert_close(
            torch.tensor(ratios, dtype=torch.float64), expected, rtol=1e-4, atol=0
        )
        assert 1.5 < max(ratios) < 1.6 and ratios.index(max(ratios)) + 1 == 14
    else:
        assert max(ratios) <= 1.0 + 1e-5


# -- GradMax ---------------------------------------------------------------------------------


def _no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def _planted(kind: str, steps: int = 3):
    """Train-mode passes whose ∂L/∂z is c_t · u for a fixed unit vector u: E[∂L/∂z hᵀ] = u wᵀ is
    rank 1 and its top left singular vector is ±u."""
    module = _module(kind)
    u = F.normalize(torch.randn(D), dim=0)
    norm = module.norm
    collector = GradMaxCollector()
    assert collector.start({"m": module}) == ["m"]
    expected, frames = torch.zeros(D, D), 0
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(2, 5, D, generator=g)
        c = torch.randn(2, 5, 1, generator=g)
        (_run(module, x) * (c * u)).sum().backward()
        with torch.no_grad():
            h = norm(x).reshape(-1, D)
        expected += (c * u).reshape(-1, D).T @ h
        frames += h.shape[0]
    with torch.no_grad():
        _run(module, torch.randn(2, 5, D))  # no_grad passes add nothing
    collector.stop()
    assert _no_hooks(module), "hooks must be removed by stop()"
    matrix = collector.matrix("m")
    torch.testing.assert_close(matrix, expected / frames)
    assert collector.frames("m") == frames
    return module, u, matrix


@pytest.mark.parametrize("kind", ["ffn", "mhsa"])
def test_gradmax_keeps_the_function_and_aligns_with_the_planted_gradient(kind: str):
    module, u, matrix = _planted(kind)
    module.zero_grad()
    x = torch.randn(2, 6, D)
    module.eval()
    before = _run(module, x)
    old = {k: v.clone() for k, v in module.state_dict().items()}
    s, old_out = _outgoing(module)
    kept_norm = old_out.detach().norm(dim=0).mean()
    module.reselect(UNITS, GrowthInit("gradmax", gradient_outer=matrix, gradmax_scale=0.5))
    torch.testing.assert_close(_run(module, x), before, atol=1e-6, rtol=0)
    torch.testing.assert_close(_run(module.train(), x), before, atol=1e-6, rtol=0)  # dropout 0
    size = s.unit_size
    new = torch.tensor([2, 5])  # the positions of the copies of units 1 and 3
    rows = (new[:, None] * size + torch.arange(size)).reshape(-1)
    # A (path, g) entry zeroes group g only (the V block of the fused QKV projection).
    zeroed = [(e, None) if isinstance(e, str) else e for e in module.GRADMAX_ZERO]
    zero_at = [(p, rows if g is None else g * len(UNITS) * size + rows) for p, g in zeroed]
    for path, at in zero_at:
        assert not module.get_parameter(path)[at].any(), f"{path}: new incoming must be 0"
    if kind == "mhsa":  # Q and K rows (groups 0 and 1) copied from the duplicated heads 1 and 3
        qkv, old_rows = module.get_parameter("qkv.weight"), torch.tensor([2, 3, 6, 7])
        for g in (0, 1):
            expected = old["qkv.weight"][g * 4 * size + old_rows]
            assert torch.equal(qkv[g * len(UNITS) * size + rows], expected)
    columns = module.get_parameter(s.path).detach()[:, rows]  # (D, new positions)
    torch.testing.assert_close(columns.norm(dim=0), torch.full((len(rows),), 0.5 * kept_norm))
    cosine = F.cosine_similarity(columns[:, 0], u, dim=0)
    torch.testing.assert_close(cosine.abs(), torch.tensor(1.0))
    gram = columns.T @ columns / (0.5 * kept_norm) ** 2
    torch.testing.assert_close(gram, torch.eye(len(rows)), atol=1e-5, rtol=0)
    # The new incoming weights get a non-zero gradient at once (they are not at a saddle).
    (_run(module, x) * torch.randn(2, 6, D)).sum().backward()
    zero_path, at = zero_at[0]
    assert module.get_parameter(zero_path).grad[at].abs().sum() > 0


def test_gradmax_gradient_is_the_closed_form_for_the_ffn():
    """∂L/∂W1_new = SiLU'(0) · W2_newᵀ · Σ ∂L/∂z hᵀ = ½ W2_newᵀ M, what GradMax maximises."""
    ffn, u, matrix = _planted("ffn", steps=1)
    ffn.reselect(UNITS, GrowthInit("gradmax", gradient_outer=matrix))
    ffn.zero_grad()
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 5, D, generator=g), torch.randn(2, 5, 1, generator=g)
    (ffn(x) * (c * u)).sum().backward()
    total = matrix * 10  # Σ over the 10 frames of this batch
    expected = 0.5 * ffn.linear2.weight.detach()[:, [2, 5]].T @ total
    torch.testing.assert_close(ffn.linear1.weight.grad[[2, 5]], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["conv", "cgmlp"])
def test_gradmax_falls_back_to_fresh_for_batchnorm_modules(kind: str):
    module = _module(kind).eval()
    x = torch.randn(2, 6, D)
    before = _run(module, x)
    assert GradMaxCollector().start({"m": module}) == [], "no hooks for unsupported modules"
    assert _no_hooks(module)
    module.reselect(UNITS, GrowthInit("gradmax"))  # no statistics needed
    torch.testing.assert_close(_run(module, x), before, atol=1e-6, rtol=0)
    _, out = _outgoing(module)
    assert not out[:, [2, 5]].any(), "fresh growth: zero outgoing weights"


def test_gradmax_without_statistics_is_refused():
    with pytest.raises(ValueError, match="gradient_outer"):
        _module("ffn").reselect(UNITS, GrowthInit("gradmax"))


# -- through the allocator, on tiny models ---------------------------------------------------


def _setup(name: str = "conformer_ctc", dropout: float = 0.1, **overrides):
    model = _model(name, dropout=dropout)
    config = DmaoConfig(
        enabled=True, score_every_steps=1, last_event_fraction=0.5, total_fraction=0.15
    )
    config = dataclasses.replace(config, **overrides)  # validated again in __post_init__
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    allocator = DmaoAllocator(model.adaptable_modules(), config, total_steps=4)
    return model, optimizer, allocator


EVENT_CASES = [
    ("conformer_ctc", "split", "copy"),
    ("conformer_ctc", "split", "second"),
    ("conformer_ctc", "gradmax", "copy"),
    ("conformer_ctc", "gradmax", "second"),
    ("conformer_ctc", "fresh", "second"),
    ("ebranchformer_ctc", "gradmax", "second"),
    ("transformer_ctc", "split", "zeros"),
]


@pytest.mark.parametrize(("name", "growth", "moments"), EVENT_CASES)
def test_event_invariants(name: str, growth: str, moments: str):
    # gradmax window of 2 steps before the event at step 2: open from construction on.
    model, optimizer, allocator = _setup(
        name, growth_init=growth, duplicate_moments=moments, growth_gradmax_steps=2
    )
    modules = model.adaptable_modules()
    max_cost = max(m.component_cost() for m in modules.values())
    before = _adaptable_params(model)
    assert _train(model, optimizer, allocator, range(0, 1)) == []
    if growth == "gradmax":
        assert allocator.gradmax.active
        tapped = [n for n in modules if allocator.gradmax.frames(n)]
        assert tapped and all(modules[n].kind in ("ff1", "ff2", "ff", "mhsa") for n in tapped)
    assert _train(model, optimizer, allocator, range(1, 2)) == [2]
    event = allocator.history[0]
    assert event["dropped"] and event["duplicated"]
    after = _adaptable_params(model)
    assert abs(after - before) <= max_cost // 2 + 1, "parameter budget not within half a component"
    assert _same_objects(optimizer, model), "optimizer does not hold exactly the model's params"
    if growth == "gradmax":
        assert not allocator.gradmax.active and _no_hooks(model), "GradMax hooks must be gone"
    old = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    _backward(model, 100)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets no gradient after the event"
    optimizer.step()
    for (pname, p), o in zip(model.named_parameters(), old, strict=True):
        assert not torch.equal(p, o), f"{pname} did not change after the event"


def _copies(event, module: str, components: int) -> list[tuple[int, int]]:
    """(old component, position of its new copy) for every component the event duplicated in
    ``module`` (the plan puts a copy right after its original)."""
    dropped = {d["component"] for d in event.dropped if d["module"] == module}
    grown = {d["component"] for d in event.duplicated if d["module"] == module}
    position, pairs = 0, []
    for c in range(components):
        if c not in dropped:
            position += 1
            if c in grown:
                pairs.append((c, position))
                position += 1
    return pairs


@pytest.mark.parametrize("growth", ["copy", "fresh", "gradmax"])
def test_allocator_honours_second_moments(growth: str):
    model, optimizer, allocator = _setup(
        growth_init=growth, duplicate_moments="second", growth_gradmax_steps=4
    )
    _train(model, optimizer, allocator, range(0, 1))
    modules = model.adaptable_modules()
    name = "encoder.blocks.0.ff1"
    ff = modules[name]
    old_sq = optimizer.state[ff.linear1.weight]["exp_avg_sq"].clone()
    scores = {n: torch.full((m.num_components(),), 1.0) for n, m in modules.items()}
    scores[name] = torch.tensor([1.0, 0.0, 9.0, 8.0])  # drop component 1, grow 2 (and 3)
    allocator.tracker.scores = scores
    event = allocator.reallocate(1, 0.01, optimizer)
    pairs = _copies(event, name, 4)
    assert pairs, "the event must duplicate a component of ff1"
    upc = ff.units_per_component
    state = optimizer.state[ff.linear1.weight]
    for component, position in pairs:
        rows = slice(position * upc, (position + 1) * upc)
        assert not state["exp_avg"][rows].any(), "first moment of a new copy must be 0"
        original = old_sq[component * upc : (component + 1) * upc]
        assert torch.equal(state["exp_avg_sq"][rows], original), "second moment: the original's"
    assert _same_objects(optimizer, model)


@pytest.mark.parametrize("growth", ["split", "gradmax"])
@pytest.mark.parametrize("name", ["conformer_ctc", "ebranchformer_ctc", "transformer_ctc"])
def test_growth_keeps_model_outputs(name: str, growth: str):
    model, optimizer, allocator = _setup(
        name, dropout=0.0, growth_init=growth, growth_gradmax_steps=4
    )
    _train(model, optimizer, allocator, range(0, 1))  # trained BatchNorm statistics, statistics
    if allocator.gradmax is not None:
        allocator.gradmax.stop()
    features, feature_lens, _, _ = _batch(3)
    twin = copy.deepcopy(model)  # a train-mode pass updates BatchNorm's running statistics
    with torch.no_grad():
        reference = {False: model.eval()(features, feature_lens)[0],
                     True: twin.train()(features, feature_lens)[0]}  # fmt: skip
    # Growth only (dropping changes the function by design): duplicate every module's last
    # component, with the growth the allocator would use for that module.
    for n, m in model.adaptable_modules().items():
        comps = [*range(m.num_components()), m.num_components() - 1]
        m.reselect(components_to_units(torch.tensor(comps), m.units_per_component),
                   allocator._growth_for(n))  # fmt: skip
    with torch.no_grad():
        for mode in (False, True):
            output = model.train(mode)(features, feature_lens)[0]
            torch.testing.assert_close(output, reference[mode], atol=1e-5, rtol=0)


def test_gradmax_window_opens_before_the_event_and_closes_at_it():
    model, optimizer, allocator = _setup(growth_init="gradmax", growth_gradmax_steps=1)
    assert not allocator.gradmax.active  # event at step 2, window of 1: opens after update 1
    _train(model, optimizer, allocator, range(0, 1))
    assert allocator.gradmax.active and not allocator.gradmax.frames("encoder.blocks.0.ff1")
    assert _train(model, optimizer, allocator, range(1, 2)) == [2]
    assert not allocator.gradmax.active and _no_hooks(model)  # the last event: no new window
