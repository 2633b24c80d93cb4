"""growth_init=reference and perturb_only (dmao.method.reference, docs/reference_mode.md).

The reference side of each parity test is a transcription of the authors' reshape-based indexing
(rwth-i6/i6_models, branch jing-dynamic-encoder-size, commit e7395bf,
i6_models/parts/dynamic_adaptable_conformer/*.py, ``double_and_prune_params``), written here
independently of the production code, on the same old tensors and the same component selection.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dmao.method import DmaoConfig, GrowthInit, components_to_units
from dmao.method.reference import (
    FrozenParameters,
    RebuiltRemap,
    ReferenceSettings,
    apply_reference_optimizer,
    reference_reselect,
)
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.cgmlp import ConvolutionalGatingMLP
from dmao.models.convolution import ConvolutionModule
from dmao.models.feed_forward import FeedForward

D = 8
NO_RESET = ReferenceSettings(reset_uncopied=False)
CLEAN = ReferenceSettings(
    ffn_pairing="contiguous", glu_mixing=False, norm_reset=False, reset_uncopied=False
)
# Drop, keep, duplicate (a duplicate right after its original, as the reference's sorted list).
SELECTIONS = [[0, 1, 1, 3], [0, 1, 2, 3, 3], [2, 3], [0, 0, 1, 1, 2, 3]]


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _ffn(hidden: int = 16, chunks: int = 4) -> FeedForward:
    torch.manual_seed(0)
    ffn = FeedForward(D, hidden)
    ffn.units_per_component = hidden // chunks
    return ffn


def _conv(channels: int = 8, chunks: int = 4) -> ConvolutionModule:
    torch.manual_seed(0)
    conv = ConvolutionModule(D, channels, kernel_size=3)
    with torch.no_grad():
        conv.norm.weight.uniform_(0.5, 1.5)
        conv.norm.bias.normal_()
        conv.norm.running_mean.normal_()
        conv.norm.running_var.uniform_(0.5, 2.0)
    conv.units_per_component = channels // chunks
    return conv


def _mhsa(heads: int = 4) -> MultiHeadSelfAttention:
    torch.manual_seed(0)
    return MultiHeadSelfAttention(D, heads, head_dim=2)


# -- transcriptions of the reference indexing ----------------------------------------------------


def _reference_ffn(old: dict, selected: list[int], new_hidden: int) -> dict:
    """feedforward.py ``double_and_prune_params``: W1 contiguous, W2 strided."""
    input_dim = old["linear1.weight"].shape[1]
    dim_per_chunk = new_hidden // len(selected)
    w1 = old["linear1.weight"].reshape(-1, dim_per_chunk, input_dim)  # (C, F, F)
    b1 = old["linear1.bias"].reshape(-1, dim_per_chunk)  # (C, F)
    w2 = old["linear2.weight"].reshape(input_dim, dim_per_chunk, -1)  # (F, F, 4)
    return {
        "linear1.weight": w1[selected, :, :].reshape(-1, input_dim),
        "linear1.bias": b1[selected, :].flatten(),
        "linear2.weight": w2[:, :, selected].reshape(input_dim, -1),
    }


def _reference_conv(old: dict, selected: list[int], new_channels: int, kernel: int) -> dict:
    """convolution_decompose.py ``double_and_prune_params`` (the norm is recreated at 1 / 0)."""
    input_dim = old["pointwise1.weight"].shape[1]
    per_chunk = new_channels / len(selected)
    prior = int(old["pointwise2.weight"].shape[1] // per_chunk)
    pw1 = old["pointwise1.weight"].reshape(prior, -1, input_dim)[selected, :, :]
    pw1_b = old["pointwise1.bias"].reshape(prior, -1)[selected, :]
    dw = old["depthwise.weight"].reshape(prior, -1, 1, kernel)[selected, :, :, :]
    dw_b = old["depthwise.bias"].reshape(prior, -1)[selected, :]
    pw2 = old["pointwise2.weight"].reshape(input_dim, prior, -1)[:, selected, :]
    return {
        "pointwise1.weight": pw1.reshape(2 * new_channels, input_dim),
        "pointwise1.bias": pw1_b.flatten(),
        "depthwise.weight": dw.reshape(new_channels, 1, kernel),
        "depthwise.bias": dw_b.flatten(),
        "pointwise2.weight": pw2.reshape(input_dim, -1),
        "norm.weight": torch.ones(new_channels),
        "norm.bias": torch.zeros(new_channels),
    }


def _reference_mhsa(old: dict, selected: list[int], heads: int, head_dim: int) -> dict:
    """mhsa.py ``double_and_prune_params``: heads consistent, out columns copied, not halved.

    The reference has separate q, k, v layers: ours (one fused ``qkv``) is split into them, each
    rebuilt as the reference does, and fused again."""
    out = {}
    parts: dict[str, list[Tensor]] = {"weight": [], "bias": []}
    for w, b in zip(old["qkv.weight"].chunk(3), old["qkv.bias"].chunk(3), strict=True):  # q, k, v
        parts["weight"].append(
            w.reshape(heads, head_dim, -1)[selected, :, :].reshape(-1, w.shape[1])
        )
        parts["bias"].append(b.reshape(heads, head_dim)[selected, :].flatten())
    out["qkv.weight"] = torch.cat(parts["weight"])
    out["qkv.bias"] = torch.cat(parts["bias"])
    w_out = old["out.weight"]
    out["out.weight"] = w_out.reshape(w_out.shape[0], heads, head_dim)[:, selected, :].reshape(
        w_out.shape[0], -1
    )
    return out


# -- parity with the reference ------------------------------------------------------------------


@pytest.mark.parametrize("selected", SELECTIONS)
def test_ffn_matches_the_reference_indexing(selected):
    ffn = _ffn()
    old = _snapshot(ffn)
    out_bias = ffn.linear2.bias
    remaps = reference_reselect(ffn, torch.tensor(selected), NO_RESET)
    expected = _reference_ffn(old, selected, 4 * len(selected))
    for name, value in expected.items():
        assert torch.equal(ffn.state_dict()[name], value), name
        assert isinstance(remaps[name], RebuiltRemap)
    assert ffn.width == 4 * len(selected) and ffn.linear2.in_features == ffn.width
    assert ffn.linear2.bias is out_bias and remaps["norm.weight"].new is remaps["norm.weight"].old


def test_ffn_strided_pairing_re_pairs_hidden_units_of_a_changed_ffn():
    """Hidden unit i's W2 column is no longer its own once a chunk is dropped (METHOD.md §8.1)."""
    ffn = _ffn()
    with torch.no_grad():
        ids = torch.arange(16.0)
        ffn.linear1.bias.copy_(ids)
        ffn.linear2.weight.copy_(ids[None, :].expand(D, -1))
    reference_reselect(ffn, torch.tensor([0, 1, 1, 3]), NO_RESET)
    assert not torch.equal(ffn.linear1.bias, ffn.linear2.weight[0])
    ffn = _ffn()  # all kept: the round trip is exact
    old = _snapshot(ffn)
    reference_reselect(ffn, torch.arange(4), NO_RESET)
    assert all(torch.equal(ffn.state_dict()[k], v) for k, v in old.items())


@pytest.mark.parametrize("selected", SELECTIONS)
def test_conv_matches_the_reference_indexing(selected):
    conv = _conv()
    old = _snapshot(conv)
    reference_reselect(conv, torch.tensor(selected), NO_RESET)
    expected = _reference_conv(old, selected, 2 * len(selected), kernel=3)
    for name, value in expected.items():
        assert torch.equal(conv.state_dict()[name], value), name
    # Running statistics (absent in the reference's LayerNorm) follow their channels.
    units = components_to_units(torch.tensor(selected), 2)
    assert torch.equal(conv.norm.running_mean, old["norm.running_mean"][units])
    assert conv.depthwise.groups == conv.width == 2 * len(selected)
    conv.eval()(torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("selected", SELECTIONS)
def test_mhsa_matches_the_reference_indexing(selected):
    mhsa = _mhsa()
    old = _snapshot(mhsa)
    reference_reselect(mhsa, torch.tensor(selected), NO_RESET)
    for name, value in _reference_mhsa(old, selected, heads=4, head_dim=2).items():
        assert torch.equal(mhsa.state_dict()[name], value), name
    assert mhsa.num_heads == len(selected)


@pytest.mark.parametrize(("index", "path"), [(0, "linear2.weight"), (1, "pointwise1.weight")])
def test_the_reference_differs_from_our_copy_where_method_md_says(index, path):
    ours, ref = _modules()[index], _modules()[index]
    ours.reselect(components_to_units(torch.tensor([0, 1, 1, 3]), ours.units_per_component),
                  GrowthInit("copy"))  # fmt: skip
    reference_reselect(ref, torch.tensor([0, 1, 1, 3]), NO_RESET)
    assert ours.state_dict()[path].shape == ref.state_dict()[path].shape
    assert not torch.equal(ours.state_dict()[path], ref.state_dict()[path])


# -- switches -----------------------------------------------------------------------------------


def _modules() -> list[nn.Module]:
    torch.manual_seed(1)
    cgmlp = ConvolutionalGatingMLP(D, 8, kernel_size=3)
    cgmlp.units_per_component = 2
    return [_ffn(), _conv(), _mhsa(), cgmlp]


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("selected", SELECTIONS)
def test_switches_off_give_our_consistent_copy(index, selected):
    ours, ref = _modules()[index], _modules()[index]
    units = components_to_units(torch.tensor(selected), ours.units_per_component)
    ours.reselect(units, GrowthInit("copy"))
    reference_reselect(ref, torch.tensor(selected), CLEAN)
    for name, value in ours.state_dict().items():
        assert torch.equal(ref.state_dict()[name], value), name


@pytest.mark.parametrize("index", range(4))
def test_reset_re_randomises_only_the_output_bias_and_keeps_its_optimizer_state(index):
    module = _modules()[index]
    clean = _modules()[index]
    reference_reselect(clean, torch.tensor([0, 1, 1]), CLEAN)
    remaps = reference_reselect(
        module, torch.tensor([0, 1, 1]), ReferenceSettings("contiguous", False, False, True)
    )
    changed = [
        k for k, v in module.state_dict().items() if not torch.equal(v, clean.state_dict()[k])
    ]
    out = {"FeedForward": "linear2", "ConvolutionModule": "pointwise2"}.get(
        type(module).__name__, "out" if isinstance(module, MultiHeadSelfAttention) else "proj2"
    )
    assert changed == [f"{out}.bias"]
    bias = module.get_submodule(out)
    assert bias.bias.abs().max() <= 1.0 / bias.in_features**0.5  # U(±1/√fan_in), new fan_in
    r = remaps[f"{out}.bias"]
    assert not isinstance(r, RebuiltRemap) and torch.equal(r.index, torch.arange(D))


def test_noise_goes_on_every_copied_tensor_and_nowhere_else():
    clean, noisy = _conv(), _conv()
    reference_reselect(clean, torch.tensor([0, 1, 1, 3]), NO_RESET)
    torch.manual_seed(5)
    reference_reselect(
        noisy,
        torch.tensor([0, 1, 1, 3]),
        ReferenceSettings(reset_uncopied=False, noise_variance=0.01),
    )
    for name, value in clean.state_dict().items():
        diff = noisy.state_dict()[name] - value
        copied = name.split(".")[0] in ("pointwise1", "depthwise", "pointwise2")
        copied = copied and name != "pointwise2.bias"
        if copied:
            assert 0.05 < diff.float().std() < 0.2, name  # std √0.01 = 0.1
        else:
            assert not diff.any(), name  # norms, pre-norm, output bias, statistics


# -- perturb_only: the same rebuild, every component kept once ----------------------------------


@pytest.mark.parametrize("index", range(4))
def test_identity_selection_without_reset_and_noise_is_the_identity(index):
    module = _modules()[index].eval()
    old, count = _snapshot(module), sum(p.numel() for p in module.parameters())
    old_params = list(module.parameters())
    x, mask = torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool)
    before = module(x) if isinstance(module, FeedForward) else module(x, mask)
    settings = ReferenceSettings(norm_reset=False, reset_uncopied=False)  # strided, GLU mixing on
    reference_reselect(module, torch.arange(module.num_components()), settings)
    after = module(x) if isinstance(module, FeedForward) else module(x, mask)
    assert torch.equal(before, after)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in old.items())
    assert sum(p.numel() for p in module.parameters()) == count
    # ... but the copied tensors are new parameters, as in the reference.
    assert any(all(p is not q for q in old_params) for p in module.parameters())


def test_identity_selection_with_the_reference_perturbation_keeps_widths():
    conv = _conv()
    old = _snapshot(conv)
    reference_reselect(conv, torch.arange(4), ReferenceSettings(noise_variance=1e-4))
    assert conv.width == 8 and all(conv.state_dict()[k].shape == v.shape for k, v in old.items())
    assert torch.equal(conv.norm.weight, torch.ones(8))  # the norm reset still happens
    assert not torch.equal(conv.pointwise2.bias, old["pointwise2.bias"])


# -- the optimizer ------------------------------------------------------------------------------


def _step(module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    module(torch.randn(2, 5, D)).square().sum().backward()
    optimizer.step()


@pytest.mark.parametrize("mode", ["frozen", "fresh"])
def test_rebuilt_parameters_are_frozen_or_start_with_empty_state(mode):
    ffn = _ffn()
    optimizer = torch.optim.AdamW(ffn.parameters(), lr=1e-2, weight_decay=1e-2)
    _step(ffn, optimizer)
    old_bias_state = {k: v.clone() for k, v in optimizer.state[ffn.linear2.bias].items()}
    frozen = FrozenParameters()
    remaps = reference_reselect(ffn, torch.tensor([0, 1, 1, 3]), ReferenceSettings())
    apply_reference_optimizer(optimizer, remaps.values(), mode, frozen)
    in_optimizer = [p for g in optimizer.param_groups for p in g["params"]]
    rebuilt = [r.new for r in remaps.values() if isinstance(r, RebuiltRemap)]
    assert len(rebuilt) == 3
    # The re-randomised output bias is the same parameter in the reference: its moments stay.
    bias_state = optimizer.state[ffn.linear2.bias]
    assert torch.equal(bias_state["exp_avg"], old_bias_state["exp_avg"])
    assert any(q is ffn.norm.weight for q in in_optimizer)
    values = [p.detach().clone() for p in rebuilt]
    _step(ffn, optimizer)
    if mode == "frozen":
        assert not any(p is q for p in rebuilt for q in in_optimizer)
        assert all(torch.equal(p, v) for p, v in zip(rebuilt, values, strict=True))
        assert frozen.params == rebuilt and all(p.grad is not None for p in rebuilt)
        optimizer.zero_grad()  # clears the frozen parameters' gradients too
        assert all(p.grad is None for p in rebuilt)
    else:
        assert all(any(p is q for q in in_optimizer) for p in rebuilt)
        assert not frozen.params
        assert all(not torch.equal(p, v) for p, v in zip(rebuilt, values, strict=True))
        assert all(int(optimizer.state[p]["step"]) == 1 for p in rebuilt)  # empty state before


def test_config_validates_the_reference_switches():
    DmaoConfig(growth_init="reference", perturb_only=True, reference_optimizer="fresh")
    for bad in (
        {"perturb_only": True},
        {"growth_init": "reference", "reference_ffn_pairing": "x"},
        {"growth_init": "reference", "reference_optimizer": "adam"},
        {"growth_init": "reference", "reference_rebuild": "some"},
        {"growth_init": "reference", "reference_noise_variance": -1.0},
    ):
        with pytest.raises(ValueError, match="DmaoConfig"):
            DmaoConfig(**bad)


# -- the allocator ------------------------------------------------------------------------------


def _allocator_setup(**overrides):
    """A tiny Conformer CTC (d=32, 2 blocks) with one event after 2 of 4 steps."""
    import torch.nn.functional as F

    from dmao.method import DmaoAllocator
    from dmao.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(
        "conformer_ctc", vocab_size=8, num_features=16, d_model=32, num_layers=2, head_dim=8,
        conv_kernel_size=3, frontend_channels=(4, 4, 4, 4),
    )  # fmt: skip
    config = DmaoConfig(
        enabled=True, score_every_steps=1, last_event_fraction=0.5, total_fraction=0.15,
        growth_init="reference", **overrides,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    allocator = DmaoAllocator(model.adaptable_modules(), config, total_steps=4)

    def step(i: int) -> None:
        g = torch.Generator().manual_seed(i)
        features, lens = torch.randn(2, 40, 16, generator=g), torch.tensor([40, 32])
        targets = torch.randint(1, 8, (2, 4), generator=g)
        optimizer.zero_grad()
        log_probs, out_lens = model(features, lens)
        F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, torch.tensor([4, 3])).backward()
        allocator.after_backward(i)
        optimizer.step()

    return model, optimizer, allocator, step


def _adaptable(model) -> int:
    return sum(p.numel() for m in model.adaptable_modules().values() for p in m.parameters())


def test_allocator_reference_event_keeps_the_budget_and_freezes_every_rebuilt_module():
    model, optimizer, allocator, step = _allocator_setup()
    max_cost = max(m.component_cost() for m in model.adaptable_modules().values())
    before = _adaptable(model)
    for i in range(2):
        step(i)
    event = allocator.maybe_reallocate(2, optimizer)
    assert event is not None and event.dropped and event.duplicated
    assert event.widths_after != event.widths_before
    assert abs(_adaptable(model) - before) <= max_cost // 2 + 1  # the budget invariant
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    model_params = {id(p) for p in model.parameters()}
    frozen = {id(p) for p in allocator.frozen.params}
    # reference_rebuild=all: every module with components is rebuilt, changed or not.
    assert frozen and frozen | in_optimizer == model_params and not frozen & in_optimizer
    for m in model.adaptable_modules().values():
        weight = m.unit_slices()[0].path
        assert id(m.get_parameter(weight)) in frozen
    values = {id(p): p.detach().clone() for p in allocator.frozen.params}
    step(2)
    assert all(torch.equal(p, values[id(p)]) for p in allocator.frozen.params)


def test_allocator_perturb_only_rebuilds_without_reallocating():
    model, optimizer, allocator, step = _allocator_setup(
        perturb_only=True, reference_optimizer="fresh"
    )
    widths, count = model.architecture, _adaptable(model)
    old = {id(p) for p in model.parameters()}
    for i in range(2):
        step(i)
    event = allocator.maybe_reallocate(2, optimizer)
    assert event is not None and not event.dropped and not event.duplicated
    assert model.architecture == widths and _adaptable(model) == count
    for m in model.adaptable_modules().values():  # every module rebuilt: new parameters ...
        assert id(m.get_parameter(m.unit_slices()[0].path)) not in old
    in_optimizer = [p for g in optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == {id(p) for p in model.parameters()}  # ... all fresh
    step(2)


def test_allocator_rolls_a_failed_reference_event_back(monkeypatch):
    model, optimizer, allocator, step = _allocator_setup()
    for i in range(2):
        step(i)
    params = list(model.parameters())
    groups = [list(g["params"]) for g in optimizer.param_groups]

    def fail(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(allocator, "_check_budget", fail)
    with pytest.raises(RuntimeError, match="injected"):
        allocator.maybe_reallocate(2, optimizer)
    assert all(p is q for p, q in zip(model.parameters(), params, strict=True))
    for group, saved in zip(optimizer.param_groups, groups, strict=True):
        assert len(group["params"]) == len(saved)
        assert all(p is q for p, q in zip(group["params"], saved, strict=True))
    assert not allocator.frozen.params
