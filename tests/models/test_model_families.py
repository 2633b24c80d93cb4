"""Invariants swept over the model registry (timm style): every registered family at tiny size.

A family is a registered name without a ``_d<size>`` preset suffix; a new family added to the
registry is tested here without touching this file.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from dmao.method.units import AdaptableModule
from dmao.models.accounting import count_parameters
from dmao.models.architecture import EncoderArchitecture
from dmao.models.frontend import lengths_to_mask, subsampled_length
from dmao.models.registry import build_model, list_models, model_arguments

FAMILIES = [name for name in list_models() if not re.search(r"_d\d+$", name)]
VOCAB, FEATURES = 9, 16


def tiny(name: str, seed: int = 0, **overrides):
    """Registered model ``name`` at tiny size (d=32, 2 blocks, 4 heads of 8)."""
    torch.manual_seed(seed)
    args = dict(
        vocab_size=VOCAB,
        num_features=FEATURES,
        d_model=32,
        num_layers=2,
        head_dim=8,
        conv_kernel_size=5,
        frontend_channels=(4, 4, 4, 4),
    )
    accepted = model_arguments(name)
    return build_model(name, **{k: v for k, v in {**args, **overrides}.items() if k in accepted})


def _batch(lengths: list[int], pad: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), max(lengths) + pad, FEATURES, generator=g)
    mask = lengths_to_mask(torch.tensor(lengths), features.shape[1])
    return features.masked_fill(~mask[:, :, None], 3.0), torch.tensor(lengths)


def _randomise_norm_statistics(model) -> None:
    """Non-trivial BatchNorm running statistics, as after training."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)


def test_the_sweep_sees_every_family():
    assert {"conformer_ctc", "ebranchformer_ctc", "transformer_ctc"} <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_is_finite_with_the_right_shapes(name):
    model = tiny(name)
    features, lengths = _batch([41, 23, 4])
    for mode in (model.train, model.eval):
        mode()
        log_probs, out_lens = model(features, lengths)
        assert log_probs.shape == (3, subsampled_length(features.shape[1]), VOCAB)
        assert log_probs.dtype == torch.float32 and torch.isfinite(log_probs).all()
        assert out_lens.tolist() == [10, 5, 1]
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_parameter_gets_a_finite_nonzero_gradient(name):
    model = tiny(name).train()
    features, lengths = _batch([60, 41, 28])
    log_probs, out_lens = model(features, lengths)
    targets = torch.randint(1, VOCAB, (3, 4))
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, torch.tensor([4, 3, 2]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize("name", FAMILIES)
@torch.no_grad()
def test_padding_does_not_change_valid_outputs(name):
    model = tiny(name).eval()
    _randomise_norm_statistics(model)
    lengths = [37, 64, 9]
    features, feature_lens = _batch(lengths, pad=13)
    batched, out_lens = model(features, feature_lens)
    for i, n in enumerate(lengths):
        alone, _ = model(features[i : i + 1, :n], torch.tensor([n]))
        assert alone.shape[1] == int(out_lens[i])
        torch.testing.assert_close(batched[i, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_adaptable_modules_cover_the_architecture(name):
    model = tiny(name)
    modules = model.adaptable_modules()
    kinds = model.architecture.kinds
    assert kinds == type(model).MODULE_KINDS
    assert list(modules) == [f"encoder.blocks.{i}.{k}" for i in range(2) for k in kinds]
    report = count_parameters(model)
    assert report.adaptable == sum(p.numel() for m in modules.values() for p in m.parameters())
    for module_name, m in modules.items():
        assert isinstance(m, AdaptableModule), module_name
        assert m.width == m.default_width > 0 and m.base_dropout == model.dropout
        m.set_granularity(1)
        per_component = m.component_cost() * m.num_components()
        assert per_component <= sum(p.numel() for p in m.parameters()), module_name


@pytest.mark.parametrize("name", FAMILIES)
def test_a_non_uniform_architecture_round_trips_through_its_dict(name):
    """Halve every module of layer 0 and empty the first kind of layer 1; a model rebuilt from
    the dict form loads the state dict and computes the same."""
    default = tiny(name).default_architecture
    layers = [layer.to_dict() for layer in default.layers]
    layers[0] = {k: max(w // 2, 1) for k, w in layers[0].items()}
    layers[1][default.kinds[0]] = 0
    data = {"layers": layers}
    model = tiny(name, architecture=EncoderArchitecture.from_dict(data)).eval()
    assert model.architecture.to_dict() == data
    rebuilt = tiny(name, seed=5, architecture=EncoderArchitecture.from_dict(data)).eval()
    rebuilt.load_state_dict(model.state_dict())
    features, lengths = _batch([30, 18])
    torch.testing.assert_close(rebuilt(features, lengths)[0], model(features, lengths)[0])


@pytest.mark.parametrize("name", [n for n in list_models() if n not in FAMILIES])
def test_every_preset_builds_and_its_parameters_add_up(name):
    with torch.device("meta"):
        model = build_model(name, vocab_size=80)
    report = count_parameters(model)  # asserts that the parts add up to the total
    assert report.total == sum(p.numel() for p in model.parameters())
    assert model.architecture.num_layers == 12
