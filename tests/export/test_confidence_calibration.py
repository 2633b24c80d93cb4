"""A word-confidence calibration in an export (``dmao export --confidence-from RESULT``): read
from a ``dmao decode`` result.json, stored in the manifest, applied by ``dmao transcribe`` when
its measure is the one fitted, and refused in one line when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmao.cli.main import main
from dmao.decoding.confidence import ConfidenceMeasure
from dmao.evaluation.confidence import Calibration
from dmao.export import Transcriber, export_run, load_exported
from dmao.export.confidence import bundled_calibration, calibration_from_decode

GREEDY = "entropy(a=1)/min"  # the greedy search's default measure


def _result(folder: Path, calibration: dict | None, measure: str = GREEDY) -> Path:
    """A `dmao decode` result.json as dmao writes it (the fields read here)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "split": "dev",
        "method": "greedy",
        "word_confidence": {"measure": measure, "num_words": 321, "calibration": calibration},
    }
    (folder / "result.json").write_text(json.dumps(record))
    return folder


def test_a_decode_result_gives_the_manifest_record(tmp_path):
    folder = _result(tmp_path / "dev-greedy", {"a": 2.0, "b": -1.0})
    record = calibration_from_decode(folder)
    assert record == {
        "search": "greedy",
        "measure": GREEDY,
        "a": 2.0,
        "b": -1.0,
        "split": "dev",
        "num_words": 321,
        "source": "dev-greedy",
    }
    fitted = bundled_calibration({"confidence": record}, "m.json")
    assert fitted.calibration == Calibration(2.0, -1.0) and fitted.measure == GREEDY
    assert bundled_calibration({"confidence": None}, "m.json") is None
    assert calibration_from_decode(_result(tmp_path / "none", None)) is None
    with pytest.raises(ValueError, match=r"m\.json: 'confidence': expected a search"):
        bundled_calibration({"confidence": {**record, "a": "x"}}, "m.json")
    with pytest.raises(ValueError, match="search='viterbi'"):
        bundled_calibration({"confidence": {**record, "search": "viterbi"}}, "m.json")
    bad = _result(tmp_path / "bad", {"a": float("nan"), "b": 0.0})
    with pytest.raises(ValueError, match=r"bad/result\.json: word_confidence: expected"):
        calibration_from_decode(bad)


def test_transcribe_applies_the_export_calibration_for_its_measure(
    tiny_dmao_run, tiny_corpus, tmp_path
):
    record = calibration_from_decode(_result(tmp_path / "dev-greedy", {"a": 2.0, "b": 1.0}))
    out = export_run(tiny_dmao_run, tmp_path / "model", onnx=False, confidence_calibration=record)
    exported = load_exported(out)
    assert exported.manifest["confidence"] == record
    assert exported.manifest["format_version"] == 1  # an older dmao ignores it: raw confidences
    calibration = Calibration(2.0, 1.0)
    files = sorted((tiny_corpus.root / "test").rglob("*.flac"))[:4]
    raw = Transcriber(exported, timestamps=True, calibrate=False)
    calibrated = Transcriber(exported, timestamps=True)
    assert raw.calibration is None and calibrated.calibration == calibration
    pairs = []
    for a, b in zip(raw.transcribe_files(files), calibrated.transcribe_files(files), strict=True):
        assert a.text == b.text
        pairs += [(w.confidence, v.confidence) for w, v in zip(a.words, b.words, strict=True)]
    assert pairs  # the tiny model emits words
    assert all(v == pytest.approx(calibration(w)) for w, v in pairs)
    # Another search (even with the same measure) or another measure gets raw confidences,
    # not a mapping fitted for something else.
    assert Transcriber(exported, method="beam").calibration is None
    other = Transcriber(exported, timestamps=True, confidence=ConfidenceMeasure("max_prob"))
    assert other.calibration is None


def test_export_and_transcribe_on_the_command_line(tiny_dmao_run, tiny_corpus, tmp_path, capsys):
    result = _result(tmp_path / "dev-greedy", {"a": 0.5, "b": 2.0})
    out = tmp_path / "model"
    args = ["export", str(tiny_dmao_run), "--out", str(out), "--no-onnx"]
    assert main([*args, "--confidence-from", str(result)]) == 0
    assert "calibrated as fitted on dev (dev-greedy, 321 words) for greedy search" in (
        capsys.readouterr().out
    )
    files = [str(f) for f in sorted((tiny_corpus.root / "test").rglob("*.flac"))[:3]]
    base = ["transcribe", "--model", str(out), "--json", "--timestamps", *files]
    assert main(base) == 0
    calibrated = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main([*base, "--raw-confidence"]) == 0
    raw = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pairs = [
        (w["confidence"], v["confidence"])
        for r, c in zip(raw, calibrated, strict=True)
        for w, v in zip(r["words"], c["words"], strict=True)
    ]
    assert pairs and all(v == pytest.approx(Calibration(0.5, 2.0)(w), abs=2e-3) for w, v in pairs)
    # A result without a calibration is refused in one line.
    empty = _result(tmp_path / "old", None)
    assert main([*args, "--force", "--confidence-from", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no word-confidence calibration" in err and len(err.splitlines()) == 1
