"""Learning-rate re-warm-up after an event, and resume after events that carry extra state
(a re-warm-up in progress, parameters frozen by a reference event)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from test_allocator import _backward, _model, _rebuild_args, _same_objects, _train

from dmao.method import DmaoAllocator, DmaoConfig
from dmao.method.rewarmup import UpdateRamp
from dmao.models.architecture import EncoderArchitecture
from dmao.models.conformer import ConformerCTC


def _setup(seed: int = 0, **overrides):
    model = _model(seed)
    config = DmaoConfig(
        enabled=True, score_every_steps=1, last_event_fraction=0.5, total_fraction=0.15,
        **{"growth_init": "fresh", **overrides},
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    return model, optimizer, DmaoAllocator(model.adaptable_modules(), config, total_steps=8)


def _one_step(model, optimizer, allocator, step: int) -> dict[str, torch.Tensor]:
    """One update; returns the change of every parameter (by name)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.zero_grad()
    _backward(model, step)
    allocator.after_backward(step)
    optimizer.step()
    allocator.maybe_reallocate(step + 1, optimizer)
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


@pytest.mark.parametrize("scope", ["new", "all"])
def test_rewarmup_scales_the_updates_of_new_units_by_j_over_k(scope):
    """Two runs identical up to the event, one with a 4-step re-warm-up: on the first step after
    the event the ramped entries move exactly 1/4 as far, every other entry exactly as far."""
    ramped, ramped_opt, ramped_alloc = _setup(rewarmup_steps=4, rewarmup_scope=scope)
    plain, plain_opt, plain_alloc = _setup()
    torch.manual_seed(0)
    assert _train(ramped, ramped_opt, ramped_alloc, range(0, 4)) == [4]
    torch.manual_seed(0)
    assert _train(plain, plain_opt, plain_alloc, range(0, 4)) == [4]
    targets = ramped_alloc.ramp.targets
    assert targets and ramped_alloc.ramp.active
    torch.manual_seed(1)
    got = _one_step(ramped, ramped_opt, ramped_alloc, 4)
    torch.manual_seed(1)
    want = _one_step(plain, plain_opt, plain_alloc, 4)
    names = {id(p): n for n, p in ramped.named_parameters()}
    ramped_entries = 0
    for key, (dim, mask) in targets.items():
        name = names[id(ramped_alloc.parameter(key))]
        scale = torch.ones_like(want[name])
        if mask is None:
            scale[...] = 0.25
        else:
            shape = [1] * scale.dim()
            shape[dim] = -1
            scale = torch.where(mask.reshape(shape), 0.25, 1.0).expand_as(scale)
        ramped_entries += int((scale != 1).sum())
        torch.testing.assert_close(
            got[name], want[name] * scale, rtol=1e-4, atol=2e-7
        )  # p ± update rounds at ~1e-7 (updates ~1e-3)
    assert ramped_entries > 0
    untouched = set(want) - {names[id(ramped_alloc.parameter(k))] for k in targets}
    for name in untouched:
        torch.testing.assert_close(
            got[name], want[name], rtol=1e-4, atol=2e-7
        )  # p ± update rounds at ~1e-7 (updates ~1e-3)
    for step in range(5, 8):
        _one_step(ramped, ramped_opt, ramped_alloc, step)
    assert not ramped_alloc.ramp.active and ramped_alloc.ramp.targets == {}


def _checkpoint(model, optimizer, allocator) -> dict:
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
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "overrides",
    [
        {"rewarmup_steps": 4},
        {"growth_init": "reference", "reference_optimizer": "frozen"},
    ],
    ids=["rewarmup", "reference-frozen"],
)
def test_resume_right_after_the_event_matches_the_uninterrupted_run(overrides):
    model, optimizer, allocator = _setup(**overrides)
    _train(model, optimizer, allocator, range(0, 4))
    state = _checkpoint(model, optimizer, allocator)
    arch = EncoderArchitecture.from_dict(state["architecture"])
    resumed = ConformerCTC(**_rebuild_args(), architecture=arch)
    resumed.load_state_dict(state["model"])
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-3, weight_decay=1e-3)
    resumed_alloc = DmaoAllocator(
        resumed.adaptable_modules(), copy.deepcopy(allocator.config), total_steps=8
    )
    resumed_alloc.load_state_dict(state["dmao"], resumed_opt)  # before the optimizer state
    resumed_opt.load_state_dict(state["optimizer"])
    frozen = len(allocator.frozen.params)
    assert len(resumed_alloc.frozen.params) == frozen
    if overrides.get("growth_init") == "reference":
        assert frozen > 0 and not _same_objects(resumed_opt, resumed)
    torch.manual_seed(7)
    _train(model, optimizer, allocator, range(4, 7))
    torch.manual_seed(7)
    _train(resumed, resumed_opt, resumed_alloc, range(4, 7))
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_loading_frozen_state_without_the_optimizer_is_refused():
    model, optimizer, allocator = _setup(growth_init="reference")
    _train(model, optimizer, allocator, range(0, 4))
    state = allocator.state_dict()
    assert state["frozen"]
    with pytest.raises(ValueError, match="pass the optimizer"):
        allocator.load_state_dict(state)


def test_an_inactive_ramp_stays_inactive_when_loaded_into_a_longer_one():
    """A checkpoint of a run without re-warm-up (steps 0, done 0) continued by a run with it,
    before any event (a shared prefix): the loaded ramp is inactive until the event starts it."""
    saved = UpdateRamp(0).state_dict()
    ramp = UpdateRamp(5)
    ramp.load_state_dict(saved, names=[])
    assert not ramp.active and ramp.done == 5
    ramp.start({"w": (None, None)})
    assert ramp.active and ramp.done == 0
