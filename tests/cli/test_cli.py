"""The ``dmao`` console script, run as a real subprocess where it matters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "x", "model.d_modl=3"], "unknown key(s) model.d_modl"),
        (["decode", "no/such/run"], "not a dmao run folder"),
        (["info", "--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["prepare", "librispeech", "--corpus-dir", "nowhere", "--out", "m"], "does not exist"),
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
