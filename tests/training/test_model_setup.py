"""Model selection from the config: every family builds from ModelConfig, and
``dmao train ... model.name=ebranchformer_ctc`` runs end to end (train with a DMAO event, resume,
report, decode)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_train_overrides

from dmao.cli.main import main
from dmao.config import load_config
from dmao.config.schema import ModelConfig
from dmao.models.ebranchformer import EBranchformerCTC
from dmao.models.transformer import TransformerCTC
from dmao.training.checkpoint import load_checkpoint
from dmao.training.metrics import read_metrics
from dmao.training.model_setup import build_model_from_config, load_architecture


def test_every_family_is_built_from_the_config_fields_it_has():
    config = ModelConfig(
        name="ebranchformer_ctc",
        d_model=64,
        num_layers=2,
        head_dim=16,
        ff_multiplier=2,
        cgmlp_multiplier=4,
        conv_kernel_size=7,
        dropout=0.2,
    )
    eb = build_model_from_config(config, vocab_size=11)
    assert isinstance(eb, EBranchformerCTC) and eb.output.out_features == 11
    assert eb.architecture.layers[0].to_dict() == {"ff1": 128, "mhsa": 4, "cgmlp": 128, "ff2": 128}
    assert eb.encoder.blocks[0].cgmlp.kernel_size == 7 and eb.dropout == 0.2
    # The Transformer has no convolution and no cgMLP: those fields are simply not passed.
    config.name = "transformer_ctc"
    tr = build_model_from_config(config, vocab_size=11)
    assert isinstance(tr, TransformerCTC)
    assert tr.architecture.layers[0].to_dict() == {"mhsa": 4, "ff": 128}
    config.name = "transformer_ctc_d384"  # a preset: the config fields override it
    assert build_model_from_config(config, vocab_size=11).d_model == 64
    config.name = "branchformer"
    with pytest.raises(ValueError, match="unknown model 'branchformer'; known models: "):
        build_model_from_config(config, vocab_size=11)


def test_an_architecture_file_must_match_the_model_family(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"layers": [{"mhsa": 2, "ff": 64}] * 2}))
    assert load_architecture(path).kinds == ("mhsa", "ff")
    config = ModelConfig(d_model=32, num_layers=2, head_dim=16, architecture=str(path))
    with pytest.raises(ValueError, match=r"ConformerCTC: architecture has module kinds"):
        build_model_from_config(config, vocab_size=5)
    config.name = "transformer_ctc"
    assert build_model_from_config(config, vocab_size=5).architecture.widths("ff") == [64, 64]


def test_dmao_train_ebranchformer_end_to_end(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "model.name=ebranchformer_ctc",
        "model.dropout=0.0",
        "optim.peak_lr=3e-3",
        "train.log_every_steps=1",
        "train.max_steps=20",
        "train.valid_every_steps=20",
        "train.checkpoint_every_steps=10",
        "dmao.enabled=true",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.5",
        "dmao.total_fraction=0.25",
    ]
    assert main(["train", "--out", str(run), *overrides]) == 0
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    events = read_metrics(run, "dmao_event")
    assert [e["step"] for e in events] == [10]
    assert {d["kind"] for e in events for d in e["dropped"] + e["duplicated"]} <= {
        "ff1",
        "mhsa",
        "cgmlp",
        "ff2",
    }
    arch = json.loads((run / "architecture.json").read_text())
    assert set(arch["layers"][0]) == {"ff1", "mhsa", "cgmlp", "ff2"}
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["architecture"] == arch  # the DMAO architecture, not the default

    # Resume from step 10 (after the event): the model is rebuilt as an E-Branchformer with the
    # checkpoint's DMAO widths before its weights are loaded.
    (run / "checkpoints" / "step-00000020.pt").unlink()
    assert load_checkpoint(run / "checkpoints" / "step-00000010.pt")["architecture"] == arch
    assert main(["train", "--out", str(run), "--resume", *overrides]) == 0
    assert load_checkpoint(run / "checkpoints" / "step-00000020.pt")["architecture"] == arch

    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["ff1", "ff2", "mhsa", "cgmlp"]  # after the header row
    assert (run / "report" / "architecture_heatmap.png").is_file()

    assert main(["decode", str(run), "--split", "test", "--device", "cpu"]) == 0
    assert "WER" in capsys.readouterr().out

    cfg = load_config(run / "config.yaml", [])
    assert cfg.model.name == "ebranchformer_ctc"
    with torch.device("meta"):
        assert isinstance(build_model_from_config(cfg.model, 10), EBranchformerCTC)
