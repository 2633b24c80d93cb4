"""A tiny model registry: names → model classes plus preset constructor arguments.

``build_model("conformer_ctc_d384", vocab_size=80)`` builds the paper's 12-layer d=384 model;
keyword arguments override the preset's. Configs and the CLI refer to models by these names.

Families: ``conformer_ctc`` (METHOD.md §6), ``ebranchformer_ctc`` (the paper's second encoder) and
``transformer_ctc`` (a plain pre-LN Transformer, the simplest encoder DMAO applies to), each with
12-layer presets at d = 256 / 384 / 512.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from dmao.models.conformer import ConformerCTC
from dmao.models.ebranchformer import EBranchformerCTC
from dmao.models.transformer import TransformerCTC

__all__ = ["build_model", "list_models", "model_arguments", "register_model"]

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {}


def register_model(name: str, factory: Callable[..., nn.Module], **preset: Any) -> None:
    """Register ``factory`` (a model class or function) under ``name`` with preset kwargs."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _bind(name, factory, preset, partial=True)  # a preset with a typo fails here, not at build
    _REGISTRY[name] = (factory, dict(preset))


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_arguments(name: str) -> tuple[str, ...]:
    """The constructor arguments the registered model ``name`` accepts (e.g. a Transformer has no
    ``conv_kernel_size``), so a config can pass only those."""
    factory, _ = _lookup(name)
    return tuple(inspect.signature(factory).parameters)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` override the preset's arguments."""
    factory, preset = _lookup(name)
    args = {**preset, **kwargs}
    _bind(name, factory, args, partial=False)
    return factory(**args)


def _bind(
    name: str, factory: Callable[..., nn.Module], args: dict[str, Any], partial: bool
) -> None:
    """Check ``args`` against ``factory``'s signature, naming the model and the valid arguments."""
    signature = inspect.signature(factory)
    try:
        (signature.bind_partial if partial else signature.bind)(**args)
    except TypeError as e:
        raise TypeError(
            f"model {name!r}: {e}; valid arguments: {', '.join(signature.parameters)}"
        ) from None


register_model("conformer_ctc", ConformerCTC)
# The paper's Conformer sizes (METHOD.md §6): 12 blocks at d = 256 / 384 / 512 give
# 19.0 / 42.1 / 74.2 M parameters with a phoneme output layer (~80 labels incl. blank).
for _d_model in (256, 384, 512):
    register_model(f"conformer_ctc_d{_d_model}", ConformerCTC, d_model=_d_model, num_layers=12)

register_model("ebranchformer_ctc", EBranchformerCTC)
# METHOD.md §6: E-Branchformer (cgMLP hidden 6·d) at d = 256 / 384 / 512 has 25.7 / 56.9 / 100.2 M.
for _d_model in (256, 384, 512):
    register_model(
        f"ebranchformer_ctc_d{_d_model}", EBranchformerCTC, d_model=_d_model, num_layers=12
    )

register_model("transformer_ctc", TransformerCTC)
# Same depth and widths as the Conformer presets, without the convolution modules and half-step
# FFNs: 10.2 / 22.4 / 39.3 M parameters with ~80 output labels.
for _d_model in (256, 384, 512):
    register_model(f"transformer_ctc_d{_d_model}", TransformerCTC, d_model=_d_model, num_layers=12)
