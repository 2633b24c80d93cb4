"""``wav.scp`` entries into Kaldi archives (``<file>.ark:<offset>``), written by kaldiio (the
writer ESPnet uses: Kaldi's wave entries and its own soundfile ``AUDIO`` entries) and read by
``dmao prepare kaldi``, ``dmao validate`` and ``dmao transcribe``."""

from __future__ import annotations

import io
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from dmao.data.corpora.kaldi import prepare_kaldi, read_kaldi_part
from dmao.data.corpora.kaldi_archive import archive_location, read_archive_entry
from dmao.data.validation import validate_kaldi
from dmao.export import expand_inputs
from dmao.export.inputs import InputReader

RATE = 16000


def _signal(seconds: float, seed: int, channels: int = 1) -> np.ndarray:
    """int16 noise with a tone, ``(N,)`` or ``(N, channels)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    tone = np.sin(2 * np.pi * (200 + 50 * seed) * np.arange(n) / RATE)
    x = 0.3 * tone[:, None] + 0.05 * rng.standard_normal((n, channels))
    x = (x * 32767).astype(np.int16)
    return x[:, 0] if channels == 1 else x


def _recipe(root: Path, monkeypatch) -> dict[str, dict[str, np.ndarray]]:
    """``root/data/{train,test}`` whose ``wav.scp`` are the scp files kaldiio wrote beside its
    archives (entries relative to ``root``): train in a Kaldi wave archive, test in a soundfile
    archive of FLAC (one entry stereo, one 24-bit). Returns the signals by part and id."""
    monkeypatch.chdir(root)
    (root / "dump").mkdir(parents=True)
    train = {f"tr{i}": _signal(0.6 + 0.2 * i, seed=i) for i in range(3)}
    test = {"te0": _signal(0.8, seed=5), "te1": _signal(1.0, seed=6, channels=2)}
    for part in ("train", "test"):
        (root / "data" / part).mkdir(parents=True)
    kaldiio.save_ark("dump/raw.ark", {k: (RATE, v) for k, v in train.items()},
                     scp="data/train/wav.scp")  # fmt: skip
    kaldiio.save_ark("dump/flac.ark", {k: (v, RATE) for k, v in test.items()},
                     scp="data/test/wav.scp", write_function="soundfile",
                     write_kwargs={"format": "flac"})  # fmt: skip
    low = np.random.default_rng(7).integers(0, 256, int(0.7 * RATE), dtype=np.int32) << 8
    deep = (_signal(0.7, seed=7).astype(np.int32) << 16) + low  # 24 bits: more than 16 carry
    kaldiio.save_ark("dump/flac.ark", {"te2": (deep, RATE)}, scp="data/test/wav.scp",
                     append=True, write_function="soundfile",
                     write_kwargs={"format": "flac", "subtype": "PCM_24"})  # fmt: skip
    test["te2"] = deep
    for part, signals in (("train", train), ("test", test)):
        (root / "data" / part / "text").write_text("".join(f"{k} HELLO WORLD\n" for k in signals))
    return {"train": train, "test": test}


def _entries(root: Path, part: str) -> dict[str, str]:
    lines = (root / "data" / part / "wav.scp").read_text().splitlines()
    return dict(line.split(maxsplit=1) for line in lines)


def test_entries_written_by_kaldiio_read_back_as_the_files_they_hold(tmp_path, monkeypatch):
    signals = _recipe(tmp_path, monkeypatch)
    for part, dtype in (("train", "int16"), ("test", "int32")):
        entries = _entries(tmp_path, part)
        assert set(entries) == set(signals[part])
        for reco, entry in entries.items():
            assert entry.startswith("dump/")  # relative: read below the recipe's root
            data = read_archive_entry(entry, tmp_path)
            assert isinstance(data, bytes)
            samples, rate = sf.read(io.BytesIO(data), dtype=dtype)
            expected = signals[part][reco]
            if dtype == "int32" and reco != "te2":  # 16-bit FLAC read as int32: shifted
                expected = expected.astype(np.int32) << 16
            assert rate == RATE
            np.testing.assert_array_equal(samples, expected)
    kind = read_kaldi_part(tmp_path / "data" / "test")
    assert kind.archives == frozenset(signals["test"]) and not kind.commands


def test_bad_entries_are_one_reason_each(tmp_path, monkeypatch):
    _recipe(tmp_path, monkeypatch)
    first = _entries(tmp_path, "train")["tr0"]
    path, offset = archive_location(first, tmp_path)
    size = path.stat().st_size
    kaldiio.save_ark("dump/feats.ark", {"f": np.ones((3, 4), dtype=np.float32)}, scp="f.scp")
    feats = Path("f.scp").read_text().split()[1]
    last = _entries(tmp_path, "train")["tr2"]
    cut = tmp_path / "dump" / "cut.ark"
    cut.write_bytes(path.read_bytes()[:-100])
    cases = {
        "dump/none.ark:5": ("missing_audio", f"archive {tmp_path}/dump/none.ark is not on disk"),
        f"dump/raw.ark:{size}": (
            "unreadable_audio", f"offset {size} is at or past the end of {path}"
        ),
        f"dump/raw.ark:{offset + 1}": (
            "unreadable_audio", f"no audio entry at offset {offset + 1} of {path} (expected RIFF "
            "or AUDIO, found b'IFF"
        ),
        feats: ("unreadable_audio", "found a Kaldi matrix/vector (features?))"),
        last.replace("raw.ark", "cut.ark"): ("unreadable_audio", "is cut short: "),
    }  # fmt: skip
    for entry, (reason, detail) in cases.items():
        got = read_archive_entry(entry, tmp_path)
        assert isinstance(got, tuple) and got[0] == reason and detail in got[1], (entry, got)


def test_prepare_copies_the_entries_out_and_reads_them_as_files(tmp_path, monkeypatch):
    signals = _recipe(tmp_path, monkeypatch)
    cuts = prepare_kaldi(tmp_path / "data", tmp_path / "m", ["train", "test"], num_jobs=2)
    for part, signal in signals.items():
        got = {c.id: c for c in cuts[part]}
        assert set(got) == set(signal)
        for reco, cut in got.items():
            samples = signal[reco] if signal[reco].ndim == 1 else signal[reco][:, 0]  # channel 0
            scale = 2**31 if reco == "te2" else 2**15
            np.testing.assert_allclose(cut.load_audio()[0], samples / scale, atol=1e-6)
            assert cut.has_features
            source = Path(cut.recording.sources[0].source)
            assert source.parent == tmp_path / "m" / "audio" / part
            entry = _entries(tmp_path, part)[reco]
            assert source.read_bytes() == read_archive_entry(entry, tmp_path)  # unchanged
    assert sorted(p.name for p in (tmp_path / "m" / "audio" / "test").iterdir()) == [
        "te0.flac", "te1.flac", "te2.flac"
    ]  # fmt: skip
    # a broken entry is a bad recording like any other, named by its entry
    scp = tmp_path / "data" / "train" / "wav.scp"
    scp.write_text(scp.read_text().replace("tr1 dump/raw.ark:", "tr1 dump/raw.ark:9"))
    entry = _entries(tmp_path, "train")["tr1"]
    with pytest.raises(ValueError, match=rf"train tr1: unreadable_audio: {entry}: "):
        prepare_kaldi(tmp_path / "data", tmp_path / "m2", ["train"], num_jobs=1)


def test_validate_decodes_archive_entries(tmp_path, monkeypatch):
    signals = _recipe(tmp_path, monkeypatch)
    report = validate_kaldi(tmp_path / "data", ["train", "test"])
    assert report.problems == []
    assert report.num_utterances == 6
    seconds = sum(len(s) / RATE for part in signals.values() for s in part.values())
    assert report.audio_seconds == pytest.approx(seconds)
    path, _ = archive_location(_entries(tmp_path, "test")["te0"], tmp_path)
    path.write_bytes(path.read_bytes()[:-1000])  # te2, the last entry, is cut short
    report = validate_kaldi(tmp_path / "data", ["test"])
    assert [(p.utterance_id, p.reason) for p in report.problems] == [("te2", "unreadable_audio")]


def test_transcribe_reads_segments_of_archive_entries(tmp_path, monkeypatch):
    signals = _recipe(tmp_path, monkeypatch)
    part = tmp_path / "data" / "train"
    (part / "segments").write_text("a tr1 0 0.5\nb tr1 0.5 -1\nc tr2 0.25 1.0\n")
    inputs = expand_inputs([part])
    assert [(i.id, i.kaldi.archive) for i in inputs] == [
        ("a", _entries(tmp_path, "train")["tr1"]),
        ("b", _entries(tmp_path, "train")["tr1"]),
        ("c", _entries(tmp_path, "train")["tr2"]),
    ]
    assert inputs[0].path == (tmp_path / "dump" / "raw.ark").resolve()
    reader = InputReader(RATE)
    tr1, tr2 = signals["train"]["tr1"] / 2**15, signals["train"]["tr2"] / 2**15
    np.testing.assert_allclose(reader.read(inputs[0]), tr1[:8000], atol=1e-7)
    np.testing.assert_allclose(reader.read(inputs[1]), tr1[8000:], atol=1e-7)
    np.testing.assert_allclose(reader.read(inputs[2]), tr2[4000:16000], atol=1e-7)
