"""Experiment configuration: typed dataclasses, YAML recipes and command-line overrides."""

from dmao.config.loading import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    load_run_config,
    save_config,
)
from dmao.config.schema import (
    DataConfig,
    DecodeConfig,
    DmaoConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    TokenizerConfig,
    TrainConfig,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "DecodeConfig",
    "DmaoConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TokenizerConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_run_config",
    "save_config",
]
