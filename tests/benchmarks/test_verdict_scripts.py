"""The verdict's scripts (docs/protocol.md): the stage-1 selection rule and stage 2 at toy size."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_train_overrides

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT / "benchmarks"))  # verdict_select imports verdict_tables


def _load(name: str):
    """benchmarks/NAME.py as a module, registered in sys.modules (dataclasses look their module
    up there)."""
    spec = importlib.util.spec_from_file_location(name, _ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, rows: list[tuple[str, int, str, float, float]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "seed", "split", "wer", "cer", "parameters"])
        for system, seed, split, wer, cer in rows:
            writer.writerow([system, seed, split, wer, cer, 1])
    return path


# dev WER per seed 0, 1, 2 (baseline 0.50 0.60 0.70); test rows are deliberately the opposite
# ranking, so a rule that read them would pick other systems.
DEV = {
    "baseline": (0.50, 0.60, 0.70),
    "dmao": (0.51, 0.60, 0.70),  # +0.33 points
    "copy": (0.52, 0.61, 0.72),  # +1.67
    "split": (0.49, 0.59, 0.69),  # -1.00, CER tie-break below
    "gradmax": (0.48, 0.60, 0.69),  # -1.00
    "rewarmup": (0.45, 0.62, 0.70),  # -1.00 too, but the worst CER of the three
    "gradual": (0.60, 0.50, 0.70),  # 0.00
}
CER = {"split": 0.20, "gradmax": 0.10, "rewarmup": 0.30}


def _rows() -> list[tuple[str, int, str, float, float]]:
    rows = []
    for system, wers in DEV.items():
        for seed, wer in enumerate(wers):
            rows.append((system, seed, "dev", wer, CER.get(system, 0.25)))
            rows.append((system, seed, "test", 1.0 - wer, 0.5))
    return rows


def test_selection_ranks_by_mean_paired_dev_wer_then_cer(tmp_path, capsys):
    select = _load("verdict_select")
    path = _write(tmp_path / "results.csv", _rows())
    ranked = select.rank(select.read_dev(path))
    assert [r.system for r in ranked] == [
        "gradmax",  # -1.00 points, CER 0.10
        "split",  # -1.00, CER 0.20
        "rewarmup",  # -1.00, CER 0.30
        "gradual",
        "dmao",
        "copy",
    ]
    assert ranked[0].wer_delta == pytest.approx(-0.01)
    assert ranked[1].seeds_better == 3 and ranked[2].seeds_better == 1
    assert select.main([str(path), "--names"]) == 0
    assert capsys.readouterr().out.strip() == "gradmax split"


def test_selection_refuses_a_missing_run(tmp_path, capsys):
    select = _load("verdict_select")
    rows = [r for r in _rows() if not (r[0] == "copy" and r[1] == 2)]
    path = _write(tmp_path / "results.csv", rows)
    assert select.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "copy/seed2" in err and str(path) in err


@pytest.mark.slow
def test_stage2_runs_the_gate_alone_then_every_system(tiny_corpus, tmp_path):
    """Stage 2 at toy size (20 steps, seed 0): the baseline of seed 0 first through `dmao train`
    and the convergence gate, then `dmao compare` with A, B, reference, perturb, the control and
    search-then-retrain, which recognises the gate run as complete."""
    out = tmp_path / "final"
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=20",
        "train.valid_every_steps=2",
        "train.checkpoint_every_steps=10",
        "dmao.score_every_steps=2",
        "optim.peak_lr=1e-9",  # nothing is learnt: the gate's dev WER cannot move
    ]
    env = {
        **os.environ,
        "DMAO": str(Path(sys.executable).parent / "dmao"),
        "PYTHON": sys.executable,
        "STEPS": "20",
        "SEEDS": "0",
        "EXTRA_OVERRIDES": " ".join(o.replace(" ", "") for o in overrides),
    }
    script = _ROOT / "benchmarks" / "verdict_stage2.sh"
    proc = subprocess.run(
        ["bash", str(script), str(out), "split", "dmao"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "convergence gate" in proc.stdout and "moved +0.00 points" in proc.stdout
    assert "baseline/seed0 is complete, skipping training" in proc.stderr
    with open(out / "results.csv", newline="") as f:
        systems = {row["system"] for row in csv.DictReader(f)}
    assert systems == {"baseline", "dmao", "split", "reference", "perturb", "control", "search"}
    bad = subprocess.run(
        ["bash", str(script), str(out), "split", "split"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "must differ" in bad.stderr


def test_stage2_can_skip_the_gate_and_pass_options_to_compare(tmp_path):
    """Amendment 2: GATE_CHECK=skip trains no gate run first; COMPARE_ARGS reach `dmao compare`
    (here --status, which trains nothing, with the shared prefixes and the archive)."""
    env = {
        **os.environ,
        "DMAO": str(Path(sys.executable).parent / "dmao"),
        "PYTHON": sys.executable,
        "GATE_CHECK": "skip",
        "JOBS": "2",
        "COMPARE_ARGS": f"--status --share-prefix --archive {tmp_path / 'kept'}",
    }
    proc = subprocess.run(
        ["bash", str(_ROOT / "benchmarks" / "verdict_stage2.sh"), str(tmp_path / "out"),
         "gradmax", "rewarmup"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "convergence gate" not in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing trained
    labels = [line.split()[0] for line in proc.stdout.splitlines()[1:] if "/seed" in line]
    assert labels[0].startswith("prefix-")
    assert "control/seed4" in labels and "search/seed4" in labels
    assert "starts from prefix-" in proc.stdout and "0 of " in proc.stdout


BASE = (0.30, 0.32, 0.28, 0.31, 0.29)
FINAL = {
    "baseline": (0.0, 0.0, 0.0, 0.0, 0.0),
    "good": (-0.030, -0.028, -0.032, -0.031, -0.029),  # a win, ~10 % relative
    "small": (-0.010, -0.009, -0.011, -0.010, -0.010),  # a win, ~3 % relative
    "noisy": (-0.05, 0.04, -0.03, 0.03, -0.04),  # mean -1 point, std ~4.4: level
    "bad": (0.020, 0.025, 0.015, 0.020, 0.020),  # a loss
}


def _final_rows(systems: dict) -> list[tuple[str, int, str, float, float]]:
    rows = []
    for system, deltas in systems.items():
        for seed, (b, d) in enumerate(zip(BASE, deltas, strict=True)):
            rows.append((system, seed, "test", b + d, 0.1 + d / 2))
            rows.append((system, seed, "dev", b + d + 0.01, 0.1))
    return rows


def test_final_table_gives_each_verdict_and_the_decision(tmp_path, capsys):
    tables = _load("verdict_tables")
    rows = tables.read(_write(tmp_path / "results.csv", _final_rows(FINAL)))
    verdicts = {s: tables.paired(rows, s, "test").verdict for s in FINAL if s != "baseline"}
    assert verdicts == {"good": "win", "small": "win", "noisy": "level", "bad": "loss"}
    good = tables.paired(rows, "good", "test")
    assert good.mean == pytest.approx(-0.030) and good.relative == pytest.approx(0.03 / 0.30)
    table, decision = tables.tables(rows)
    assert "run **good**" in decision and "is reproduced" in decision
    assert "loss): bad" in decision
    assert "| good | 5 | -3.00 ± 0.16 |" in table and "| 5/5 |" in table
    # Without the two wins, the decision is the baseline.
    rest = {k: v for k, v in FINAL.items() if k not in ("good", "small")}
    rows = tables.read(_write(tmp_path / "rest.csv", _final_rows(rest)))
    assert "run **the baseline**" in tables.tables(rows)[1]
    assert tables.main([str(tmp_path / "rest.csv")]) == 0
    assert "| noisy | 5 |" in capsys.readouterr().out


def test_a_small_win_does_not_reproduce_the_paper(tmp_path):
    tables = _load("verdict_tables")
    only = {"baseline": FINAL["baseline"], "small": FINAL["small"]}
    rows = tables.read(_write(tmp_path / "results.csv", _final_rows(only)))
    decision = tables.tables(rows)[1]
    assert "run **small**" in decision and "not reproduced" in decision


def _run_with_dev_wer(run: Path, wers: dict[int, float]) -> Path:
    """A run folder whose metrics.jsonl has these dev WERs, written by the training's own logger."""
    from dmao.training.metrics import MetricLogger

    logger = MetricLogger(run, tensorboard=False)
    for step, wer in wers.items():
        logger.log("train", step, loss=1.0)
        logger.log("valid", step, loss=1.0, wer=wer, cer=wer / 3)
    logger.close()
    return run


def test_convergence_gate_passes_fails_and_names_a_missing_step(tmp_path, capsys):
    conv = _load("verdict_convergence")
    # The 3,000-step gate run of 2026-12-05 (its WERs rounded here: it moved -1.54 points).
    failed = _run_with_dev_wer(
        tmp_path / "failed", {2550: 0.4879, 2700: 0.4636, 2850: 0.4388, 3000: 0.4483}
    )
    assert conv.main(["--gate", str(failed), "--steps", "3000"]) == 3
    out = capsys.readouterr().out
    assert "dev WER 2700: 46.36, 2850: 43.88, 3000: 44.83; moved -1.53 points" in out, out
    assert "FAILED" in out and "2550" not in out
    passed = _run_with_dev_wer(tmp_path / "passed", {5400: 0.300, 5700: 0.296, 6000: 0.305})
    assert conv.main(["--gate", str(passed), "--steps", "6000"]) == 0
    assert "moved +0.50 points" in capsys.readouterr().out
    gap = _run_with_dev_wer(tmp_path / "gap", {5500: 0.3, 6000: 0.3})
    assert conv.main(["--gate", str(gap), "--steps", "6000"]) == 2
    assert "no dev WER at steps 5400 and 6000 (validated at [5500, 6000])" in (
        capsys.readouterr().err
    )


def test_convergence_table_has_one_row_per_run_of_the_named_systems(tmp_path, capsys):
    conv = _load("verdict_convergence")
    runs = {
        ("baseline", 0): {90: 0.50, 100: 0.495},
        ("baseline", 1): {90: 0.52, 100: 0.50},
        ("dmao", 0): {90: 0.40, 100: 0.40},
    }
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "seed", "split", "wer", "cer", "run_dir"])
        for (system, seed), wers in runs.items():
            run = _run_with_dev_wer(tmp_path / system / f"seed{seed}", wers)
            for split in ("dev", "test"):
                writer.writerow([system, seed, split, 0.5, 0.2, run])
    assert conv.main([str(tmp_path / "results.csv"), "--steps", "100"]) == 0
    table = capsys.readouterr().out
    assert "| baseline | 0 | 50.00 | 49.50 | -0.50 | yes |" in table
    assert "| baseline | 1 | 52.00 | 50.00 | -2.00 | no |" in table
    assert "dmao" not in table
    assert conv.main([str(tmp_path / "results.csv"), "--steps", "100", "--systems", "dmao"]) == 0
    assert "| dmao | 0 | 40.00 | 40.00 | +0.00 | yes |" in capsys.readouterr().out

    # The same table from archived records (DIR/<system>/seed<k>) when run_dir is gone.
    archive = tmp_path / "archive"
    archive.mkdir()
    (tmp_path / "baseline").rename(archive / "baseline")
    argv = [str(tmp_path / "results.csv"), "--steps", "100"]
    assert conv.main(argv) == 2  # the run folders named in the CSV have moved
    assert conv.main([*argv, "--runs", str(archive)]) == 0
    assert "| baseline | 1 | 52.00 | 50.00 | -2.00 | no |" in capsys.readouterr().out


def test_finalize_writes_every_table_from_the_csv_and_the_records(tmp_path):
    """The end of stage 2 from what git keeps: the CSV (with run_dir paths that no longer exist)
    and the archived records (config.yaml, architecture.json, metrics.jsonl)."""
    import json

    from dmao.config import load_config, save_config

    out, runs = tmp_path / "final", tmp_path / "final" / "runs"
    config = load_config(None, ["model.num_layers=2", "model.d_model=64", "model.head_dim=16"])
    ffn, conv, heads = 256, 64, 4  # the defaults of this model
    moves = {0: (-64, 32, 1), 1: (-64, 16, 0), 2: (-128, 32, 1)}  # ff2 of layer 1 shrinks...
    rows = []
    for system in ("baseline", "gradmax", "reference"):
        for seed in range(3):
            run = runs / system / f"seed{seed}"
            run.mkdir(parents=True)
            save_config(config, run / "config.yaml")
            dff, dconv, dheads = moves[seed] if system != "baseline" else (0, 0, 0)
            # ...and the budget goes to conv and attention of layer 2 (widths in units of the
            # model's own granularity)
            layers = [
                {"ff1": ffn, "conv": conv, "mhsa": heads, "ff2": ffn + dff},
                {"ff1": ffn, "conv": conv + dconv, "mhsa": heads + dheads, "ff2": ffn},
            ]
            (run / "architecture.json").write_text(json.dumps({"layers": layers}))
            _run_with_dev_wer(run, {90: 0.5 + seed / 100, 100: 0.5 + seed / 100})
            for split, wer in (("dev", 0.5 + seed / 100), ("test", 0.4 + seed / 100)):
                delta = {"baseline": 0.0, "gradmax": -0.01, "reference": 0.02}[system]
                rows.append((system, seed, split, wer + delta, 0.2))
            _decode_record(run, [4 + (system == "reference")] * 50)  # test decode: 40 % / 50 %
    csv_path = _write(tmp_path / "exp_results.csv", rows)
    env = {
        **os.environ,
        "DMAO": str(Path(sys.executable).parent / "dmao"),
        "PYTHON": sys.executable,
        "STEPS": "100",
        "OMP_NUM_THREADS": "1",
        "REFERENCE": str(runs / "gradmax" / "seed0" / "architecture.json"),  # 2 layers like these
    }
    script = _ROOT / "benchmarks" / "verdict_finalize.sh"
    proc = subprocess.run(
        ["bash", str(script), str(csv_path), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "results.csv").read_text() == csv_path.read_text()
    tables = (out / "tables.md").read_text()
    assert "| gradmax | 3 | -1.00 ± 0.00 |" in tables and "| reference | 3 | +2.00" in tables
    convergence = (out / "convergence.md").read_text()
    assert "| baseline | 2 | 52.00 | 52.00 | +0.00 | yes |" in convergence
    assert "gradmax" not in convergence
    architecture = (out / "architecture.md").read_text()
    assert "## Where the seeds of gradmax put the budget" in architecture
    assert "components per layer over 3 runs" in architecture
    assert "agreement between the runs (pairwise)" in architecture
    assert "### reference" in architecture and "### baseline" not in architecture
    assert (out / "report" / "gradmax" / "architecture_seeds_heatmap.png").is_file()
    bootstrap = (out / "bootstrap.md").read_text()
    assert "| gradmax | 3 | +0.00 | 0.00 | 0.00 | 0 | 0 |" in bootstrap, bootstrap
    assert "| reference | 3 | +10.00 | 0.00 | 0.00 | 0 | 3 |" in bootstrap, bootstrap

    compute = (out / "compute.md").read_text()  # these records have no train_summary.json
    assert "| gradmax | 3 | — | — | 0 | — |" in compute and "| sum | 9 |" in compute, compute

    missing = subprocess.run(
        ["bash", str(script), str(csv_path), str(tmp_path / "nowhere")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "no records in" in missing.stderr


def _decode_record(run: Path, wrong: list[int], words: int = 10) -> None:
    """A record's test decode: utterance u with ``wrong[u]`` of its ``words`` words substituted."""
    from dmao.evaluation.wer import write_hypotheses

    refs = [" ".join(f"w{u}x{i}" for i in range(words)) for u in range(len(wrong))]
    hyps = [
        " ".join("oops" if i < n else f"w{u}x{i}" for i in range(words))
        for u, n in enumerate(wrong)
    ]
    ids = [f"utt{u:03d}" for u in range(len(wrong))]
    write_hypotheses(run / "decode" / "test-greedy" / "hypotheses.txt", ids, refs, hyps)


def _bootstrap_records(runs: Path) -> None:
    """Three seeds: `better` halves the baseline's errors, `same` decodes alike, `noisy` is better
    on one seed and worse on another; a helper `search-phase` record is there too."""
    baseline = [2] * 100  # 20 % WER on every seed
    for seed in range(3):
        _decode_record(runs / "baseline" / f"seed{seed}", baseline)
        _decode_record(runs / "better" / f"seed{seed}", [1] * 100)
        _decode_record(runs / "same" / f"seed{seed}", baseline)
        noisy = {0: [1] * 100, 1: [3] * 100, 2: [2] * 99 + [3]}[seed]
        _decode_record(runs / "noisy" / f"seed{seed}", noisy)
        _decode_record(runs / "search-phase" / f"seed{seed}", [9] * 100)


def test_bootstrap_puts_test_set_noise_beside_seed_noise(tmp_path, capsys):
    boot = _load("verdict_bootstrap")
    runs = tmp_path / "runs"
    _bootstrap_records(runs)
    (runs / "same" / "seed2").rename(runs / "same" / "seed7")  # not a baseline seed: not paired
    assert boot.main([str(runs), "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    # summary: mean Δ, std over seeds, mean half-width of the test-set intervals, significant seeds
    assert "| better | 3 | -10.00 | 0.00 | 0.00 | 3 | 0 |" in out, out  # no spread: zero width
    assert "| same | 2 | +0.00 | 0.00 | 0.00 | 0 | 0 |" in out, out
    noisy = next(line for line in out.splitlines() if line.startswith("| noisy | 3 |"))
    cells = [c.strip() for c in noisy.strip("|").split("|")]
    assert cells[2] == "+0.03" and float(cells[3]) == pytest.approx(10.0, abs=0.01)
    assert 0 < float(cells[4]) < 1  # seed 2's one extra error: a narrow interval around +0.1
    assert cells[5:] == ["1", "1"]
    assert "| better | 0 | -10.00 | [-10.00, -10.00] | 100.0 % |" in out
    assert "| same | 1 | +0.00 | [+0.00, +0.00] | 0.0 % |" in out
    assert "search-phase" not in out and "| same | 2 |" not in out.split("| seed |")[1]


def test_bootstrap_names_a_record_without_its_decode(tmp_path, capsys):
    boot = _load("verdict_bootstrap")
    runs = tmp_path / "runs"
    _bootstrap_records(runs)
    (runs / "better" / "seed1" / "decode" / "test-greedy" / "hypotheses.txt").unlink()
    assert boot.main([str(runs), "--resamples", "100"]) == 2
    err = capsys.readouterr().err
    assert "better:" in err and "better/seed1/decode/test-greedy" in err
    assert boot.main([str(tmp_path / "nowhere")]) == 2
    assert "no baseline records in" in capsys.readouterr().err


def test_compute_table_sums_minutes_and_names_every_code_version(tmp_path, capsys):
    import json

    compute = _load("verdict_compute")
    runs = tmp_path / "runs"
    summaries = {
        ("baseline", 0): {"steps": 6000, "train_seconds": 600.0, "code_version": "src:a"},
        ("baseline", 1): {"steps": 6000, "train_seconds": 1200.0, "code_version": "src:a"},
        ("baseline", 2): {"steps": 6000, "train_seconds": 1500.0, "code_version": "src:a"},
        ("search", 0): {"steps": 3600, "train_seconds": 360.0, "code_version": "src:b"},
    }
    for (system, seed), summary in summaries.items():
        (runs / system / f"seed{seed}").mkdir(parents=True)
        (runs / system / f"seed{seed}" / "train_summary.json").write_text(json.dumps(summary))
    (runs / "search" / "seed1").mkdir()  # a record without its summary
    assert compute.main([str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| baseline | 3 | 6000 | 20.0 | 55 | src:a |" in out  # median of 10, 20, 25 min
    assert "| search | 2 | 3600 | 6.0 | 6 | src:b |" in out
    assert "| sum | 5 | | | 61 | 2 version(s) |" in out
    assert compute.main([str(tmp_path / "nowhere")]) == 2
    assert "no records in" in capsys.readouterr().err
