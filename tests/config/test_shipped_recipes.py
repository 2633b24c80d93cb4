"""Every shipped recipe loads and builds its model; the paper recipes follow METHOD.md §6."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dmao.config import load_config
from dmao.training.model_setup import build_model_from_config

CONFIGS = Path(__file__).resolve().parents[2] / "dmao" / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))
PAPER = sorted(
    p for corpus in ("librispeech", "tedlium2", "switchboard") for p in (CONFIGS / corpus).glob("*")
)
# METHOD.md §6: d = 256 / 384 / 512 gives 19.0 / 42.1 / 74.2 M parameters for the Conformer and
# 25.7 / 56.9 / 100.2 M for the E-Branchformer (their output layer is over phonemes; ours over 500
# BPE units plus blank, ~0.1-0.2 M more).
PAPER_PARAMS_M = {
    "conformer_ctc": {256: 19.0, 384: 42.1, 512: 74.2},
    "ebranchformer_ctc": {256: 25.7, 384: 56.9, 512: 100.2},
}


def test_there_are_paper_recipes_for_every_corpus_size_and_variant():
    names = {f"{p.parent.name}/{p.stem}" for p in PAPER}
    assert names == {
        f"{corpus}/{family}_{d}{variant}"
        for corpus in ("librispeech", "tedlium2", "switchboard")
        for family in ("conformer", "ebranchformer")
        for d in (256, 384, 512)
        for variant in ("", "_dmao")
    }


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_loads_and_builds_its_model(path):
    config = load_config(path)
    vocab = 40 if config.tokenizer.kind == "char" else config.tokenizer.vocab_size
    model = build_model_from_config(config.model, vocab_size=vocab)
    params = sum(p.numel() for p in model.parameters())
    assert params > 0
    if path in PAPER:
        expected = PAPER_PARAMS_M[config.model.name][config.model.d_model]
        assert abs(params / 1e6 - expected) < 0.5, (path, params)


@pytest.mark.parametrize("path", PAPER, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_paper_recipe_settings(path):
    config = load_config(path)
    corpus = path.parent.name
    assert config.data.corpus == corpus
    assert config.data.sampling_rate == (8000 if corpus == "switchboard" else 16000)
    m, o = config.model, config.optim
    assert m.name == f"{path.stem.split('_')[0]}_ctc"
    if m.name == "ebranchformer_ctc":
        assert m.cgmlp_multiplier == 6  # cgMLP hidden 6·d (METHOD.md §6)
        # The E-Branchformer recipe is its Conformer twin with another encoder, nothing else.
        twin = load_config(path.with_name(path.name.replace("ebranchformer", "conformer")))
        assert dataclasses.replace(twin.model, name=m.name) == m
        assert (config.data, config.tokenizer, config.optim, config.train, config.dmao) == (
            twin.data,
            twin.tokenizer,
            twin.optim,
            twin.train,
            twin.dmao,
        )
        assert config.decode == twin.decode
    assert (m.num_layers, m.head_dim, m.ff_multiplier, m.conv_kernel_size) == (12, 64, 4, 31)
    assert m.frontend_channels == [32, 64, 64, 32] and m.dropout == 0.1
    assert (o.peak_lr, o.weight_decay, o.eps) == (4e-4, 1e-3, 1e-16)
    assert config.data.spec_augment
    assert config.dmao.enabled == path.stem.endswith("_dmao")
    if config.dmao.enabled:
        assert config.dmao.num_events == 1 and config.dmao.total_fraction == 0.15
        assert config.dmao.last_event_fraction == (0.20 if corpus == "switchboard" else 0.15)
        # The DMAO recipe differs from its baseline only in the dmao section.
        baseline = load_config(path.with_name(path.name.replace("_dmao", "")))
        assert (config.data, config.model, config.optim, config.train) == (
            baseline.data,
            baseline.model,
            baseline.optim,
            baseline.train,
        )
    # Epochs (METHOD.md §6: LibriSpeech 30, Switchboard 50; TED-LIUM 50, our choice), at ~90 %
    # batch fill of max_batch_seconds.
    hours = {"librispeech": 960, "tedlium2": 207, "switchboard": 260}[corpus]
    epochs = config.train.max_steps * 0.9 * config.data.max_batch_seconds / (hours * 3600)
    assert epochs == pytest.approx(
        {"librispeech": 30, "tedlium2": 50, "switchboard": 50}[corpus], rel=0.01
    )


def test_the_100h_recipes_change_only_the_data_and_length_of_the_960h_ones():
    """librispeech_100h/: the 960 h recipes on train-clean-100 with 3-way speed perturbation for
    70 epochs — nothing else differs (the DMAO one has the 960 h DMAO section)."""
    for name in ("conformer_256", "conformer_256_dmao"):
        small = dataclasses.asdict(load_config(CONFIGS / "librispeech_100h" / f"{name}.yaml"))
        full = dataclasses.asdict(load_config(CONFIGS / "librispeech" / f"{name}.yaml"))
        assert small["data"].pop("train_parts") == ["train-clean-100"]
        assert small["data"].pop("speed_perturb") == [0.9, 1.1]
        full["data"].pop("train_parts"), full["data"].pop("speed_perturb")
        # 100.6 h x 3 / 540 s of audio per step x 70 epochs
        assert small["train"].pop("max_steps") == round(100.6 * 3600 * 3 / 540) * 70
        full["train"].pop("max_steps")
        assert small == full


@pytest.mark.parametrize("variant", ["", "_dmao"])
def test_the_kaldi_recipes_are_the_tedlium_ones_on_other_data(variant):
    """dmao/configs/kaldi: the paper's d = 256 recipes for any corpus as Kaldi data directories;
    everything but the data section is TED-LIUM's (the DMAO section is a copy: kept in step)."""
    kaldi = load_config(CONFIGS / "kaldi" / f"conformer_256{variant}.yaml")
    tedlium = load_config(CONFIGS / "tedlium2" / f"conformer_256{variant}.yaml")
    assert kaldi.data.corpus == "kaldi" and kaldi.data.corpus_dir == "data"
    for section in ("tokenizer", "model", "optim", "train", "dmao", "decode"):
        assert getattr(kaldi, section) == getattr(tedlium, section), section
