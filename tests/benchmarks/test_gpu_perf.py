"""benchmarks/gpu_perf.sh end to end at toy size on the CPU (--device cpu): the MFU sweep, DMAO vs
baseline and the table, as a GPU session would run them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import run_benchmark_script

# The script's stages at toy size: 2-layer models of d = 16 and 32, 2-6 steps, 0.02 h corpus.
_TOY = {
    "--device": "cpu",
    "--hours": "0.02",
    "--sizes": "16 32",
    "--layers": "2",
    "--head-dim": "8",
    "--kernel": "3",
    "--frontend": "[2,2,2,2]",
    "--batch-seconds": "8",
    "--workers": "0",
    "--loader-workers": "0 1",
    "--warmup-steps": "1",
    "--sweep-steps": "2",
    "--dmao-size": "16",
    "--dmao-steps": "6",
    "--overrides": "data.num_buckets=2",
    "--qkv-size": "toy",
    "--qkv-rounds": "2",
    # A 512³ matmul (0.27 GFLOP) measures the peak; a tiny one would measure call overhead and
    # make a toy step look faster than the peak (MFU > 1 was seen with 64³ on a loaded CPU).
    "--bench-args": "--matmul-size 512 --matmul-repeats 1",
    # The GPU caps (120-300 s a stage) are too tight for a CPU shared with other jobs.
    "--budget-s": "3000",
    "--stage-cap-s": "900",
}


def _run(out: Path, options: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return run_benchmark_script(
        "gpu_perf.sh", out, [x for kv in options.items() for x in kv], timeout
    )


def test_perf_script_sweeps_compares_and_prints_the_table(tmp_path):
    out = tmp_path / "perf"
    options = {**_TOY, "--corpus": str(tmp_path / "corpus"), "--compile-size": "0"}
    proc = _run(out, options, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = proc.stdout
    for stage in ("machine", "corpus: 0.02 h", "sweep: d = 16 x 2", "sweep: d = 32 x 2",
                  "DMAO vs baseline: d = 16", "torch.compile: skipped",
                  "fused QKV vs separate q, k, v: toy, 2 rounds", "table"):  # fmt: skip
        assert f"] {stage}" in log, f"stage {stage!r} missing:\n{log}"
    runs = ("sweep-d16", "sweep-d32", "baseline-d16", "dmao-d16")
    for name in runs:
        assert f"{name} rc=0" in log, log + (out / f"{name}.log").read_text()
        report = json.loads((out / f"{name}.json").read_text())
        assert 0 < report["mfu"] < 1 and report["precision"] == "bf16"
    dmao = json.loads((out / "dmao-d16.json").read_text())
    assert dmao["dmao_events"] == 1 and dmao["steps"] == 6
    table = (out / "table.md").read_text()
    assert table.startswith("card: cpu;") and "| run | d × layers |" in table
    assert all(f"| {name} |" in table for name in runs)
    assert "DMAO ÷ baseline steps/s at d16: **" in table
    assert "post-event transient at d16:" in table
    # The largest size also measured the loader alone (item 6), as a ratio to its own step.
    loader = json.loads((out / "sweep-d32.json").read_text())["loader"]
    assert [r["workers"] for r in loader] == [0, 1] and all(
        r["ratio_to_training"] > 0 for r in loader
    )
    assert "loader alone at sweep-d32, 1 worker(s):" in table
    # Item 4: the fused projection against the separate ones, in one process.
    assert "fused-qkv rc=0" in log
    qkv = (out / "fused_qkv.txt").read_text()
    ops = re.search(r"ATen ops per training step: fused (\d+), separate (\d+)", qkv)
    assert ops and int(ops[1]) < int(ops[2]), qkv
    assert "fused" in qkv.split("numerics")[-1] and "ratio" in qkv, qkv


@pytest.mark.slow
def test_perf_script_compiles(tmp_path):
    """The torch.compile stage (slow: compiling even the toy model takes minutes on this CPU)."""
    out = tmp_path / "perf"
    options = {**_TOY, "--corpus": str(tmp_path / "corpus"), "--sizes": "16",
               "--dmao-steps": "2", "--compile-size": "16", "--compile-steps": "2",
               "--compile-buckets": "2",
               # inductor's C++ compilation of even the toy model outlasts the stage caps on a
               # busy 2-core machine; aot_eager goes through the same dynamo graphs and guards.
               "--overrides": "data.num_buckets=2 train.compile_backend=aot_eager"}  # fmt: skip
    proc = _run(out, options, timeout=1800)
    assert proc.returncode == 0 and "compiled-d16 rc=0" in proc.stdout, proc.stdout
    assert "static-d16 rc=0" in proc.stdout and "cudagraphs-d16" not in proc.stdout  # CPU
    report = json.loads((out / "compiled-d16.json").read_text())
    assert report["compile"] == "static" and report["ops_per_step"] is None
    # Static shapes: the warm-up trained on both buckets' shapes, so nothing compiles when timed.
    assert report["pad_to_bucket"] is True and report["distinct_shapes"] <= 2
    assert report["compiled_graphs"] >= 1 and report["compiled_graphs_timed"] == 0
    eager = json.loads((out / "static-d16.json").read_text())
    assert eager["compile"] == "none" and eager["compiled_graphs"] == 0
    assert (
        "torch.compile (static) ÷ eager steps/s at d16, the same static shapes: **"
        in (out / "table.md").read_text()
    )
