"""The ``dmao`` console script, run as a real subprocess where it matters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import tiny_train_overrides

from dmao.cli.main import main


def _dmao(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmao.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_info_json_counts_the_paper_model():
    proc = _dmao("info", "--json", "--vocab-size", "80", "model.d_model=256")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert abs(report["total"] - 19.0e6) / 19.0e6 < 0.02
    assert set(report["by_kind"]) >= {"frontend", "ff1", "conv", "mhsa", "ff2", "output"}


def test_info_table_lists_every_layer(capsys):
    assert main(["info", "model.num_layers=3", "model.d_model=128"]) == 0
    out = capsys.readouterr().out
    layer_rows = [line.split()[0] for line in out.splitlines() if line[:6].strip().isdigit()]
    assert layer_rows == ["1", "2", "3"]
    assert "total" in out.lower()


def test_compare_status_lists_the_plan_without_training(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--status", "--out", str(out), "--seeds", "0", "1", "--control"]
    assert main([*args, "--variant", "late:dmao.last_event_fraction=0.4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    # In the order they train: seed by seed, each seed's control after its systems.
    assert [row[0] for row in rows[1:9]] == [
        f"{system}/seed{k}" for k in (0, 1) for system in ("baseline", "dmao", "late", "control")
    ]
    assert rows[4][-3:] == ["waits", "for", "dmao/seed0"]
    assert rows[-1][:4] == ["0", "of", "8", "runs"]
    assert not out.exists()  # nothing was trained or written


def test_compare_status_with_share_prefix_shows_where_members_start(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--status", "--out", str(out), "--seeds", "0", "--share-prefix"]
    assert main([*args, "--variant", "rw:dmao.rewarmup_steps=10", "train.max_steps=1000"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    # The first event is after 150 of 1,000 updates; the last shared step on the default
    # validation (500), logging (25) and checkpoint (500) grid is 0, so nothing is shared...
    assert [row[0] for row in rows[1:4]] == ["baseline/seed0", "dmao/seed0", "rw/seed0"]
    every_100 = ["train.valid_every_steps=100", "train.checkpoint_every_steps=100"]
    assert main([*args, "--variant", "rw:dmao.rewarmup_steps=10", "train.max_steps=1000",
                 *every_100]) == 0  # fmt: skip
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    # ...validating and saving every 100 steps, the two DMAO systems share their first 100.
    assert [row[0] for row in rows[1:5]] == [
        "prefix-dmao-100/seed0", "baseline/seed0", "dmao/seed0", "rw/seed0",
    ]  # fmt: skip
    assert rows[3][2:] == ["starts", "from", "prefix-dmao-100/seed0", "at", "step", "100"]
    assert rows[-1][:7] == ["0", "of", "4", "runs", "done;", "4", "to"]
    assert rows[-1][7:9] == ["go,", "2,900"]  # 100 + 1,000 + 2 x 900 steps
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "x", "model.d_modl=3"], "unknown key(s) model.d_modl"),
        (["decode", "no/such/run"], "not a dmao run folder"),
        (["info", "--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["prepare", "librispeech", "--corpus-dir", "nowhere", "--out", "m"], "does not exist"),
        (
            ["prepare", "synthetic", "--out", "c", "--speed-perturb", "0.9"],
            "--speed-perturb needs --manifests",
        ),
        (["train", "--out", "x", "data.speed_perturb=[1.0]"], "data.speed_perturb: expected"),
        (
            ["prepare", "synthetic", "--out", "c", "--noise-dir", "n"],
            "--noise-dir needs --manifests",
        ),
        (["train", "--out", "x", "data.noise_snr=[20, 10]"], "data.noise_snr: expected"),
        (["train", "--out", "x", "data.noise_dir=nowhere"], "data.noise_dir: nowhere is not a"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = _dmao(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prepare_librispeech_finds_real_part_names(tiny_corpus, tmp_path):
    """A local copy in the real LibriSpeech layout (LibriSpeech/<part>/...) is found and read."""
    import shutil

    root = tmp_path / "download" / "LibriSpeech"
    for ours, theirs in (
        ("train", "train-clean-100"),
        ("dev", "dev-clean"),
        ("test", "test-clean"),
    ):
        shutil.copytree(tiny_corpus.root / ours, root / theirs)
    out = tmp_path / "manifests"
    proc = _dmao("prepare", "librispeech", "--corpus-dir", str(root.parent), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "train-clean-100, dev-clean, test-clean" in proc.stdout
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        assert (out / f"cuts_{part}.jsonl.gz").is_file()


def test_demo_compares_baseline_and_dmao_and_shows_the_architecture(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=8",
        "train.valid_every_steps=4",
        "train.checkpoint_every_steps=4",
        "dmao.score_every_steps=2",
    ]
    assert main(["demo", "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "| baseline | 0 | test |" in printed and "| dmao | 0 | test |" in printed
    # The architecture table has one column per layer and a row per module kind.
    assert "| module | 1 | 2 | default |" in printed
    assert "event at step" in printed  # the shipped DMAO demo recipe really reallocated
    for name in ("results.md", "valid_wer.png", "architecture_heatmap.png"):
        assert name in printed and next(out.rglob(name)).is_file()
    from dmao.cli.demo import VERDICT

    assert printed.rstrip().endswith(VERDICT)


def test_the_demos_verdict_agrees_with_results_and_readme():
    """`dmao demo`'s closing lines, README's paragraph and RESULTS.md's decision table name the
    same system and the same evidence (issue 16: they must agree)."""
    from pathlib import Path

    from dmao.cli.demo import VERDICT

    root = Path(__file__).resolve().parents[2]
    results = (root / "RESULTS.md").read_text()
    readme = (root / "README.md").read_text()
    decision = results.split("## Decision: what to run", 1)[1].split("\n## ", 1)[0]
    assert "| the best WER at a fixed training budget | **the baseline**" in decision
    assert "train\nthe baseline" in VERDICT and "train the baseline" in readme
    assert "−0.69 ± 0.83" in decision and "-0.69 +- 0.83" in VERDICT
    assert "−0.69 ± 0.83" in readme
    tables = (root / "results" / "final" / "tables.md").read_text()
    assert "| gradmax | 5 | -0.69 ± 0.83 |" in tables


def test_train_print_config_is_the_resolved_config_and_loads_back(tmp_path, capsys):
    from pathlib import Path

    import yaml

    from dmao.config import load_config

    recipe = Path(__file__).resolve().parents[2] / "dmao/configs/synthetic/demo_dmao.yaml"
    overrides = ["train.max_steps=123", "model.d_model=72"]
    assert main(["train", "--config", str(recipe), "--print-config", *overrides]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["train"]["max_steps"] == 123
    saved = tmp_path / "resolved.yaml"
    saved.write_text(printed)
    assert load_config(saved, []) == load_config(recipe, overrides)
    assert not (tmp_path / "exp").exists()  # nothing trained, no run folder

    assert main(["train", "--config", str(recipe)]) == 2
    assert "--out: a run folder is required to train" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback():
    """`dmao ... | head`: the pipe closes before the output is written."""
    child = subprocess.Popen(
        [sys.executable, "-m", "dmao.cli.main", "train", "--print-config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # long before the child has imported torch and resolved the config
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
