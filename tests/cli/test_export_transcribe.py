"""``dmao export`` and ``dmao transcribe`` on a trained tiny run, as the console script: bad files
in a batch, lists and folders as input, output formats, quiet exports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.cli.main import main
from dmao.evaluation.wer import score_corpus


def _dmao(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmao.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_export_then_transcribe_with_every_backend(tiny_dmao_run, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["export", str(tiny_dmao_run), "--out", str(out), "--checkpoint", "last", "--int8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "model.onnx" in printed and "ONNX vs PyTorch" in printed
    assert "model.int8.onnx" in printed and "int8 vs float32 ONNX" in printed
    assert main(["export", str(tiny_dmao_run), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err

    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]
    outputs = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        args = ["transcribe", "--model", str(out), "--backend", backend, *map(str, files)]
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]
        outputs[backend] = [line.split("\t")[1] for line in lines]
    assert outputs["onnx"] == outputs["torch"]  # int8 may differ: tests/export/test_quantize.py
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
    errors, summary = proc.stderr.splitlines()[:-1], proc.stderr.splitlines()[-1]
    assert len(errors) == 2  # nothing else on stderr: no log lines from lhotse or audioread
    assert errors[0] == f"dmao transcribe: error: {missing}: no such audio file"
    assert errors[1].startswith(f"dmao transcribe: error: {notes}: not readable audio")
    assert summary.startswith("dmao transcribe: 1 of 3 file(s) transcribed, 2 failed")


def _write_mixed_list(good: Path, folder: Path) -> tuple[Path, list[tuple[str, str | None]]]:
    """A list file of good and bad files: ``(list, [(id, expected error after "PATH: ")])``."""
    folder.mkdir()
    samples, rate = sf.read(good, dtype="int16")
    samples.astype("<i2").tofile(folder / "good.raw")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "truncated.flac").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "notes.wav").write_text("a text file renamed .wav\n")
    (folder / "sub").mkdir()
    sf.write(folder / "short.wav", np.zeros(320, np.float32), rate)
    entries = [
        ("good", str(good), None),
        ("missing", "gone.wav", "no such audio file"),
        ("empty", "empty.wav", "empty file (0 bytes)"),
        ("truncated", "truncated.flac", "not readable audio (flac decoder lost sync)"),
        ("text", "notes.wav", "not readable audio (Format not recognised)"),
        ("raw", "good.raw", None),
        ("folder", "sub", "a folder; expected an audio file"),
        ("short", "short.wav", "audio too short"),
    ]
    listing = folder / "list.txt"
    listing.write_text("".join(f"{i}\t{p}\n" for i, p, _ in entries), encoding="utf-8")
    return listing, [(i, e) for i, _, e in entries]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_mixed_list_on_both_backends(tiny_export, tiny_corpus, tmp_path, backend):
    """The console script on a real mixed list: one stderr line per bad file and a summary,
    nothing else; every good file (and the raw copy) transcribed; JSON Lines out; exit 1."""
    good = sorted((tiny_corpus.root / "test").rglob("*.flac"))[0]
    listing, expected = _write_mixed_list(good, tmp_path / "mixed")
    proc = _dmao(
        "transcribe",
        "--model",
        str(tiny_export),
        "--backend",
        backend,
        "--raw-format",
        "s16le",
        "--raw-sample-rate",
        "16000",
        "--json",
        f"@{listing}",
    )
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in records] == [i for i, _ in expected]
    *errors, summary = proc.stderr.splitlines()
    failed = [(i, e) for i, e in expected if e is not None]
    assert len(errors) == len(failed), proc.stderr
    for (utterance_id, error), line, record in zip(
        failed, errors, [r for r in records if "error" in r], strict=True
    ):
        assert record["id"] == utterance_id
        assert line == f"dmao transcribe: error: {record['error']}"
        assert record["error"].startswith(f"{record['path']}: {error}"), record
    done = [r for r in records if "error" not in r]
    assert [r["id"] for r in done] == ["good", "raw"]
    assert done[0]["text"] == done[1]["text"] != ""
    assert done[0]["duration_s"] == pytest.approx(sf.info(good).duration, abs=1e-3)
    assert all(0 < r["rtf"] < 10 for r in done)
    assert summary.startswith("dmao transcribe: 2 of 8 file(s) transcribed, 6 failed")
    assert "real-time factor" in summary and "Traceback" not in proc.stderr


class _Terminal(io.StringIO):
    """A captured stderr that says it is a terminal, so tqdm shows its bar."""

    def isatty(self) -> bool:
        return True


def test_a_folder_and_a_list_as_tsv_with_a_progress_bar(
    tiny_export, tiny_corpus, tmp_path, capsys, monkeypatch
):
    folder = tiny_corpus.root / "test"
    files = sorted(folder.rglob("*.flac"))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert (
        main(["transcribe", "--model", str(tiny_export), "--tsv", str(folder), f"@{listing}"]) == 0
    )
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["id", "text", "duration_s", "rtf"]
    ids = [str(folder / f.relative_to(folder)) for f in files] + [str(f) for f in files]
    assert [row[0] for row in rows[1:]] == ids
    assert [row[1:3] for row in rows[1:7]] == [row[1:3] for row in rows[7:]]
    assert all(float(row[2]) > 0.4 and float(row[3]) > 0 for row in rows[1:])
    assert f"{2 * len(files)}/{2 * len(files)}" in stderr.getvalue()  # the bar reached the end
    assert f"{2 * len(files)} of {2 * len(files)} file(s) transcribed" in stderr.getvalue()
    # One file at a time (--batch-seconds 0): the same files, texts and durations.
    args = ["transcribe", "--model", str(tiny_export), "--tsv", "--batch-seconds", "0"]
    assert main([*args, str(folder), f"@{listing}"]) == 0
    alone = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:3] for row in alone] == [row[:3] for row in rows]


def test_raw_options_are_checked_before_anything_runs(tiny_export, capsys):
    args = ["transcribe", "--model", str(tiny_export), "a.raw"]
    assert main([*args, "--raw-sample-rate", "8000"]) == 2
    assert capsys.readouterr().err == (
        "dmao transcribe: error: headerless PCM needs --raw-format as well "
        "(e.g. --raw-format s16le --raw-sample-rate 16000)\n"
    )
    assert main([*args, "--raw-format", "pcm16", "--raw-sample-rate", "8000"]) == 2
    assert "raw sample format must be one of s8, u8, s16le" in capsys.readouterr().err


def test_export_is_quiet_and_clean(tiny_dmao_run, tmp_path):
    """`dmao export` prints its summary and nothing from the ONNX exporter's ~70 log lines."""
    out = tmp_path / "model"
    proc = _dmao("export", str(tiny_dmao_run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "INFO" in line] == [
        line for line in proc.stderr.splitlines() if "INFO dmao.export.artefact: exported" in line
    ]
    assert len(proc.stderr.splitlines()) <= 1, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"exported {tiny_dmao_run} (best.pt, step 60) to {out} in ")


def test_transcribe_without_an_export_is_one_clear_line(tmp_path: Path):
    proc = _dmao("transcribe", "--model", str(tmp_path), str(tmp_path / "a.wav"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"dmao transcribe: error: {tmp_path} is not a dmao export (no manifest.json); "
        "create one with `dmao export RUN --out DIR`"
    )


def test_export_averages_checkpoints_or_refuses_in_one_line(tiny_dmao_run, tmp_path, capsys):
    out = tmp_path / "avg"
    args = ["export", str(tiny_dmao_run), "--out", str(out), "--no-onnx", "--avg", "1"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["checkpoint"].startswith("step-")  # --avg 1: the last checkpoint
    capsys.readouterr()
    assert main([*args[:-1], "99", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--avg 99" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_word_times_as_json_and_as_ctm(tiny_export, tiny_corpus, capsys, method):
    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:4]
    base = ["transcribe", "--model", str(tiny_export), "--method", method, *map(str, files)]
    assert main([*base, "--json", "--timestamps"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["words"] for r in records)  # the tiny model does emit words
    for record in records:
        words = record["words"]
        assert " ".join(w["word"] for w in words) == record["text"]
        for w, nxt in zip(words, [*words[1:], None], strict=True):
            assert 0 <= w["start"] < w["end"] <= record["duration_s"] + 0.04
            assert nxt is None or w["end"] <= nxt["start"]
            assert 0.0 <= w["confidence"] <= 1.0
    assert main([*base, "--ctm"]) == 0
    ctm = [line.split() for line in capsys.readouterr().out.splitlines()]
    expected = [
        [
            r["id"],
            "A",
            f"{w['start']:.2f}",
            f"{w['end'] - w['start']:.2f}",
            w["word"],
            f"{w['confidence']:.3f}",
        ]
        for r in records
        for w in r["words"]
    ]
    assert [row[:3] + row[4:] for row in ctm] == [row[:3] + row[4:] for row in expected]
    durations = [float(row[3]) for row in ctm]
    assert durations == pytest.approx([float(row[3]) for row in expected], abs=0.011)
    assert main([*base, "--timestamps"]) == 2
    assert "--timestamps adds word times to --json" in capsys.readouterr().err
    # Another measure: per frame exp(-H) <= p_max, and a mean is >= the min, so max-prob/mean
    # is never below the default (Gibbs entropy/min) for the same words.
    other = ["--confidence-measure", "max_prob", "--confidence-aggregation", "mean"]
    assert main([*base, "--json", "--timestamps", *other]) == 0
    lenient = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pairs = [
        (w["confidence"], v["confidence"])
        for r, s in zip(records, lenient, strict=True)
        for w, v in zip(r["words"], s["words"], strict=True)
    ]
    assert pairs and all(c <= d + 1e-3 for c, d in pairs)
    assert any(c < d for c, d in pairs)
    assert main([*base, "--ctm", "--confidence-alpha", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "confidence alpha must be > 0" in err and len(err.splitlines()) == 1


def test_a_kaldi_data_directory_transcribed_then_scored(tiny_export, tiny_corpus, tmp_path, capsys):
    """The Kaldi workflow: ``dmao transcribe data/test > hyp.txt``, then ``dmao score data/test
    hyp.txt``; a recording whose command fails is one error line, then a missing hypothesis."""
    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]
    transcripts = dict(
        line.split(" ", 1)
        for path in (tiny_corpus.root / "test").rglob("*.trans.txt")
        for line in path.read_text(encoding="utf-8").splitlines()
    )
    part = tmp_path / "data" / "test"
    part.mkdir(parents=True)
    wav_scp = [f"{files[0].stem} {files[0]}", f"{files[1].stem} cat {files[1]} |"]
    wav_scp.append(f"{files[2].stem} false {files[2]} |")
    (part / "wav.scp").write_text("\n".join(wav_scp) + "\n", encoding="utf-8")
    (part / "text").write_text("".join(f"{f.stem} {transcripts[f.stem]}\n" for f in files))
    assert main(["transcribe", "--model", str(tiny_export), str(part)]) == 1
    captured = capsys.readouterr()
    assert f"{part / 'wav.scp'}: recording {files[2].stem}: command exited with status 1" in (
        captured.err
    )
    lines = captured.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [files[0].stem, files[1].stem]
    hyp = tmp_path / "hyp.txt"
    hyp.write_text(captured.out, encoding="utf-8")

    assert main(["score", str(part), str(hyp), "--out", str(tmp_path / "scored")]) == 0
    summary, count = capsys.readouterr().out.splitlines()[:2]
    texts = [line.split("\t")[1] for line in lines] + [""]
    expected = score_corpus([transcripts[f.stem] for f in files], texts)
    assert summary == expected.summary() and expected.word.errors > 0
    assert count == "3 utterances (1 without a hypothesis, scored as empty)"


def test_a_nemo_manifest_transcribed_then_scored(tiny_export, tiny_corpus, tmp_path, capsys):
    """The NeMo workflow: ``dmao transcribe test.json > hyp.txt`` (one line per manifest line,
    named as ``dmao prepare nemo`` names it; a span of a file is its span), then ``dmao score
    test.json hyp.txt``, and NeMo's own output manifest (``pred_text``) scored the same."""
    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:2]
    transcripts = dict(
        line.split(" ", 1)
        for path in (tiny_corpus.root / "test").rglob("*.trans.txt")
        for line in path.read_text(encoding="utf-8").splitlines()
    )
    seconds = sf.info(files[1]).duration
    records = [
        {"audio_filepath": str(files[0]), "duration": sf.info(files[0]).duration,
         "text": transcripts[files[0].stem]},
        {"audio_filepath": str(files[1]), "offset": 0.0, "duration": seconds / 2, "text": "A"},
        {"audio_filepath": str(files[1]), "offset": seconds / 2, "text": "B"},
    ]  # fmt: skip
    manifest = tmp_path / "test.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert main(["transcribe", "--model", str(tiny_export), str(manifest)]) == 0
    lines = capsys.readouterr().out.splitlines()
    half = f"{round(seconds * 50):07d}"
    ids = [files[0].stem, f"{files[1].stem}-0000000-{half}", f"{files[1].stem}-{half}-end"]
    assert [line.split("\t")[0] for line in lines] == ids
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["score", str(manifest), str(hyp)]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    texts = [line.split("\t")[1] for line in lines]
    expected = score_corpus([r["text"] for r in records], texts)
    assert summary == expected.summary()
    nemo_out = tmp_path / "nemo_out.json"
    nemo_out.write_text("".join(json.dumps({**r, "pred_text": t}) + "\n"
                                for r, t in zip(records, texts, strict=True)))  # fmt: skip
    assert main(["score", str(manifest), str(nemo_out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == summary


def test_standard_input_as_a_stream_or_as_headerless_pcm(tiny_export, tiny_corpus):
    """``cat a.flac | dmao transcribe -`` and ``... --raw-format s16le ... -`` give the file's text
    (the corpus's FLAC is 16-bit: the same samples); empty input is one error line, exit 1."""
    flac = sorted((tiny_corpus.root / "test").rglob("*.flac"))[0]
    expected = _dmao("transcribe", "--model", str(tiny_export), str(flac)).stdout.split("\t")[1]
    samples, rate = sf.read(flac, dtype="int16")
    assert rate == 16000
    raw = ["--raw-format", "s16le", "--raw-sample-rate", "16000"]
    for options, data in (([], flac.read_bytes()), (raw, samples.astype("<i2").tobytes())):
        proc = subprocess.run(
            [sys.executable, "-m", "dmao.cli.main", "transcribe", "--model", str(tiny_export),
             *options, "-"],
            input=data, capture_output=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout.decode() == f"-\t{expected}", options
    proc = subprocess.run(
        [sys.executable, "-m", "dmao.cli.main", "transcribe", "--model", str(tiny_export), "-"],
        input=b"", capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = proc.stderr.decode().splitlines()
    assert errors[0] == "dmao transcribe: error: <stdin>: empty (0 bytes); expected audio"
