"""benchmarks/gpu_session.sh end to end at toy size on the CPU: corpus, the check's dry run, a
two-job comparison over three seeds, and the packed results, as a GPU session would run them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import run_benchmark_script

from dmao.training.provenance import code_version

# The small recipe's code path at toy size (the check's --dry-run sizes, 4 steps).
_TINY = (
    "train.max_steps=4 train.valid_every_steps=2 train.checkpoint_every_steps=2 "
    "model.d_model=32 model.num_layers=2 model.head_dim=16 model.frontend_channels=[4,4,4,4] "
    "data.max_batch_seconds=8 data.num_buckets=2 data.num_workers=0 dmao.score_every_steps=1 "
    "train.max_valid_utterances=8 train.device=cpu"
)


def _run_session(out, options, timeout):
    """benchmarks/gpu_session.sh OUT --option value ..., with this interpreter as its Python."""
    return run_benchmark_script(
        "gpu_session.sh", out, [x for kv in options.items() for x in kv], timeout
    )


def test_session_script_runs_every_stage_and_packs_the_results(tmp_path):
    out = tmp_path / "session"
    options = {
        "--budget-s": "500",
        "--hours": "0.03",
        "--corpus": str(tmp_path / "corpus"),
        "--check-args": "--dry-run",
        "--check-steps": "4",
        "--jobs": "2",
        "--compare-args": _TINY,
        "--archive-from": str(tmp_path / "kept"),  # none yet: the first session trains all
    }
    proc = _run_session(out, options, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = proc.stdout
    for stage in ("machine", "corpus: 0.03 h", "gpu_check: 4 steps", "compare: --jobs 2", "pack"):
        assert f"] {stage}" in log, f"stage {stage!r} missing:\n{log}"
    assert "corpus rc=0" in log and "gpu_check rc=0" in log and "compare rc=0" in log, log
    with tarfile.open(out / "results.tgz") as tar:
        names = set(tar.getnames())
        results = tar.extractfile("compare/results.md").read().decode()
    assert "gpu_check/gpu_check.json" in names
    runs = {f"compare/{s}/seed{k}" for s in ("baseline", "dmao") for k in (0, 1, 2)}
    assert {f"{r}/metrics.jsonl" for r in runs} <= names
    assert not any(n.endswith(".pt") for n in names)  # checkpoints stay behind
    assert "| baseline | dev | 3 |" in results and "| dmao | test | 3 |" in results
    # The finished runs' records are in OUT/archive (and packed): the next session, on a fresh
    # machine, restores them from there (--archive-from) and trains nothing again.
    assert "archive/baseline/seed0/record.json" in names
    again = tmp_path / "next_session"
    options = {**options, "--check-steps": "0", "--archive-from": str(out / "archive")}
    proc = _run_session(again, options, timeout=600)
    assert proc.returncode == 0 and "compare rc=0" in proc.stdout, proc.stdout + proc.stderr
    assert "archive: 6 run records from" in proc.stdout, proc.stdout
    assert not list((again / "compare").rglob("*.pt"))  # nothing trained
    rows = [line for line in results.splitlines() if "| baseline |" in line or "| dmao |" in line]
    assert rows and set(rows) <= set((again / "compare" / "results.md").read_text().splitlines())


def test_dmao_code_runs_a_pinned_copy_of_the_package(tmp_path):
    """DMAO_CODE=DIR: every stage runs DIR's dmao package, not the checkout's (a copy that
    differs by one file in the hashed training code has its own code version)."""
    root = Path(__file__).resolve().parents[2]
    code = tmp_path / "pinned"
    shutil.copytree(root / "dmao", code / "dmao", ignore=shutil.ignore_patterns("__pycache__"))
    (code / "dmao" / "training" / "_pinned_marker.py").write_text('"""A marker."""\n')
    proc = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu_session.sh"), str(tmp_path / "session"),
         "--hours", "0.03", "--corpus", str(tmp_path / "corpus"), "--check-steps", "0",
         "--compare-args", _TINY, "--compare-options", "--seeds 0"],
        env={**os.environ, "PYTHON": sys.executable, "DMAO_CODE": str(code)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and "compare rc=0" in proc.stdout, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("dmao src:"))
    pinned = line.split()[1]
    assert line.endswith(f"from {code / 'dmao'}"), line
    assert pinned != code_version().split()[0]  # the marker file changed the hashed code
    summary = tmp_path / "session" / "compare" / "baseline" / "seed0" / "train_summary.json"
    assert json.loads(summary.read_text())["code_version"].split()[0] == pinned


def test_check_steps_zero_skips_the_check(tmp_path):
    """--check-steps 0 leaves the whole budget to the comparison: the check does not run (the
    comparison here fails at once on a missing recipe, which the script reports and survives)."""
    out = tmp_path / "session"
    options = {
        "--hours": "0.01",
        "--corpus": str(tmp_path / "corpus"),
        "--check-steps": "0",
        "--compare-config": str(tmp_path / "missing.yaml"),
    }
    proc = _run_session(out, options, timeout=300)
    log = proc.stdout
    assert "] gpu_check: skipped (--check-steps 0)" in log, log
    assert "gpu_check rc=" not in log and not (out / "gpu_check.log").exists()
    assert "corpus rc=0" in log and "compare rc=0" not in log, log
    assert "missing.yaml" in (out / "compare.log").read_text()
    assert (out / "results.tgz").exists()


# Stage 1's selection, as docs/protocol.md ("At scale") passes it to gpu_verdict.sh.
_SELECTED = (
    "--variant gradmax:dmao.growth_init=gradmax --variant rewarmup:dmao.rewarmup_steps=100 "
    "--control-from gradmax --search-from gradmax"
)


def test_gpu_verdict_runs_every_system_of_stage_two(tmp_path):
    """benchmarks/gpu_verdict.sh at toy size, one seed, with the protocol's command: baseline,
    DMAO, the two selected variants, reference, perturbation-only, the control and
    search-then-retrain (both from the selected gradmax), all in the packed comparison."""
    out = tmp_path / "verdict"
    proc = run_benchmark_script(
        "gpu_verdict.sh", out,
        ["--seeds", "0", "--systems", _SELECTED,
         "--overrides", _TINY.replace("train.max_steps=4", "train.max_steps=6")
         + " model.name=conformer_ctc model.conv_kernel_size=3 train.precision=fp32",
         "--hours", "0.03", "--corpus", str(tmp_path / "corpus"), "--jobs", "2",
         "--budget-s", "1500",  # 10 toy runs: generous on a CPU shared with other jobs
         "--archive-from", str(tmp_path / "kept")],  # not the repository's results/gpu/runs
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compare rc=0" in proc.stdout, proc.stdout + (out / "compare.log").read_text()
    with tarfile.open(out / "results.tgz") as tar:
        results = tar.extractfile("compare/results.md").read().decode()
    for system in ("baseline", "dmao", "gradmax", "rewarmup", "reference", "perturb", "control",
                   "search"):  # fmt: skip
        assert f"| {system} | test | 1 |" in results, results
    with tarfile.open(out / "results.tgz") as tar:  # the control trains gradmax's architecture
        control = tar.extractfile("compare/control/seed0/config.yaml").read().decode()
    assert "gradmax/seed0" in control, control
