"""Switchboard-1 + Hub5'00: a tiny copy in the LDC layouts (2-channel 8 kHz mu-law SPHERE, ISIP
ms98 transcripts, eval2000 reference .txt), prepared by the real code (lhotse's switchboard and
eval2000 recipes, normalisation, one-channel segment cuts, 8 kHz fbank); text rules; errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dmao.cli.main import main
from dmao.config.schema import DataConfig
from dmao.data.corpora.switchboard import normalize_switchboard, prepare_switchboard
from dmao.data.pipeline import load_parts
from dmao.data.sphere import write_sphere

RATE = 8000

# Conversation -> side -> [(transcript as written, expected normalised text or None = dropped)].
_CALLS = {
    "sw02001": {
        "A": [("[silence]", None), ("uh i was abso[lutely]- sure", "I WAS ABSO SURE")],
        "B": [("[noise] right [laughter-yes]", "RIGHT YES"), ("[vocalized-noise] um", None)],
    },
    "sw02005": {
        "A": [("the [bocket/pocket] is full", "THE POCKET IS FULL")],
        "B": [("uh-huh okay_1 [laughter]", "UH HUH OKAY")],
    },
    "sw02010": {
        "A": [("we went -[ab]solutely home", "WE WENT SOLUTELY HOME")],
        "B": [("i don't think so", "I DON'T THINK SO")],
    },
}
# Hub5'00 conversation -> [(side, transcript as written, expected)].
_EVAL = {
    "sw_4390": [
        (
            "A",
            "%um, <contraction e_form=\"[we=>we]['re=>are]\">we're starting ((now))",
            "WE'RE STARTING NOW",
        ),
        ("B", "mhm {breath} oh, about it?", "MHM OH ABOUT IT"),
    ],
    "en_4156": [("A", "%uh {laugh} (( ))", None), ("B", "that is <b_aside> fine", "THAT IS FINE")],
}


def _speak(text: str) -> np.ndarray:
    from dmao.data.synthetic.espeak import synthesize

    samples, rate = synthesize(text, sample_rate=RATE)
    assert rate == RATE
    return samples.astype(np.float64) * 0.8


def _spoken(text: str) -> str:
    """Something to say for a transcript line (the mark-up itself is not spoken)."""
    words = [w for w in normalize_switchboard(text, keep_hesitations=True).split() if w]
    return " ".join(words) or "hmm"


@dataclass(frozen=True)
class TinySwitchboard:
    corpus: Path  # LDC97S62 (with swb_ms98_transcriptions inside)
    eval2000: Path  # holds LDC2002S09 and LDC2002T43
    signals: dict[str, np.ndarray]  # conversation -> (2, samples) written
    segments: dict[str, tuple[str, int, float, float]]  # cut id -> (call, channel, start, end)


def _conversation(sides: dict[str, list[str]]) -> tuple[np.ndarray, dict[str, list]]:
    """Two channels where the sides take turns; returns the signal and per-side (start, end)."""
    turns = [(side, i, text) for i in range(2) for side in "AB" for text in sides[side][i : i + 1]]
    channels = {"A": [], "B": []}
    times: dict[str, list] = {"A": [], "B": []}
    position = int(0.2 * RATE)
    for side, _, text in turns:
        audio = _speak(_spoken(text))
        times[side].append((position / RATE, (position + len(audio)) / RATE))
        channels[side].append((position, audio))
        position += len(audio) + int(0.3 * RATE)
    signal = np.zeros((2, position))
    rng = np.random.default_rng(0)
    signal += 0.002 * rng.standard_normal(signal.shape)  # line noise
    for channel, side in enumerate("AB"):
        for start, audio in channels[side]:
            signal[channel, start : start + len(audio)] += audio
    return signal.clip(-1, 1), times


def _build(root: Path) -> TinySwitchboard:
    corpus = root / "LDC97S62"
    signals, segments = {}, {}
    for disc, (call, sides) in enumerate(_CALLS.items()):
        signal, times = _conversation({s: [t for t, _ in lines] for s, lines in sides.items()})
        signals[call] = signal
        data = corpus / f"swb1_d{disc + 1}" / "data"
        data.mkdir(parents=True)
        write_sphere(
            data / f"{call}.sph",
            signal,
            RATE,
            coding="ulaw",
            extra_fields={"database_id": "-s11 switchboard"},
        )
        number = call.replace("sw0", "")
        text_dir = corpus / "swb_ms98_transcriptions" / number[:2] / number
        text_dir.mkdir(parents=True, exist_ok=True)
        for channel, side in enumerate("AB"):
            lines = []
            for i, ((text, _), (start, end)) in enumerate(
                zip(sides[side], times[side], strict=True)
            ):
                seg_id = f"sw{number}{side}-ms98-a-{i + 1:04d}"
                lines.append(f"{seg_id} {start:.6f} {end:.6f} {text}")
                segments[seg_id] = (call, channel, start, end)
            (text_dir / f"sw{number}{side}-ms98-a-trans.text").write_text("\n".join(lines) + "\n")
            # The word alignments ship beside the transcripts and must be ignored.
            (text_dir / f"sw{number}{side}-ms98-a-word.text").write_text("ignored\n")

    eval_root = root / "hub5"
    audio_dir = eval_root / "LDC2002S09" / "hub5e_00" / "english"
    text_dir = eval_root / "LDC2002T43" / "reference" / "english"
    audio_dir.mkdir(parents=True)
    text_dir.mkdir(parents=True)
    for call, lines in _EVAL.items():
        by_side = {"A": [], "B": []}
        for side, text, _ in lines:
            by_side[side].append(text)
        signal, times = _conversation(by_side)
        signals[call] = signal
        write_sphere(audio_dir / f"{call}.sph", signal, RATE, coding="ulaw")
        body = ["#Language: eng", f"#File id: {call[3:]}", "# 0 1 #BEGIN", ""]
        for index, (side, text, _) in enumerate(lines):
            start, end = times[side].pop(0)
            body += [f"{start:.2f} {end:.2f} {side}: {text}", ""]
            segments[f"{call}-{index}"] = (call, "AB".index(side), round(start, 2), round(end, 2))
        (text_dir / f"{call}.txt").write_text("\n".join(body))
    return TinySwitchboard(corpus, eval_root, signals, segments)


@pytest.fixture(scope="module")
def tiny_swbd(tmp_path_factory: pytest.TempPathFactory) -> TinySwitchboard:
    return _build(tmp_path_factory.mktemp("swbd"))


@pytest.fixture(scope="module")
def prepared(tiny_swbd: TinySwitchboard, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("swbd_manifests")
    return prepare_switchboard(
        tiny_swbd.corpus,
        out,
        ["train", "dev", "eval2000-swbd", "eval2000-callhome"],
        eval2000_dir=tiny_swbd.eval2000,
        dev_utterances=2,
        num_jobs=1,
    )


def _expected() -> dict[str, str]:
    expected = {}
    for call, sides in _CALLS.items():
        number = call.replace("sw0", "")
        for side, lines in sides.items():
            for i, (_, want) in enumerate(lines):
                if want is not None:
                    expected[f"sw{number}{side}-ms98-a-{i + 1:04d}"] = want
    for call, lines in _EVAL.items():
        for i, (_, _, want) in enumerate(lines):
            if want is not None:
                expected[f"{call}-{i}"] = want
    return expected


def test_parts_texts_channels_and_audio(tiny_swbd, prepared):
    expected = _expected()
    got = {cut.id: (part, cut) for part, cuts in prepared.items() for cut in cuts}
    assert set(got) == set(expected)  # silence-, noise- and hesitation-only segments dropped
    # dev = the first conversation (it holds >= 2 segments); Hub5'00 split by its two halves.
    assert {c.recording_id for c in prepared["dev"]} == {"sw02001"}
    assert {c.recording_id for c in prepared["train"]} == {"sw02005", "sw02010"}
    assert {c.recording_id for c in prepared["eval2000-swbd"]} == {"sw_4390"}
    assert {c.recording_id for c in prepared["eval2000-callhome"]} == {"en_4156"}
    for cut_id, (_, cut) in got.items():
        call, channel, start, end = tiny_swbd.segments[cut_id]
        (sup,) = cut.supervisions
        assert sup.text == expected[cut_id]
        assert sup.channel == channel and cut.channel == channel
        assert sup.speaker.endswith("AB"[channel])
        assert cut.start == pytest.approx(start, abs=1e-6)
        assert cut.duration == pytest.approx(end - start, abs=1e-6)
        assert cut.sampling_rate == RATE and cut.num_channels == 1
        audio = cut.load_audio()
        assert audio.shape[0] == 1
        first = round(start * RATE)
        written = tiny_swbd.signals[call][:, first : first + audio.shape[1]]
        # The cut holds its own side (mu-law: ~8-bit accuracy), not the other one.
        np.testing.assert_allclose(audio[0], written[channel], atol=0.04)
        assert np.abs(audio[0] - written[1 - channel]).max() > 0.1
        feats = cut.load_features()
        assert feats.shape == (round(cut.duration / 0.01), 80) and np.isfinite(feats).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[noise] uh i was abso[lutely]- [laughter-sure] <b_aside> {breath}", "i was abso sure"),
        ("[silence]", ""),
        ("[laughter] [vocalized-noise] [noise] um uh", ""),
        ("the [bocket/pocket] -[ab]solutely a[nd]- okay_1", "the pocket solutely a okay"),
        ("uh-huh ~bull", "uh-huh bull"),
        ("%um, <contraction e_form=\"[we=>we]['re=>are]\">we're ((here))", "we're here"),
        ("%hesitation (( )) {lipsmack} {tupperware} <e_aside>", "tupperware"),
        ("OKAY, Uh, RIGHT.", "okay, right."),
    ],
)
def test_normalize_switchboard(text, expected):
    assert normalize_switchboard(text) == expected


def test_keep_hesitations():
    assert normalize_switchboard("uh %um i mean", keep_hesitations=True) == "uh um i mean"


def test_config_selects_switchboard_at_8khz(tiny_swbd, prepared, tmp_path):
    """`data.corpus: switchboard` in a training config reaches the same cuts (cached here)."""
    out = Path(prepared["train"][0].features.storage_path).parent
    config = DataConfig(
        corpus="switchboard",
        corpus_dir=str(tmp_path / "not-needed-when-cached"),
        manifest_dir=str(out),
        sampling_rate=8000,
    )
    cuts = load_parts(config, ["train", "dev"])
    assert len(cuts) == len(prepared["train"]) + len(prepared["dev"])
    # A 16 kHz config on 8 kHz manifests is refused rather than silently mixed.
    with pytest.raises(ValueError, match="holds cuts at \\[8000\\] Hz but 16000 Hz"):
        load_parts(DataConfig(corpus="switchboard", manifest_dir=str(out)), ["dev"])


def test_cli_and_errors_name_what_is_missing(tiny_swbd, tmp_path, capsys):
    corpus = tmp_path / "LDC97S62"
    shutil.copytree(tiny_swbd.corpus, corpus)
    out = tmp_path / "m"
    assert (
        main(
            [
                "prepare",
                "switchboard",
                "--corpus-dir",
                str(corpus),
                "--out",
                str(out),
                "--dev-utterances",
                "1",
                "--num-jobs",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    # dev is the whole first conversation, whose two sides hold 2 segments.
    assert "train: 4 utterances" in printed and "dev: 2 utterances" in printed

    # eval2000 parts without --eval2000-dir.
    assert (
        main(
            [
                "prepare",
                "switchboard",
                "--corpus-dir",
                str(corpus),
                "--out",
                str(out),
                "--parts",
                "eval2000-swbd",
            ]
        )
        == 2
    )
    assert "need --eval2000-dir" in capsys.readouterr().err
    partial = tmp_path / "hub5"  # the audio without the transcripts
    shutil.copytree(tiny_swbd.eval2000 / "LDC2002S09", partial / "LDC2002S09")
    with pytest.raises(FileNotFoundError, match=r"LDC2002T43/reference/english does not exist"):
        prepare_switchboard(corpus, out, ["eval2000-callhome"], eval2000_dir=partial)

    # A conversation side without its transcript.
    missing_side = next(corpus.rglob("sw2005B-ms98-a-trans.text"))
    missing_side.unlink()
    with pytest.raises(ValueError, match=r"sw02005.sph \(needs sw2005B-ms98-a-trans.text\)"):
        prepare_switchboard(corpus, tmp_path / "m2", ["train"])

    # No transcripts folder at all.
    shutil.rmtree(corpus / "swb_ms98_transcriptions")
    with pytest.raises(FileNotFoundError, match="swb_ms98_transcriptions"):
        prepare_switchboard(corpus, tmp_path / "m2", ["train"])

    # Shorten-compressed audio (sph2pipe is not installed here).
    if shutil.which("sph2pipe") is None:
        copy = tmp_path / "shorten"
        shutil.copytree(tiny_swbd.corpus, copy)
        sph = next(copy.rglob("sw02010.sph"))
        raw = sph.read_bytes()
        header = (
            raw[:1024]
            .rstrip(b" ")
            .replace(b"sample_coding -s4 ulaw", b"sample_coding -s26 ulaw,embedded-shorten-v2.00")
        )
        sph.write_bytes(header + b" " * (1024 - len(header)) + raw[1024:])
        with pytest.raises(ValueError, match=r"sw02010.sph: SPHERE audio is shorten-compressed"):
            prepare_switchboard(copy, tmp_path / "m3", ["train"])


def test_dmao_train_on_the_shipped_switchboard_recipe(prepared, tmp_path):
    """`dmao train --config dmao/configs/switchboard/...` trains on the 8 kHz cuts (a 6-step run
    of a tiny model: the shipped recipe with the size overrides of the other training tests)."""
    from conftest import tiny_train_overrides

    manifests = Path(prepared["train"][0].features.storage_path).parent
    recipe = (
        Path(__file__).resolve().parents[2] / "dmao/configs/switchboard/conformer_256_dmao.yaml"
    )
    overrides = [
        *tiny_train_overrides(tmp_path / "unused", manifests),
        "data.corpus=switchboard",
        # The tiny dev side has letters the tiny training text lacks (char tokeniser): validate
        # on the training part instead.
        "data.dev_parts=[train]",
        "data.num_workers=0",
        # Less than the 4.3 s of training audio: with a batch larger than the whole part the
        # training sampler never yields (found here; not a corpus issue).
        "data.max_batch_seconds=2",
        "train.max_steps=6",
        "train.valid_every_steps=6",
        "train.checkpoint_every_steps=6",
        "dmao.score_every_steps=1",
    ]
    run = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(run), *overrides]) == 0
    config = (run / "config.yaml").read_text()
    assert "sampling_rate: 8000" in config and "corpus: switchboard" in config
    assert any(run.rglob("*.pt"))


def test_bad_conversations_are_left_out_in_skip_mode(tiny_swbd, tmp_path):
    """RELIABILITY.md item 9: a truncated Switchboard-1 .sph (reported under train, since the dev
    split is made after it is left out) and a 0-byte Hub5'00 one; strict lists both."""
    corpus, eval2000 = tmp_path / "LDC97S62", tmp_path / "hub5"
    shutil.copytree(tiny_swbd.corpus, corpus)
    shutil.copytree(tiny_swbd.eval2000, eval2000)
    sph = next(corpus.rglob("sw02010.sph"))
    sph.write_bytes(sph.read_bytes()[:3000])
    next(eval2000.rglob("en_4156.sph")).write_bytes(b"")
    parts = ["train", "dev", "eval2000-swbd", "eval2000-callhome"]
    kwargs = {"eval2000_dir": eval2000, "dev_utterances": 2, "num_jobs": 1}
    with pytest.raises(ValueError) as err:
        prepare_switchboard(corpus, tmp_path / "strict", parts, **kwargs)
    assert "train sw02010: unreadable_audio" in str(err.value)
    assert "eval2000-callhome en_4156: empty_file" in str(err.value)

    out = tmp_path / "skip"
    cuts = prepare_switchboard(
        corpus, out, parts, bad_audio="skip", max_bad_audio_fraction=1.0, **kwargs
    )
    kept = [c for part in ("train", "dev") for c in cuts[part]]
    assert kept and not any(c.recording_id == "sw02010" for c in kept)
    assert len(cuts["eval2000-callhome"]) == 0 and len(cuts["eval2000-swbd"]) > 0
    assert all(".bad_audio_staging" not in c.recording.sources[0].source for c in kept)
    assert all(Path(c.recording.sources[0].source).is_file() for c in kept)
    report = json.loads((out / "bad_audio.json").read_text())["bad_audio"]
    assert {(e["part"], e["utterance_id"]) for e in report} == {
        ("train", "sw02010"),
        ("eval2000-callhome", "en_4156"),
    }
