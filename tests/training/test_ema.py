"""The running average of the weights (``train.ema_decay``): its update rule, that it restarts
at a DMAO event with the new widths, survives an interrupted run bit for bit, and is what ``dmao
decode --ema`` and ``dmao export --ema`` use."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_overrides, train_recipe
from torch import nn

from dmao.cli.main import main
from dmao.config import load_config
from dmao.decoding.decode_run import decode_split
from dmao.decoding.run_loading import load_trained_model
from dmao.export import load_exported
from dmao.training.checkpoint import load_checkpoint
from dmao.training.ema import WeightAverage, averaged_weights
from dmao.training.recipe import TrainingRecipe

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_ema

DMAO = [
    "dmao.enabled=true",
    "dmao.score_every_steps=2",
    "dmao.last_event_fraction=0.5",
    "dmao.total_fraction=0.25",
    "dmao.granularity=4",
]


def test_the_average_follows_the_update_rule():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    assert "1.num_batches_tracked" not in average.weights  # integer buffers are not averaged
    expected = {n: v.clone() for n, v in average.weights.items()}
    for k in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * k)
            model[1].running_mean.fill_(float(k))
        average.update(model)
        d = min(0.9, (1 + k) / (10 + k))  # warm-up of the decay, then 0.9
        for name, value in model.state_dict().items():
            if name in expected:
                expected[name] = d * expected[name] + (1 - d) * value
    for name, value in expected.items():
        torch.testing.assert_close(average.weights[name], value)
    assert not torch.allclose(average.weights["0.weight"], model[0].weight)  # it lags behind

    with pytest.raises(ValueError, match=r"train\.ema_decay must be in \(0, 1\)"):
        WeightAverage(model, decay=1.0)


def _config(tiny_corpus, manifests, *extra):
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, manifests),
        "model.dropout=0.0",
        "optim.peak_lr=3e-3",
        "train.max_steps=12",
        "train.valid_every_steps=100",
        "train.checkpoint_every_steps=4",
        "train.ema_decay=0.8",
        *extra,
    ]
    return load_config(None, overrides)


def test_the_average_restarts_at_an_event_and_resumes_exactly(tiny_corpus, tmp_path):
    config = _config(tiny_corpus, tmp_path / "manifests", *DMAO)
    train_recipe(config, tmp_path / "a")
    final = load_checkpoint(tmp_path / "a" / "checkpoints" / "step-00000012.pt")
    ema = final["ema"]
    # The event at step 6 restarted the average: 6 updates since, with the new widths.
    assert ema["updates"] == 6 and ema["decay"] == 0.8
    for name, value in ema["weights"].items():
        assert value.shape == final["model"][name].shape, name
    moved = [n for n in ema["weights"] if not torch.equal(ema["weights"][n], final["model"][n])]
    assert len(moved) > 10  # the average is not the live weights

    # Interrupted after step 4 (before the event) or step 8 (after it, with an average of 2
    # updates in the checkpoint) and resumed: the same average, bit for bit.
    train_recipe(config, tmp_path / "b")
    checkpoints = tmp_path / "b" / "checkpoints"
    for removed in ((8, 12), (12,)):
        for step in removed:
            (checkpoints / f"step-{step:08d}.pt").unlink()
        train_recipe(config, tmp_path / "b", resume=True)
        again = load_checkpoint(checkpoints / "step-00000012.pt")
        assert again["ema"]["updates"] == 6
        for name, value in ema["weights"].items():
            assert torch.equal(value, again["ema"]["weights"][name]), (removed, name)


def test_decode_and_export_use_the_average_when_asked(tiny_corpus, tmp_path, capsys):
    manifests = tmp_path / "manifests"
    run = tmp_path / "run"
    train_recipe(_config(tiny_corpus, manifests), run)
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["ema"]["updates"] == 12  # no DMAO: averaged from the first step

    live, *_ = load_trained_model(run, "best", torch.device("cpu"))
    averaged, *_ = load_trained_model(run, "best", torch.device("cpu"), ema=True)
    name = "output.weight"
    assert torch.equal(averaged.state_dict()[name], state["ema"]["weights"][name])
    assert not torch.equal(averaged.state_dict()[name], live.state_dict()[name])

    result = decode_split(run, "test", ema=True, progress_bar=False)
    # The checkpoint whose average validated best (here the one validation, step 12).
    assert result.checkpoint == "best-ema.pt+ema"
    assert result.hypotheses_path.parent.name == "test-greedy-ema"  # beside the live decode
    with pytest.raises(ValueError, match="choose one"):
        decode_split(run, "test", ema=True, avg=2, progress_bar=False)
    with pytest.raises(ValueError, match="estimated for a checkpoint's live weights"):
        decode_split(run, "test", ema=True, prior_scale=0.3, progress_bar=False)

    # The benchmark: both weights at every kept checkpoint, from the same decodes.
    assert (
        bench_ema.main(["--run", str(run), "--out", str(tmp_path / "eval"), "--splits", "test"])
        == 0
    )
    assert "| 12 | 12 | " in capsys.readouterr().out
    with open(tmp_path / "eval" / "ema.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["weights"]) for r in rows[-2:]] == [("12", "live"), ("12", "ema")]
    assert float(rows[-1]["wer"]) == pytest.approx(100 * result.score.wer, abs=0.01)

    out = tmp_path / "model"
    assert main(["export", str(run), "--out", str(out), "--no-onnx", "--ema"]) == 0
    exported = load_exported(out)
    assert exported.manifest["source"]["weights"] == "ema"
    assert torch.equal(exported.model.state_dict()[name], state["ema"]["weights"][name])


def test_the_average_is_validated_without_changing_training(tiny_corpus, tmp_path):
    """Every validation also scores the average (``valid_ema``) and ``best-ema.pt`` follows its
    dev WER; the live weights come back bit for bit, so the run trains exactly as one without an
    average, and an interrupted run resumes to the same best-ema.pt."""
    import json

    from dmao.training.metrics import read_metrics

    every4 = ("train.valid_every_steps=4", "model.dropout=0.1")
    manifests = tmp_path / "manifests"
    train_recipe(_config(tiny_corpus, manifests, *every4), tmp_path / "ema")
    train_recipe(_config(tiny_corpus, manifests, *every4, "train.ema_decay=0"), tmp_path / "off")
    for step in (4, 8, 12):
        a, b = (load_checkpoint(tmp_path / r / "checkpoints" / f"step-{step:08d}.pt")
                for r in ("ema", "off"))  # fmt: skip
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), step
    live = [(r["step"], r["wer"]) for r in read_metrics(tmp_path / "ema", "valid")]
    assert live == [(r["step"], r["wer"]) for r in read_metrics(tmp_path / "off", "valid")]
    averaged = {r["step"]: r["wer"] for r in read_metrics(tmp_path / "ema", "valid_ema")}
    assert sorted(averaged) == [4, 8, 12]
    assert not read_metrics(tmp_path / "off", "valid_ema")
    best = min(averaged, key=lambda step: (averaged[step], step))
    checkpoints = tmp_path / "ema" / "checkpoints"
    assert load_checkpoint(checkpoints / "best-ema.pt")["step"] == best
    summary = json.loads((tmp_path / "ema" / "train_summary.json").read_text())
    assert summary["best_ema_dev_wer"] == averaged[best]
    assert "best_ema_dev_wer" not in json.loads(
        (tmp_path / "off" / "train_summary.json").read_text()
    )
    # Interrupted after step 4 and resumed: the same best-ema.pt.
    train_recipe(_config(tiny_corpus, manifests, *every4), tmp_path / "resumed")
    for step in (8, 12):
        (tmp_path / "resumed" / "checkpoints" / f"step-{step:08d}.pt").unlink()
    train_recipe(_config(tiny_corpus, manifests, *every4), tmp_path / "resumed", resume=True)
    again = json.loads((tmp_path / "resumed" / "train_summary.json").read_text())
    assert again["best_ema_dev_wer"] == averaged[best]
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "best-ema.pt")["step"] == best


def test_a_run_without_an_average_says_how_to_get_one(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    train_recipe(_config(tiny_corpus, tmp_path / "manifests", "train.ema_decay=0"), run)
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["ema"] == {}
    with pytest.raises(ValueError, match=r"holds no averaged weights: train with train\.ema_decay"):
        averaged_weights(state, "best.pt")
    assert main(["decode", str(run), "--split", "test", "--ema"]) == 2
    with pytest.raises(ValueError, match=r"train\.ema_decay must be in \[0, 1\)"):
        TrainingRecipe(_config(tiny_corpus, tmp_path / "manifests", "train.ema_decay=1"), run)
