"""The speed benchmarks' own logic: interleaving, ratios, FLOP corrections, equal-size pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))

import _timing  # noqa: E402
import bench_compact  # noqa: E402
import bench_flops  # noqa: E402
import bench_vs_torchaudio  # noqa: E402

from dmao.models import ConformerCTC  # noqa: E402


def test_interleaved_alternates_order_and_skips_warmup():
    calls = []
    systems = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = _timing.interleaved(systems, rounds=3, warmup=1, verbose=False)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(times.times[n]) == 3 for n in "ab")
    assert all(len(times.cpu_times[n]) == 3 for n in "ab")


def test_ratios_are_per_round_medians_on_either_clock():
    times = _timing.RoundTimes(["a", "b"])
    times.wall_times = {"a": [2.0, 3.0, 10.0], "b": [1.0, 1.0, 10.0]}
    times.cpu_times = {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
    assert times.ratios("a", "b") == [2.0, 3.0, 1.0]
    assert times.median_ratio("a", "b") == 2.0
    assert times.with_clock("cpu").median_ratio("a", "b") == 0.5
    summary = _timing.format_summary(times, "b")
    assert "ratio to b: 2.000" in summary and "ratio to b: 0.500" in summary


def _tiny_model_and_batch():
    torch.manual_seed(0)
    model = ConformerCTC(
        12,
        d_model=32,
        num_layers=2,
        head_dim=16,
        conv_kernel_size=7,
        frontend_channels=(2, 2, 2, 2),
    ).train()
    batch = dict(
        features=torch.randn(3, 40, 80),
        lens=torch.tensor([40, 36, 30]),
        targets=torch.randint(1, 12, (3, 3)),
        target_lens=torch.tensor([3, 2, 2]),
    )
    return model, batch


def test_depthwise_flops_match_the_counters_forward_formula():
    """The counter's forward count of grouped convolutions is right; backward is 2x forward."""
    model, batch = _tiny_model_and_batch()
    conv = model.encoder.blocks[0].conv
    x = torch.randn(3, conv.channels, 10)  # (B, C, T') with T' = 40 // 4
    with FlopCounterMode(display=False) as counter:
        conv.depthwise(x)
    per_block_forward = counter.get_total_flops()
    assert bench_flops.depthwise_flops_analytic(model, batch) == 3 * 2 * per_block_forward


def test_flop_count_sees_attention_and_corrects_depthwise():
    model, batch = _tiny_model_and_batch()
    total, parts = bench_flops.count_flops(model, batch)
    assert parts["attention q·kᵀ and weights·v (bmm)"] == bench_flops.attention_flops_analytic(
        model, batch
    )
    assert parts["depthwise Conv1d (analytic)"] == bench_flops.depthwise_flops_analytic(
        model, batch
    )
    assert sum(parts.values()) == total
    # The uncorrected counter would be larger by the grouped-convolution backward error.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        bench_flops.forward_backward(model, batch)
    assert counter.get_total_flops() > total


@pytest.mark.parametrize("name", ["aten::conv2d", "aten::max_pool2d", "aten::relu"])
def test_frontend_ops_are_categorised_as_frontend(name: str):
    event = type("Event", (), {"name": name, "cpu_children": []})()
    assert bench_flops.categorise(event).startswith("frontend")


def test_skewed_pair_has_equal_parameters_and_doubled_convolutions():
    uniform, skewed = bench_compact.skewed_pair(d_model=64, num_layers=4)
    n_u = sum(p.numel() for p in uniform.parameters())
    n_s = sum(p.numel() for p in skewed.parameters())
    ffn_unit_params = 2 * 64 + 1
    assert abs(n_s - n_u) <= 4 * ffn_unit_params  # rounding of the FFN shrink only
    assert skewed.architecture.widths("conv") == [128] * 4
    assert skewed.architecture.widths("ff1")[:2] == [256, 256]
    assert skewed.architecture.widths("ff1")[2] < 256


def test_vs_torchaudio_times_our_blocks(capsys):
    """Runs with or without torchaudio (here: without); a tiny shape, one round."""
    bench_vs_torchaudio.main(
        ["--sizes", "144x1", "--batch", "2", "--frames", "12", "--rounds", "1", "--warmup", "0"]
    )
    out = capsys.readouterr().out
    assert "parameters: ours" in out and "median" in out
