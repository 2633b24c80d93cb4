"""Turn a :class:`~dmao.config.ModelConfig` into a model (the only place config meets models)."""

from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn
import yaml

from dmao.config.schema import ModelConfig
from dmao.models.architecture import EncoderArchitecture
from dmao.models.registry import build_model, model_arguments

__all__ = ["build_model_from_config", "load_architecture"]


def load_architecture(source: str | Path) -> EncoderArchitecture:
    """Per-layer widths from a JSON/YAML file or from a run folder (its ``architecture.json``)."""
    path = Path(source)
    if path.is_dir():
        path = path / "architecture.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"model.architecture: {source} is neither an architecture file nor a run folder "
            "with architecture.json"
        )
    with open(path) as f:
        data = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    return EncoderArchitecture.from_dict(data)


def build_model_from_config(
    config: ModelConfig, vocab_size: int, architecture: EncoderArchitecture | None = None
) -> nn.Module:
    """Build the registered model ``config.name`` for ``vocab_size`` outputs (blank included).

    ``architecture`` (e.g. the one stored in a checkpoint) takes precedence over
    ``config.architecture``; with neither, the widths are uniform. Config fields the model does not
    take (``conv_kernel_size`` for a Transformer) are not passed.
    """
    if architecture is None and config.architecture:
        architecture = load_architecture(config.architecture)
    candidates = dict(
        vocab_size=vocab_size,
        d_model=config.d_model,
        num_layers=config.num_layers,
        head_dim=config.head_dim,
        ff_multiplier=config.ff_multiplier,
        cgmlp_multiplier=config.cgmlp_multiplier,
        conv_kernel_size=config.conv_kernel_size,
        dropout=config.dropout,
        frontend_channels=tuple(config.frontend_channels),
        architecture=architecture,
        dropout_scaling=config.dropout_scaling,
    )
    # Every model family takes only the settings it has: a Transformer has no convolution kernel,
    # only the E-Branchformer has a cgMLP (ModelConfig documents which field applies to which).
    accepted = set(model_arguments(config.name))
    return build_model(config.name, **{k: v for k, v in candidates.items() if k in accepted})
