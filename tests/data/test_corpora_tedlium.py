"""TED-LIUM 2: a tiny copy in the release's layout (SPHERE talks + STM), prepared by the real code
(lhotse's tedlium2 recipe, normalisation, segment cuts, fbank); text rules; clear errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dmao.cli.main import main
from dmao.data.corpora.tedlium import normalize_tedlium, prepare_tedlium2
from dmao.data.sphere import read_sphere, write_sphere

RATE = 16000
# Per talk: (STM text as the release writes it, expected normalised transcript or None = dropped).
_TALKS = {
    "train": {
        "AlGore_2009": [
            ("{NOISE} it 's the(2) first time", "IT'S THE FIRST TIME"),
            ("ignore_time_segment_in_scoring", None),
            ("we don 't know <unk> yet", "WE DON'T KNOW YET"),
        ],
        "JaneDoe_2010X": [
            ("they 're here {BREATH}", "THEY'RE HERE"),
            ("{NOISE} <unk>", None),
            ("' cause i said so", "CAUSE I SAID SO"),
        ],
    },
    "dev": {"BillSmith_2011": [("good morning everyone", "GOOD MORNING EVERYONE")]},
    "test": {"AnnLee_2012": [("thank you very much", "THANK YOU VERY MUCH")]},
}


def _speak(text: str) -> np.ndarray:
    from dmao.data.synthetic.espeak import synthesize

    samples, rate = synthesize(text, sample_rate=RATE)
    assert rate == RATE
    return samples.astype(np.float64)


@dataclass(frozen=True)
class TinyTedlium:
    root: Path  # the folder holding TEDLIUM_release2
    signals: dict[str, np.ndarray]  # talk -> the samples written
    segments: dict[str, tuple[str, float, float]]  # lhotse segment id -> (talk, start, end)


def _build(root: Path) -> TinyTedlium:
    signals, segments = {}, {}
    for part, talks in _TALKS.items():
        (root / "TEDLIUM_release2" / part / "sph").mkdir(parents=True)
        (root / "TEDLIUM_release2" / part / "stm").mkdir(parents=True)
        for talk, lines in talks.items():
            pieces, stm = [np.zeros(int(0.3 * RATE))], []
            for index, (text, _) in enumerate(lines):
                start = sum(len(p) for p in pieces) / RATE
                audio = _speak(text.replace("ignore_time_segment_in_scoring", "applause"))
                pieces += [audio, np.zeros(int(0.25 * RATE))]
                end = start + len(audio) / RATE
                stm.append(f"{talk} 1 {talk} {start:.2f} {end:.2f} <o,f0,male> {text}")
                segments[f"{talk}-{index}"] = (talk, round(start, 2), round(end, 2))
            signal = np.concatenate(pieces) * 0.8
            signals[talk] = signal
            part_dir = root / "TEDLIUM_release2" / part
            write_sphere(part_dir / "sph" / f"{talk}.sph", signal, RATE)
            (part_dir / "stm" / f"{talk}.stm").write_text("\n".join(stm) + "\n")
    return TinyTedlium(root, signals, segments)


@pytest.fixture(scope="module")
def tiny_tedlium(tmp_path_factory: pytest.TempPathFactory) -> TinyTedlium:
    return _build(tmp_path_factory.mktemp("tedlium"))


@pytest.fixture(scope="module")
def prepared(tiny_tedlium: TinyTedlium, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("tedlium_manifests")
    return prepare_tedlium2(tiny_tedlium.root, out, ["train", "dev", "test"], num_jobs=1)


def test_segments_texts_durations_and_audio(tiny_tedlium, prepared):
    expected = {
        f"{talk}-{i}": want
        for talks in _TALKS.values()
        for talk, lines in talks.items()
        for i, (_, want) in enumerate(lines)
        if want is not None
    }
    written = {
        f"{talk}-{i}": text
        for talks in _TALKS.values()
        for talk, lines in talks.items()
        for i, (text, _) in enumerate(lines)
    }
    got = {cut.id: cut for part in prepared.values() for cut in part}
    assert set(got) == set(expected)  # the ignore and noise/<unk>-only segments are gone
    assert sorted(c.id for c in prepared["train"]) == [c.id for c in prepared["train"]]
    for cut_id, cut in got.items():
        talk, start, end = tiny_tedlium.segments[cut_id]
        (sup,) = cut.supervisions
        assert sup.text == expected[cut_id]
        # As lhotse's recipe hands it over: {NOISE} already spelled [NOISE].
        assert sup.custom["original_text"] == written[cut_id].replace("{NOISE}", "[NOISE]")
        assert cut.start == pytest.approx(start) and cut.duration == pytest.approx(end - start)
        assert cut.sampling_rate == RATE and cut.num_channels == 1
        # The cut's audio is the segment of the talk that was written (16-bit quantisation).
        audio = cut.load_audio()[0]
        first = round(start * RATE)
        np.testing.assert_allclose(
            audio, tiny_tedlium.signals[talk][first : first + len(audio)], atol=1e-4
        )
        assert abs(len(audio) - (end - start) * RATE) <= 1
        feats = cut.load_features()
        assert feats.shape == (round(cut.duration / 0.01), 80) and np.isfinite(feats).all()


def test_preparation_is_cached(tiny_tedlium, prepared, tmp_path):
    # A second call loads the cuts files without touching the corpus.
    out = Path(prepared["dev"][0].features.storage_path).parent
    again = prepare_tedlium2(tmp_path / "nowhere", out, ["dev"], num_jobs=1)
    assert [c.id for c in again["dev"]] == [c.id for c in prepared["dev"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{NOISE} it 's the(2) <unk> thing", "it's the thing"),
        ("ignore_time_segment_in_scoring", ""),
        ("we don 't know ' cause [NOISE] <sil> they 're", "we don't know 'cause they're"),
        ("{SMACK} {BREATH} {COUGH} {UM}", ""),
        ("rock 'n 'roll", "rock'n'roll"),
        ("plain text stays", "plain text stays"),
    ],
)
def test_normalize_tedlium(text, expected):
    assert normalize_tedlium(text) == expected


def test_cli_prepares_every_present_part(tiny_tedlium, tmp_path, capsys):
    corpus = tmp_path / "copy"
    shutil.copytree(tiny_tedlium.root / "TEDLIUM_release2", corpus / "TEDLIUM_release2")
    shutil.rmtree(corpus / "TEDLIUM_release2" / "train")
    assert (
        main(
            [
                "prepare",
                "tedlium2",
                "--corpus-dir",
                str(corpus),
                "--out",
                str(tmp_path / "m"),
                "--num-jobs",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dev: 1 utterances" in out and "test: 1 utterances" in out and "train" not in out
    assert (tmp_path / "m" / "cuts_dev.jsonl.gz").is_file()


def _broken_copy(tiny_tedlium: TinyTedlium, tmp_path: Path) -> Path:
    corpus = tmp_path / "TEDLIUM_release2"
    shutil.copytree(tiny_tedlium.root / "TEDLIUM_release2", corpus)
    return corpus


def test_errors_name_what_is_missing(tiny_tedlium, tmp_path, capsys):
    out = tmp_path / "m"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_tedlium2(tmp_path / "absent", out, ["dev"])

    corpus = _broken_copy(tiny_tedlium, tmp_path / "a")
    shutil.rmtree(corpus / "dev" / "stm")
    with pytest.raises(FileNotFoundError, match=r"dev/stm does not exist"):
        prepare_tedlium2(corpus, out, ["dev"])
    # The CLI turns it into one line naming the folder.
    assert (
        main(
            [
                "prepare",
                "tedlium2",
                "--corpus-dir",
                str(corpus),
                "--out",
                str(out),
                "--parts",
                "dev",
            ]
        )
        == 2
    )
    assert "dev/stm does not exist" in capsys.readouterr().err

    corpus = _broken_copy(tiny_tedlium, tmp_path / "b")
    (corpus / "train" / "sph" / "JaneDoe_2010X.sph").unlink()
    with pytest.raises(ValueError, match=r"1 talk\(s\) have no audio \(.sph\).*JaneDoe_2010X"):
        prepare_tedlium2(corpus, out, ["train"])

    corpus = _broken_copy(tiny_tedlium, tmp_path / "c")
    stm = corpus / "test" / "stm" / "AnnLee_2012.stm"
    stm.write_text(stm.read_text() + "AnnLee_2012 1 AnnLee_2012 oops\n")
    with pytest.raises(ValueError, match=r"AnnLee_2012.stm:2: expected"):
        prepare_tedlium2(corpus, out, ["test"])

    corpus = _broken_copy(tiny_tedlium, tmp_path / "d")
    sph = corpus / "dev" / "sph" / "BillSmith_2011.sph"
    sph.write_bytes(sph.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"BillSmith_2011.sph: truncated SPHERE file"):
        prepare_tedlium2(corpus, out, ["dev"])

    with pytest.raises(ValueError, match="unknown TED-LIUM part 'valid'"):
        prepare_tedlium2(corpus, out, ["valid"])
    assert not out.exists() or not any(out.glob("cuts_*"))
    assert read_sphere(corpus / "test" / "sph" / "AnnLee_2012.sph")[1] == RATE


def test_config_selects_tedlium_and_spawned_workers_read_sphere(tiny_tedlium, tmp_path):
    """`data.corpus: tedlium2` prepares from the corpus on first use; with 2 jobs the features
    are computed in spawned processes, which start with lhotse's default backend (sph2pipe for
    .sph) unless dmao installs its SPHERE reader there too."""
    from dmao.config.schema import DataConfig
    from dmao.data.pipeline import load_parts

    config = DataConfig(
        corpus="tedlium2",
        corpus_dir=str(tiny_tedlium.root),
        manifest_dir=str(tmp_path / "m"),
        sampling_rate=RATE,
    )
    cuts = load_parts(config, ["train", "test"], num_jobs=2)
    assert [c.id for c in cuts] == [
        "AlGore_2009-0",
        "AlGore_2009-2",
        "JaneDoe_2010X-0",
        "JaneDoe_2010X-2",
        "AnnLee_2012-0",
    ]
    for cut in cuts:
        assert cut.has_features and np.isfinite(cut.load_features()).all()


def test_bad_talk_strict_lists_it_and_skip_leaves_all_its_segments_out(tiny_tedlium, tmp_path):
    """A truncated .sph (RELIABILITY.md item 9): strict names it; skip drops the whole talk (its
    3 STM segments count against the budget) and keeps the other talk's cuts on the real file."""
    corpus = _broken_copy(tiny_tedlium, tmp_path)
    sph = corpus / "train" / "sph" / "JaneDoe_2010X.sph"
    sph.write_bytes(sph.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"train JaneDoe_2010X: unreadable_audio: .*truncated"):
        prepare_tedlium2(corpus, tmp_path / "strict", ["train"], num_jobs=1)
    with pytest.raises(ValueError, match=r"part 'train': 3 of 5 utterances \(60.0%\)"):
        prepare_tedlium2(corpus, tmp_path / "budget", ["train"], num_jobs=1, bad_audio="skip")
    out = tmp_path / "skip"
    cuts = prepare_tedlium2(
        corpus, out, ["train"], num_jobs=1, bad_audio="skip", max_bad_audio_fraction=0.6
    )["train"]
    assert sorted(cuts.ids) == ["AlGore_2009-0", "AlGore_2009-2"]
    assert {c.recording.sources[0].source for c in cuts} == {
        str(corpus / "train" / "sph" / "AlGore_2009.sph")
    }
    (entry,) = json.loads((out / "bad_audio.json").read_text())["bad_audio"]
    assert entry["utterance_id"] == "JaneDoe_2010X" and entry["utterances"] == 3


def test_reverberated_segments_are_the_segments_of_their_talk(tiny_tedlium, prepared, tmp_path):
    """A copy of a segment of a long recording convolves that segment (a unit impulse as the
    room: the copy is the segment), and the segments of one talk get recordings of their own."""
    import soundfile as sf

    from dmao.data.reverb import reverberate_parts

    impulse = np.zeros(RATE // 10, dtype=np.float32)
    impulse[0] = 0.5
    (tmp_path / "rir").mkdir()
    sf.write(tmp_path / "rir" / "impulse.wav", impulse, RATE)
    train = prepared["train"]
    (copies,) = reverberate_parts(tmp_path / "m", {"train": train}, tmp_path / "rir").values()
    assert len({cut.recording.id for cut in copies}) == len(train)
    for cut, original in zip(copies, train, strict=True):
        talk, start, _ = tiny_tedlium.segments[original.id]
        assert cut.start == pytest.approx(start) and cut.duration == pytest.approx(
            original.duration
        )
        audio = cut.load_audio()[0]
        first = round(start * RATE)
        segment = tiny_tedlium.signals[talk][first : first + len(audio)]
        np.testing.assert_allclose(audio, segment, atol=2e-4)
        assert cut.load_features().shape == original.load_features().shape
