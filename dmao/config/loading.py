"""YAML files and ``key=value`` overrides → a validated :class:`ExperimentConfig`.

Unknown keys and values of the wrong type are errors that name the file, the dotted key and what
was expected, so a typo in a recipe never silently trains with a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from dmao.config.schema import ExperimentConfig

__all__ = [
    "ConfigError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_run_config",
    "save_config",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the source."""


def _check_value(value: Any, hint: Any, key: str, source: str) -> Any:
    """Validate (and lightly coerce) ``value`` against the type ``hint`` of field ``key``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{source}: invalid value for {key!r}")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(
                f"{source}: {key!r} must be one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key!r} must be a list, got {value!r}")
        return [_check_value(v, item_hint, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "4e-4" (no dot) as a string; accept it as the number it clearly is.
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key!r} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key!r} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key!r} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: unsupported type {hint!r} for {key!r}")


def _build(cls: type, data: dict[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'config'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"known keys of {prefix or 'the config'}: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, key, source)
        else:
            kwargs[name] = _check_value(value, hint, key, source)
    return cls(**kwargs)


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Keys that moved: ``dmao.dropout_scaling`` is ``model.dropout_scaling`` now (width-scaled
    dropout is a property of the architecture, issue 15); configs and checkpoints written before
    still load, and a value set in both places must agree."""
    dmao = data.get("dmao")
    if isinstance(dmao, dict) and "dropout_scaling" in dmao:
        data = dict(data)
        dmao = dict(dmao)
        value = dmao.pop("dropout_scaling")
        model = dict(data.get("model") or {})
        if "dropout_scaling" in model and model["dropout_scaling"] != value:
            raise ConfigError(
                f"dmao.dropout_scaling={value!r} and model.dropout_scaling="
                f"{model['dropout_scaling']!r} disagree; it is model.dropout_scaling now"
            )
        model["dropout_scaling"] = value
        data["dmao"], data["model"] = dmao, model
    return data


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Build a config from a nested dict; missing keys take their defaults."""
    return _build(ExperimentConfig, _migrate(data or {}), "", source)


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain nested dicts/lists/scalars (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict; values are parsed as YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One recipe file as a dict, with its ``base:`` recipe (if any) merged underneath."""
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{path}: 'base' recipes form a cycle: {cycle}")
    with open(path) as f:
        loaded = yaml.safe_load(f)
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    data = loaded or {}
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a path to another recipe, got {base!r}")
    # Relative to the file that names it, so recipes can be moved together.
    parent = _read_yaml(path.parent / base, (*chain, path.resolve()))
    return _deep_merge(parent, data)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML recipe (or start from defaults when ``path`` is None) and apply overrides.

    A recipe may start with ``base: other.yaml`` (a path relative to the recipe): the other
    recipe is read first and this one's sections are merged over it key by key, so a DMAO recipe
    can say only what differs from its baseline.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        source = str(path)
    if overrides:
        data = apply_overrides(data, overrides)
        source += " + command-line overrides"
    return config_from_dict(data, source)


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config of a run folder (``RUN/config.yaml``, written by ``dmao train``).

    Raises:
        FileNotFoundError: naming the folder, when it holds no ``config.yaml``.
        ConfigError: naming the file and the key, when the file is not a valid config.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a dmao run folder (no config.yaml)")
    return load_config(path)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(config), f, sort_keys=False)
