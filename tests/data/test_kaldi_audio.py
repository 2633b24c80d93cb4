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
from dmao.data.corpora.kaldi_audio import archive_location, read_archive_entry, sph2pipe_file
from dmao.data.sphere import read_sphere, write_sphere
from dmao.data.validation_formats import validate_kaldi
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
    assert kind.scp.archives == frozenset(signals["test"]) and not kind.scp.commands


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
    assert [(i.id, i.span.archive) for i in inputs] == [
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


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "/opt/kaldi/tools/sph2pipe_v2.5/sph2pipe -f wav -p -c 1 /data/sw02001.sph",
            ("/data/sw02001.sph", 0),
        ),
        ("sph2pipe -f wav -p -c 2 audio/sw02001.sph", ("audio/sw02001.sph", 1)),
        ("sph2pipe -p -f wav a.SPH", ("a.SPH", 0)),
        ("sph2pipe -f wav 'my talk.sph'", ("my talk.sph", 0)),
        ("sph2pipe -f wav -p -t 0:10 a.sph", None),  # a time range: left to the program
        ("sph2pipe -f wav -c 3 a.sph", None),
        ("sph2pipe -f wav -p a.wv1", None),  # WSJ's shorten files: left to the program
        ("sph2pipe -f wav a.sph b.sph", None),
        ("sph2pipe -f", None),
        ("flac -c -d -s a.flac", None),
        ("sh -c 'sph2pipe a.sph'", None),
    ],
)
def test_sph2pipe_commands_of_whole_files_are_read_as_the_file(command, expected):
    assert sph2pipe_file(command) == expected


def _conversation(root: Path, monkeypatch) -> tuple[Path, np.ndarray]:
    """``root/data/test``: Kaldi's Switchboard layout (sides A and B of one 2-channel 8 kHz
    mu-law call through ``sph2pipe -c 1``/``-c 2``, which is not installed, and segments) plus
    a side B of a one-channel call. Returns the data directory and the call's samples."""
    monkeypatch.chdir(root)
    rng = np.random.default_rng(0)
    call = 0.2 * rng.standard_normal((2, 3 * 8000))
    (root / "audio").mkdir()
    write_sphere(root / "audio" / "sw1.sph", call, 8000, coding="ulaw")
    write_sphere(root / "audio" / "sw2.sph", call[:1], 8000, coding="ulaw")
    part = root / "data" / "test"
    part.mkdir(parents=True)
    sph2pipe = "/nowhere/kaldi/tools/sph2pipe_v2.5/sph2pipe -f wav -p"
    (part / "wav.scp").write_text(
        f"sw1-A {sph2pipe} -c 1 audio/sw1.sph |\nsw1-B {sph2pipe} -c 2 audio/sw1.sph |\n"
        f"sw2-B {sph2pipe} -c 2 audio/sw2.sph |\n"
    )
    (part / "segments").write_text(
        "sw1-A_0000 sw1-A 0.0 1.5\nsw1-B_0050 sw1-B 0.5 2.0\nsw1-B_0200 sw1-B 2.0 3.0\n"
        "sw2-B_0000 sw2-B 0.0 1.0\n"
    )
    (part / "text").write_text(
        "sw1-A_0000 HELLO\nsw1-B_0050 HI THERE\nsw1-B_0200 [laughter] YES\nsw2-B_0000 NO\n"
    )
    return part, read_sphere(root / "audio" / "sw1.sph")[0]


def test_kaldi_switchboard_sides_read_without_sph2pipe(tmp_path, monkeypatch):
    part, call = _conversation(tmp_path, monkeypatch)
    kaldi = read_kaldi_part(part)
    assert kaldi.scp.commands == frozenset() and kaldi.scp.channels == {"sw1-B": 1, "sw2-B": 1}
    assert kaldi.wav["sw1-A"] == "audio/sw1.sph"
    # prepare: each side on its channel; the one-channel call's side B is bad audio
    with pytest.raises(
        ValueError,
        match=r"test sw2-B: unreadable_audio: .*audio/sw2\.sph: has 1 "
        r"channel\(s\); wav\.scp's sph2pipe -c 2 reads channel 2",
    ):
        prepare_kaldi(tmp_path / "data", tmp_path / "strict", ["test"], num_jobs=1)
    cuts = prepare_kaldi(
        tmp_path / "data",
        tmp_path / "m",
        ["test"],
        num_jobs=1,
        bad_audio="skip",
        max_bad_audio_fraction=0.5,
        sampling_rate=8000,
    )
    got = {c.id: c for c in cuts["test"]}
    assert sorted(got) == ["sw1-A_0000", "sw1-B_0050", "sw1-B_0200"]
    for utt, channel, start, end in [("sw1-A_0000", 0, 0.0, 1.5), ("sw1-B_0050", 1, 0.5, 2.0),
                                     ("sw1-B_0200", 1, 2.0, 3.0)]:  # fmt: skip
        np.testing.assert_allclose(
            got[utt].load_audio()[0], call[channel, int(start * 8000) : int(end * 8000)], atol=1e-6
        )
    # validate: the same problem, and nothing else
    from dmao.models.frontend import subsampled_length

    report = validate_kaldi(tmp_path / "data", ["test"], subsampled_length=subsampled_length)
    assert [(p.utterance_id, p.reason) for p in report.problems] == [("sw2-B", "unreadable_audio")]
    # transcribe: the segments of side B come from channel 2
    reader = InputReader(8000)
    inputs = {i.id: i for i in expand_inputs([part])}
    assert inputs["sw1-B_0050"].path == (tmp_path / "audio" / "sw1.sph").resolve()
    np.testing.assert_allclose(reader.read(inputs["sw1-B_0050"]), call[1, 4000:16000], atol=1e-6)
    np.testing.assert_allclose(reader.read(inputs["sw1-A_0000"]), call[0, :12000], atol=1e-6)
    with pytest.raises(ValueError, match=r"sw2\.sph: has 1 channel\(s\); channel 1 was asked for"):
        reader.read(inputs["sw2-B_0000"])


def test_other_sph2pipe_commands_stay_commands(tmp_path, monkeypatch):
    part, _ = _conversation(tmp_path, monkeypatch)
    (part / "wav.scp").write_text(
        "sw1-A sph2pipe -f wav -p -t 0:3 -c 1 audio/sw1.sph |\n"
        "sw1-B sph2pipe -f wav -p -c 2 audio/sw1.sph |\nsw2-B sph2pipe -c 1 audio/sw2.sph |\n"
    )
    kaldi = read_kaldi_part(part)
    assert kaldi.scp.commands == frozenset({"sw1-A"})
    with pytest.raises(
        ValueError,
        match=r"test sw1-A: unreadable_audio: sph2pipe -f wav -p -t "
        r"0:3 -c 1 audio/sw1\.sph \|: command exited with status",
    ):
        prepare_kaldi(tmp_path / "data", tmp_path / "m", ["test"], num_jobs=1)
