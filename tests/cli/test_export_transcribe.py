"""``dmao export`` and ``dmao transcribe`` on a trained tiny run, as the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dmao.cli.main import main


def _dmao(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmao.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_export_then_transcribe_with_both_backends(tiny_dmao_run, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", str(tiny_dmao_run), "--out", str(out), "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "model.onnx" in printed and "ONNX vs PyTorch" in printed
    assert main(["export", str(tiny_dmao_run), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err

    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]
    outputs = {}
    for backend in ("torch", "onnx"):
        args = ["transcribe", "--model", str(out), "--backend", backend, *map(str, files)]
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]
        outputs[backend] = [line.split("\t")[1] for line in lines]
    assert outputs["onnx"] == outputs["torch"]
    assert any(outputs["torch"])  # the tiny model does emit text

    assert main(["transcribe", "--model", str(out), "--method", "beam", str(files[0])]) == 0
    assert capsys.readouterr().out.startswith(f"{files[0]}\t")


def test_transcribe_reports_bad_files_and_exits_1(tiny_export, tiny_corpus, tmp_path):
    good = sorted((tiny_corpus.root / "test").rglob("*.flac"))[0]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    missing = tmp_path / "missing.flac"
    proc = _dmao("transcribe", "--model", str(tiny_export), str(missing), str(notes), str(good))
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{good}\t") and len(proc.stdout.splitlines()) == 1
    # (lhotse may log which audio backend it tried; the errors are the "dmao transcribe" lines)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dmao transcribe:")]
    assert len(errors) == 2
    assert errors[0] == f"dmao transcribe: error: {missing}: no such audio file"
    assert errors[1].startswith(f"dmao transcribe: error: {notes}: not readable audio")
    assert "Traceback" not in proc.stderr


def test_transcribe_without_an_export_is_one_clear_line(tmp_path: Path):
    proc = _dmao("transcribe", "--model", str(tmp_path), str(tmp_path / "a.wav"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"dmao transcribe: error: {tmp_path} is not a dmao export (no manifest.json); "
        "create one with `dmao export RUN --out DIR`"
    )
