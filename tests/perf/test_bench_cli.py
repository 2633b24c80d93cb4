"""``dmao bench`` on the tiny corpus: every key, sane values, FLOPs equal to an independent count,
DMAO's scoring and event path, the loader mode and one-line errors. No timed assertions: speed
targets live in benchmarks/ only."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_train_overrides
from flop_reference import reference_flops

from dmao.cli.main import main
from dmao.config import load_config
from dmao.training.model_setup import build_model_from_config

REQUIRED = (
    "mfu", "steps_per_s", "audio_s_per_s", "flops_per_step", "peak_flops",
    "padding_efficiency", "ops_per_step", "peak_memory_bytes",
)  # fmt: skip

# A 512^3 matmul (0.27 GFLOP, a few ms) measures the CPU peak; a smaller one measures call
# overhead, which can make the tiny model look faster than the peak on a loaded machine.
FAST = ["--matmul-size", "512", "--matmul-repeats", "1"]


@pytest.fixture(scope="module")
def overrides(tiny_corpus, tmp_path_factory) -> list[str]:
    manifests = tmp_path_factory.mktemp("bench") / "manifests"
    return tiny_train_overrides(tiny_corpus.root, manifests)


def _bench(capsys, *args: str) -> dict:
    assert main(["bench", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("dropout", [0.1, 0.0])
def test_json_has_every_key_and_flops_equal_an_independent_count(overrides, capsys, dropout):
    """One timed step: its FLOPs are those of the counted batch, so flops_per_step must equal a
    plain FlopCounterMode count (math SDPA, depthwise by hand) of a batch of the same shape."""
    extra = [f"model.dropout={dropout}"]
    report = _bench(capsys, "--steps", "1", "--warmup-steps", "1", *FAST, *overrides, *extra)
    assert set(REQUIRED) <= set(report)
    assert 0 < report["mfu"] < 1 and 0 < report["mfu_cpu_clock"] < 1
    assert report["steps_per_s"] > 0 and report["audio_s_per_s"] > 0
    assert report["peak_flops"] > 0 and report["peak_source"].startswith("measured: 512^3 fp32")
    assert 0 < report["padding_efficiency"] <= 1
    assert 100 < sum(report["top_ops"].values()) <= report["ops_per_step"]
    assert report["peak_memory_bytes"] > 0 and report["memory_method"]
    assert report["dmao_enabled"] is False and report["dmao_events"] == 0

    (counted,) = report["flop_counts"]
    torch.manual_seed(0)
    model = build_model_from_config(
        load_config(None, overrides + extra).model, report["vocab_size"]
    ).train()
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    expected = reference_flops(model, counted["batch_size"], counted["frames"])
    assert report["flops_per_step"] == counted["total"] == expected


def test_dmao_scores_and_an_event_in_the_window_recount_the_flops(overrides, capsys):
    dmao = [
        "dmao.enabled=true", "dmao.score_every_steps=2", "train.max_steps=8",
        "dmao.last_event_fraction=0.5", "dmao.total_fraction=0.25", "dmao.granularity=4",
    ]  # fmt: skip
    profile = ["--profile-after-event", "2", "--transient-steps", "2"]
    report = _bench(
        capsys, "--steps", "6", "--warmup-steps", "2", *FAST, *profile, *overrides, *dmao
    )
    assert report["dmao_enabled"] is True and report["dmao_events"] == 1  # at step 4
    assert report["dmao_score_steps"] >= 2
    # The event ended the 2nd timed step (step 4); the transient is the next 2 steps' excess
    # over the median step before it, and the profile covers those steps' operators.
    assert report["dmao_event_steps"] == [1]
    walls = report["step_wall_s"]
    assert len(walls) == 6
    typical = sorted(walls[:2])[0] + (sorted(walls[:2])[1] - sorted(walls[:2])[0]) / 2
    assert report["post_event_transient_s"] == pytest.approx(
        walls[2] + walls[3] - 2 * typical, abs=1e-4
    )
    names = {r["name"] for r in report["post_event_profile"]}
    assert "aten::addmm" in names or "aten::mm" in names, names
    before, after = report["flop_counts"]  # counted again on the new architecture
    per_frame = [c["other"] / (c["batch_size"] * c["frames"]) for c in (before, after)]
    assert per_frame[0] != per_frame[1]
    assert 0 < report["mfu"] < 1 and 0 < report["padding_efficiency"] <= 1


def test_loader_mode_reports_each_worker_count(overrides, capsys):
    loader = ["--loader", "--loader-workers", "0", "1", "--loader-batches", "2"]
    report = _bench(capsys, "--steps", "1", "--warmup-steps", "1", *FAST, *loader, *overrides)
    assert [r["workers"] for r in report["loader"]] == [0, 1]
    for r in report["loader"]:
        assert r["cuts_per_s"] > 0 and r["audio_s_per_s"] > 0 and r["startup_s"] >= 0
        assert r["ratio_to_training"] == pytest.approx(r["audio_s_per_s"] / report["audio_s_per_s"])


def test_table_output(overrides, capsys):
    assert main(["bench", "--steps", "1", "--warmup-steps", "1", *FAST, *overrides]) == 0
    out = capsys.readouterr().out
    for row in ("| steps/s ", "| MFU ", "| padding efficiency ", "| ATen ops per step "):
        assert row in out, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--warmup-steps", "0"], "--warmup-steps must be >= 1"),
        (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    ],
)
def test_bad_input_is_one_line(capsys, args, message):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dmao bench: error: ") and message in err and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_one_line(overrides, capsys):
    assert main(["bench", "--device", "cuda", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dmao bench: error: ") and "CUDA is not available" in err
