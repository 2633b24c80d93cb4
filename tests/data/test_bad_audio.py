"""Corrupt audio at preparation time (RELIABILITY.md item 9): strict lists every bad file and stops
before training, skip leaves each out once within an error budget.

Every test works on copies of the tiny corpus with real broken files. Its ``test`` part has six
utterances ``61-70968-000{0..5}``; the broken copy makes them

    0000  0 bytes                      pre-scan: empty_file
    0001  truncated FLAC (first third) extraction: unreadable_audio (header reads, data does not)
    0002  missing                      pre-scan: missing_audio
    0003  NaN samples                  extraction: non_finite_samples
    0004  8 kHz                        not bad: resampled to 16 kHz
    0005  untouched

FLAC holds integer PCM only, so NaN cannot be in a real ``.flac``; libsndfile (and so lhotse's
recipe) picks the format from the file's content, so 0003 is a float WAV holding NaN under the
``.flac`` name, which reads like any LibriSpeech file.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.cli.main import main
from dmao.config.schema import DataConfig
from dmao.data.bad_audio import STAGING_DIR, check_bad_audio_settings, probe_audio
from dmao.data.manifests import cut_transcript, cuts_path, prepare_manifests
from dmao.data.pipeline import prepare_parts
from dmao.data.text import normalize_transcript

IDS = [f"61-70968-000{i}" for i in range(6)]
PRESCAN_BAD = {IDS[0]: "empty_file", IDS[2]: "missing_audio"}
DATA_BAD = {IDS[1]: "unreadable_audio", IDS[3]: "non_finite_samples"}


def _flac(root: Path, utt_id: str) -> Path:
    return root / "test" / "61" / "70968" / f"{utt_id}.flac"


def _break(root: Path, which: set[str]) -> None:
    """Break the ``test`` files named in ``which`` (see the module docstring)."""
    if IDS[0] in which:
        _flac(root, IDS[0]).write_bytes(b"")
    if IDS[1] in which:
        data = _flac(root, IDS[1]).read_bytes()
        _flac(root, IDS[1]).write_bytes(data[: len(data) // 3])
    if IDS[2] in which:
        _flac(root, IDS[2]).unlink()
    if IDS[3] in which:
        samples, rate = sf.read(_flac(root, IDS[3]), dtype="float32")
        samples[100:200] = np.nan
        sf.write(_flac(root, IDS[3]), samples, rate, format="WAV", subtype="FLOAT")
    if IDS[4] in which:
        samples, _ = sf.read(_flac(root, IDS[4]), dtype="float32")
        sf.write(_flac(root, IDS[4]), samples[::2], 8000)


@pytest.fixture(scope="module")
def broken(tiny_corpus, tmp_path_factory) -> Path:
    """A copy of the tiny corpus (all parts) whose ``test`` part has every kind of bad audio."""
    root = tmp_path_factory.mktemp("bad_audio") / "LibriSpeech"
    shutil.copytree(tiny_corpus.root, root)
    _break(root, set(IDS[:5]))
    return root


@pytest.fixture(scope="module")
def data_broken(tiny_corpus, tmp_path_factory) -> Path:
    """A copy of the ``test`` part whose headers all read: truncated data, NaN samples, 8 kHz."""
    root = tmp_path_factory.mktemp("bad_audio_data") / "LibriSpeech"
    shutil.copytree(tiny_corpus.root / "test", root / "test")
    _break(root, {IDS[1], IDS[3], IDS[4]})
    return root


def _report(out: Path) -> dict[str, dict]:
    entries = json.loads((out / "bad_audio.json").read_text())["bad_audio"]
    return {e["utterance_id"]: e for e in entries}


def test_probe_reads_headers_only(broken):
    reasons = {utt: probe_audio(_flac(broken, utt)) for utt in IDS}
    assert reasons[IDS[0]] == ("empty_file", "0 bytes")
    assert reasons[IDS[2]][0] == "missing_audio"
    # Header-only: the truncated FLAC, the NaN WAV and the 8 kHz file pass the pre-scan.
    assert reasons[IDS[1]] is None and reasons[IDS[3]] is None and reasons[IDS[4]] is None
    garbage = broken.parent / "garbage.flac"
    garbage.write_bytes(b"not audio at all" * 10)
    reason, detail = probe_audio(garbage)
    assert reason == "unreadable_audio" and "Format not recognised" in detail


def test_strict_cli_lists_every_header_problem_and_exits_nonzero(broken, tmp_path):
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "dmao.cli.main", "prepare", "librispeech"]
    cmd += ["--corpus-dir", str(broken.parent), "--out", str(out), "--parts", "dev", "test"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "test: 2 of 6 utterances" in run.stderr and "data.bad_audio=strict" in run.stderr
    for utt, reason in PRESCAN_BAD.items():
        assert f"test {utt}: {reason}: {_flac(broken, utt)}" in run.stderr
    assert _report(out).keys() == PRESCAN_BAD.keys()
    assert {e["reason"] for e in _report(out).values()} == set(PRESCAN_BAD.values())
    # Nothing was written as if complete, not even the clean part: the error came first.
    assert not list(out.glob("cuts_*"))


def test_strict_lists_data_problems_after_extraction(data_broken, tmp_path):
    out = tmp_path / "m"
    with pytest.raises(ValueError, match="found in the feature extraction") as err:
        prepare_manifests(data_broken, out, ["test"], num_jobs=2)  # spawned feature workers
    message = str(err.value)
    assert "test: 2 of 6 utterances" in message
    assert f"test {IDS[1]}: unreadable_audio: " in message and "lost sync" in message
    assert f"test {IDS[3]}: non_finite_samples: " in message and "100 NaN" in message
    assert IDS[4] not in message  # 8 kHz is resampled, not bad
    assert {u: e["reason"] for u, e in _report(out).items()} == DATA_BAD
    assert not cuts_path(out, "test").exists()


def test_skip_leaves_bad_utterances_out_once_and_keeps_text_aligned(broken, tmp_path, caplog):
    out = tmp_path / "m"
    args = ["prepare", "librispeech", "--corpus-dir", str(broken), "--out", str(out)]
    args += ["--parts", "test", "dev", "--num-jobs", "1"]
    args += ["--bad-audio", "skip", "--max-bad-audio-fraction", "0.7"]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    cuts = prepare_manifests(broken, out, ["test", "dev"])  # cached now
    assert sorted(cuts["test"].ids) == IDS[4:]
    assert len(cuts["dev"]) == len(list((broken / "dev").rglob("*.flac")))

    # Each bad utterance logged exactly once, with path and reason; lhotse's own per-cut
    # "[Suppressed AudioLoadingError]" warning is filtered out.
    bad = {**PRESCAN_BAD, **DATA_BAD}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for utt, reason in bad.items():
        hits = [w for w in warnings if utt in w]
        assert len(hits) == 1 and f"{reason}: {_flac(broken, utt)}" in hits[0], hits
    assert not any("[Suppressed" in w for w in warnings)
    report = _report(out)
    assert {u: e["reason"] for u, e in report.items()} == bad
    assert all(e["part"] == "test" and e["path"] for e in report.values())
    counts = json.loads((out / "bad_audio.json").read_text())["parts"]
    assert counts["test"]["utterances"] == 6 and counts["test"]["bad_utterances"] == 4
    assert counts["dev"]["bad_utterances"] == 0

    # Surviving cuts: their own transcript line and their own (real, not staged) file.
    lines = dict(
        line.split(maxsplit=1)
        for line in (broken / "test/61/70968/61-70968.trans.txt").read_text().splitlines()
    )
    for cut in cuts["test"]:
        assert cut_transcript(cut) == normalize_transcript(lines[cut.id])
        source = Path(cut.recording.sources[0].source)
        assert source == _flac(broken, cut.id) and STAGING_DIR not in str(source)
        assert np.isfinite(cut.load_features()).all()
    assert not (out / STAGING_DIR).exists()
    # The 8 kHz file is resampled: 16 kHz cut, the file's duration, audio at 16 kHz.
    resampled = cuts["test"][IDS[4]]
    info = sf.info(_flac(broken, IDS[4]))
    assert info.samplerate == 8000 and resampled.sampling_rate == 16000
    assert resampled.duration == pytest.approx(info.duration, abs=1e-3)
    assert resampled.load_audio().shape[1] == pytest.approx(16000 * info.duration, abs=2)


def test_skip_stops_past_the_error_budget(broken, tmp_path):
    out = tmp_path / "m"
    with pytest.raises(ValueError) as err:
        prepare_manifests(broken, out, ["test"], num_jobs=1, bad_audio="skip")
    message = str(err.value)
    assert "part 'test': 2 of 6 utterances (33.3%) have bad audio" in message
    assert "data.max_bad_audio_fraction=0.01" in message and "data.bad_audio=skip" in message
    assert str(out / "bad_audio.json") in message
    assert _report(out).keys() == PRESCAN_BAD.keys()
    assert not cuts_path(out, "test").exists()


def test_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"data.bad_audio must be one of strict, skip, got 'lax'"):
        check_bad_audio_settings("lax", 0.01)
    with pytest.raises(ValueError, match=r"data.max_bad_audio_fraction must be in \[0, 1\]"):
        check_bad_audio_settings("skip", 1.5)
    config = DataConfig(corpus="librispeech", corpus_dir=str(tmp_path), bad_audio="Skip")
    with pytest.raises(ValueError, match=r"data\.bad_audio must be one of"):
        prepare_parts(config, ["test"])


def test_dmao_train_stops_before_training(broken, tmp_path):
    from conftest import tiny_train_overrides

    run = tmp_path / "run"
    overrides = [*tiny_train_overrides(broken, tmp_path / "m"), "data.dev_parts=[test]"]
    cmd = [sys.executable, "-m", "dmao.cli.main", "train", "--out", str(run), *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    for utt, reason in PRESCAN_BAD.items():
        assert f"test {utt}: {reason}" in result.stderr
    assert not list(run.rglob("*.pt"))  # no step was trained, no checkpoint written


def test_strict_message_lists_twenty_then_points_at_the_report(tmp_path):
    from dmao.data.bad_audio import BadAudio, BadAudioLog

    bad = BadAudioLog(tmp_path, "strict")
    bad.listed["train"] = 1000
    for i in range(25):
        bad.add(BadAudio("train", f"u{i:02d}", f"/x/u{i:02d}.flac", "empty_file", "0 bytes"))
    with pytest.raises(ValueError) as err:
        bad.check(["train"], stage="feature extraction")
    message = str(err.value)
    assert "train: 25 of 1000 utterances" in message
    assert "train u19: empty_file" in message and "u20" not in message
    assert f"... and 5 more, see {tmp_path / 'bad_audio.json'}" in message
    assert len(_report(tmp_path)) == 25
