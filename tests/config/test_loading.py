from __future__ import annotations

import re

import pytest
import yaml

from dmao.config import ConfigError, config_from_dict, config_to_dict, load_config, save_config
from dmao.config.schema import (
    BAD_AUDIO_MODES,
    COMPILE_MODES,
    CORPUS_KINDS,
    DECODE_METHODS,
    PRECISION_NAMES,
    TOKENIZER_KINDS,
)


def test_defaults_round_trip(tmp_path):
    config = load_config(None)
    save_config(config, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert config_to_dict(again) == config_to_dict(config)


def test_overrides_are_typed(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": {"d_model": 128}, "optim": {"peak_lr": "4e-4"}}))
    config = load_config(path, ["model.num_layers=3", "data.train_parts=[a, b]", "train.seed=7"])
    assert config.model.d_model == 128
    assert config.model.num_layers == 3
    assert config.optim.peak_lr == pytest.approx(4e-4)  # YAML 1.1 reads 4e-4 as a string
    assert config.data.train_parts == ["a", "b"]
    assert config.train.seed == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dmodel=3", "unknown key(s) model.dmodel"),
        ("model.d_model=3.5", "'model.d_model' must be an integer"),
        ("train.progress_bar=maybe", "'train.progress_bar' must be true or false"),
        ("nosection.x=1", "unknown key(s) nosection"),
        ("model.d_model", "must look like section.key=value"),
        ("decode.method=gredy", "'decode.method' must be one of greedy, beam, lm, got 'gredy'"),
        ("train.precision=fp8", "'train.precision' must be one of fp32, bf16, fp16, got 'fp8'"),
        ("train.compile=yes", "'train.compile' must be one of none, dynamic, static, cudagraphs"),
        ("data.corpus=timit", "'data.corpus' must be one of synthetic, librispeech, tedlium2"),
        ("data.bad_audio=ignore", "'data.bad_audio' must be one of strict, skip, got 'ignore'"),
        ("tokenizer.kind=wordpiece", "'tokenizer.kind' must be one of char, bpe"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_a_bad_name_in_a_file_names_the_file_and_the_choices(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("decode:\n  method: beamsearch\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: 'decode\.method' must be one of greedy"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("decode.method", DECODE_METHODS),
        ("train.precision", PRECISION_NAMES),
        ("train.compile", COMPILE_MODES),
        ("data.corpus", CORPUS_KINDS),
        ("data.bad_audio", BAD_AUDIO_MODES),
        ("tokenizer.kind", TOKENIZER_KINDS),
    ],
)
def test_every_name_of_a_choice_is_accepted(key, names):
    section, field = key.split(".")
    for name in names:
        config = load_config(None, [f"{key}={name}"])
        assert getattr(getattr(config, section), field) == name


def test_the_code_acts_on_exactly_the_names_the_config_accepts():
    """Each vocabulary is written once (dmao.config.schema); the code that maps a name to what it
    does must know every name the loader lets through, and no other."""
    from dmao.data.tokenizer import _KINDS
    from dmao.training.precision import PRECISIONS

    assert set(PRECISIONS) == set(PRECISION_NAMES)
    assert set(_KINDS) == set(TOKENIZER_KINDS)


def test_bad_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_model: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_optional_field_accepts_none_and_string():
    assert config_from_dict({"model": {"architecture": None}}).model.architecture is None
    assert config_from_dict({"model": {"architecture": "x.json"}}).model.architecture == "x.json"


def test_base_recipe_is_merged_key_by_key(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "base.yaml").write_text(
        "model:\n  d_model: 144\n  num_layers: 8\ntrain:\n  max_steps: 100\n"
    )
    (tmp_path / "recipes" / "child.yaml").write_text(
        "base: ../base.yaml\nmodel:\n  num_layers: 4\ndmao:\n  enabled: true\n"
    )
    config = load_config(tmp_path / "recipes" / "child.yaml", ["train.max_steps=7"])
    assert config.model.d_model == 144  # inherited
    assert config.model.num_layers == 4  # overridden by the child, sibling keys kept
    assert config.dmao.enabled is True
    assert config.train.max_steps == 7  # command line beats both files


def test_base_recipe_errors_name_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml \(the base of .*a\.yaml\)"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("base: c.yaml\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("base: [x]\n")
    with pytest.raises(ConfigError, match="'base' must be a path"):
        load_config(tmp_path / "d.yaml")
