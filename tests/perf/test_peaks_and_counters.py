"""dmao.perf.peaks (the GPU table, the CPU matmul) and dmao.perf.counters (ops, memory)."""

from __future__ import annotations

import sys

import pytest
import torch

from dmao.perf.counters import OpCounter, PeakMemory, current_rss_bytes, release_free_memory
from dmao.perf.peaks import gpu_peak_flops, make_matmul, peak_precision, time_matmul


@pytest.mark.parametrize(
    ("name", "precision", "tflops", "card"),
    [
        ("NVIDIA H200", "bf16", 989.4, "H200 SXM"),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7, "H100 SXM"),
        ("NVIDIA H100 PCIe", "fp16", 756.0, "H100 PCIe"),
        ("NVIDIA H100 NVL", "bf16", 835.5, "H100 NVL"),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0, "A100"),
        ("NVIDIA A100 80GB PCIe", "fp32", 19.5, "A100"),
    ],
)
def test_gpu_peaks_are_the_dense_datasheet_numbers(name, precision, tflops, card):
    assert gpu_peak_flops(name, precision) == (tflops * 1e12, card)


def test_unknown_card_has_no_peak():
    assert gpu_peak_flops("NVIDIA GeForce RTX 4090", "bf16") is None


def test_peak_precision_of_fp32_depends_on_tf32_matmuls():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert peak_precision("bf16", cuda) == "bf16" and peak_precision("fp32", cpu) == "fp32"
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert peak_precision("fp32", cuda) == "tf32" and peak_precision("fp32", cpu) == "fp32"
        torch.set_float32_matmul_precision("highest")
        assert peak_precision("fp32", cuda) == "fp32"
    finally:
        torch.set_float32_matmul_precision(old)


def test_cpu_matmul_in_the_step_precision():
    run, flops = make_matmul(64, "bf16", torch.device("cpu"))
    wall, cpu = time_matmul(run, 3)
    assert flops == 2 * 64**3 and wall > 0 and cpu >= 0
    with pytest.raises(ValueError, match="matmul size must be >= 1"):
        make_matmul(0, "fp32", torch.device("cpu"))


def test_op_counter_counts_top_level_aten_calls():
    x = torch.randn(4, 4, requires_grad=True)
    with OpCounter() as ops:
        (x @ x).relu().sum().backward()
    assert ops.counts["mm"] >= 3  # forward + two gradients
    assert ops.counts["relu"] == 1 and ops.counts["sum"] == 1
    assert ops.total == sum(ops.counts.values())


def test_cpu_peak_memory_sees_an_allocation_inside_the_window():
    memory = PeakMemory(torch.device("cpu"), baseline_rss_bytes=current_rss_bytes())
    memory.start()
    block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
    peak = memory.peak_bytes()
    del block
    assert peak >= 60 * 2**20 and memory.method
    assert memory.peak_rss_bytes() >= peak


def test_excluded_work_is_left_out_of_the_peak():
    memory = PeakMemory(torch.device("cpu"), baseline_rss_bytes=current_rss_bytes())
    memory.start()
    with memory.excluded():
        block = torch.ones(256 * 2**20, dtype=torch.uint8)  # 256 MiB, freed before the mark resets
        del block
    assert memory.peak_bytes() < 128 * 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_is_handed_back_before_a_baseline_is_taken():
    """`dmao bench` subtracts an RSS baseline from the step's peak. Freed heap blocks that the
    process keeps count in that baseline yet are reused by the step unseen: after a long test
    session the measured peak was once 0 bytes. release_free_memory hands them back first."""
    junk = [torch.ones(25_000) for _ in range(5_000)]  # 500 MB in touched 100 kB heap blocks
    pin = torch.ones(25_000)  # above them: freeing them does not shrink the heap by itself
    del junk
    kept = current_rss_bytes()
    release_free_memory()
    assert current_rss_bytes() < kept - 250 * 2**20
    del pin
