"""Kaldi data directories: the tiny corpus written as `data/<part>/{wav.scp,text,segments,utt2spk}`
(whole files, segments of a long recording, commands) and read by the real code into cuts with
features; markers, overshoot, bad audio and malformed tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.cli.main import main
from dmao.data.corpora.kaldi import normalize_kaldi, prepare_kaldi, read_kaldi_part
from dmao.data.manifests import cut_transcript
from dmao.data.text import normalize_transcript

RATE = 16000


def _flacs(tiny_corpus, part: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((tiny_corpus.root / part).rglob("*.flac"))}


def _write(folder: Path, name: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f"{line}\n" for line in lines))


def _kaldi_dirs(tiny_corpus, recipe: Path) -> dict:
    """``recipe/data/{train,dev,test}``: train lists whole files by paths relative to ``recipe``
    (markers added to the text); dev is one long recording of three utterances with segments
    (the last ends at -1 and one runs 0.3 s past the end); test reads its files through a
    command. Returns what was written: {"dev": [(utt, start, end, samples)], "long": samples}."""
    audio = recipe / "audio"
    shutil.copytree(tiny_corpus.root, audio / "LibriSpeech")
    data = recipe / "data"
    train = {u: p for u, p in _flacs(tiny_corpus, "train").items()}
    rel = {u: p.relative_to(tiny_corpus.root) for u, p in train.items()}
    _write(data / "train", "wav.scp", [f"{u} audio/LibriSpeech/{rel[u]}" for u in train])
    texts = tiny_corpus.transcripts["train"]
    _write(data / "train", "text", [f"{u} [noise] {texts[u]} <unk>" for u in train])
    _write(data / "train", "utt2spk", [f"{u} {u.split('-')[0]}" for u in train])

    pieces, spans, start = [np.zeros(int(0.2 * RATE))], [], 0.2
    dev_texts = tiny_corpus.transcripts["dev"]
    for utt, path in list(_flacs(tiny_corpus, "dev").items())[:3]:
        samples, rate = sf.read(path)
        assert rate == RATE
        spans.append((utt, start, start + len(samples) / RATE, samples))
        pieces += [samples, np.zeros(int(0.2 * RATE))]
        start = spans[-1][2] + 0.2
    long = np.concatenate(pieces)
    sf.write(audio / "long.wav", long, RATE, subtype="FLOAT")
    _write(data / "dev", "wav.scp", ["talk1 audio/long.wav"])
    ends = [f"{spans[0][2]:.4f}", f"{spans[1][2]:.4f}", "-1"]
    _write(
        data / "dev",
        "segments",
        [f"{u} talk1 {s:.4f} {e}" for (u, s, _, _), e in zip(spans, ends, strict=True)],
    )
    _write(data / "dev", "text", [f"{u} {dev_texts[u]}" for u, *_ in spans])

    test = _flacs(tiny_corpus, "test")
    _write(data / "test", "wav.scp", [f"{u} cat {test[u]} |" for u in test])
    _write(data / "test", "text", [f"{u} {tiny_corpus.transcripts['test'][u]}" for u in test])
    return {"dev": spans, "long": long}


def test_kaldi_dirs_become_the_same_cuts_as_the_corpus(tiny_corpus, tiny_cuts, tmp_path):
    written = _kaldi_dirs(tiny_corpus, tmp_path / "recipe")
    cuts = prepare_kaldi(tmp_path / "recipe" / "data", tmp_path / "m", ["train", "dev", "test"],
                         num_jobs=1)  # fmt: skip
    # whole files: the corpus's own utterances, same features; one of punctuation only is dropped
    reference = {c.id: c for c in tiny_cuts["train"]}
    assert set(cuts["train"].ids) == set(reference) - {tiny_corpus.empty_id}
    for cut in cuts["train"]:
        assert cut_transcript(cut) == cut_transcript(reference[cut.id])  # markers gone
        assert cut.supervisions[0].custom["original_text"].startswith("[noise] ")
        assert cut.supervisions[0].speaker == cut.id.split("-")[0]
        np.testing.assert_allclose(cut.load_features(), reference[cut.id].load_features(),
                                   atol=1e-3)  # fmt: skip
    # segments of one recording: each cut is its span of the long audio
    dev = {c.id: c for c in cuts["dev"]}
    assert list(dev) == [u for u, *_ in written["dev"]]
    for utt, start, end, samples in written["dev"]:
        cut = dev[utt]
        last = utt == written["dev"][-1][0]
        expected_end = len(written["long"]) / RATE if last else end
        assert cut.start == pytest.approx(start, abs=1e-4)
        assert cut.duration == pytest.approx(expected_end - start, abs=1e-3)
        got = cut.load_audio()[0]
        np.testing.assert_allclose(got[: len(samples)], samples, atol=1e-4)
    # commands: the same audio as the files they print
    test = {c.id: c for c in cuts["test"]}
    files = _flacs(tiny_corpus, "test")
    assert set(test) == set(files)
    for utt, path in files.items():
        np.testing.assert_allclose(test[utt].load_audio()[0], sf.read(path)[0], atol=1e-6)
        assert test[utt].has_features
    # cached: a second call loads without the corpus
    shutil.rmtree(tmp_path / "recipe")
    again = prepare_kaldi(tmp_path / "recipe" / "data", tmp_path / "m", ["dev"])
    assert list(again["dev"].ids) == list(dev)


def test_markers_are_dropped_and_words_kept():
    assert normalize_kaldi("[noise] hello <unk> world {breath}") == "hello world"
    assert normalize_kaldi("<sil>") == ""
    assert normalize_transcript(normalize_kaldi("don't [laughter] stop")) == "DON'T STOP"


def test_a_segment_may_end_half_a_second_late_but_not_more(tiny_corpus, tmp_path):
    written = _kaldi_dirs(tiny_corpus, tmp_path / "recipe")
    length = len(written["long"]) / RATE
    segments = tmp_path / "recipe" / "data" / "dev" / "segments"
    lines = segments.read_text().splitlines()
    utt, _, start, _ = lines[-1].split()
    segments.write_text("\n".join([*lines[:-1], f"{utt} talk1 {start} {length + 0.3:.3f}"]) + "\n")
    cuts = prepare_kaldi(tmp_path / "recipe" / "data", tmp_path / "m", ["dev"], num_jobs=1)
    last = {c.id: c for c in cuts["dev"]}[utt]
    assert last.end == pytest.approx(length, abs=1e-3)  # shortened to the recording
    segments.write_text("\n".join([*lines[:-1], f"{utt} talk1 {start} {length + 0.8:.3f}"]) + "\n")
    with pytest.raises(ValueError, match=rf"1 segment\(s\) outside their recording: {utt} "):
        prepare_kaldi(tmp_path / "recipe" / "data", tmp_path / "m2", ["dev"], num_jobs=1)


def test_bad_recordings_are_listed_or_left_out_with_their_utterances(tiny_corpus, tmp_path):
    _kaldi_dirs(tiny_corpus, tmp_path / "recipe")
    data = tmp_path / "recipe" / "data"
    wav = (data / "test" / "wav.scp").read_text().splitlines()
    broken = [wav[0].split()[0], wav[1].split()[0]]
    wav[0] = f"{broken[0]} audio/nowhere.flac"
    wav[1] = f"{broken[1]} false |"
    (data / "test" / "wav.scp").write_text("\n".join(wav) + "\n")
    with pytest.raises(ValueError) as err:
        prepare_kaldi(data, tmp_path / "strict", ["test"], num_jobs=1)
    message = str(err.value)
    assert f"test {broken[0]}: missing_audio: " in message and "nowhere.flac" in message
    assert f"test {broken[1]}: unreadable_audio: false |: command exited with status 1" in message
    cuts = prepare_kaldi(data, tmp_path / "skip", ["test"], num_jobs=1, bad_audio="skip",
                         max_bad_audio_fraction=0.5)  # fmt: skip
    assert set(cuts["test"].ids) == {line.split()[0] for line in wav[2:]}
    # the long dev recording lost: all three segments go with it, as one entry
    (tmp_path / "recipe" / "audio" / "long.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"(?s)dev: 3 of 3 utterances.*dev talk1: empty_file"):
        prepare_kaldi(data, tmp_path / "strict", ["dev"], num_jobs=1)


@pytest.mark.parametrize(
    ("table", "content", "message"),
    [
        ("text", None, r"data/dev/text does not exist; expected <corpus_dir>/<part>/wav.scp"),
        ("segments", "u1 talk1 0.5", r"segments:1: expected '<utt> <recording> <start> <end>'"),
        ("segments", "u1 talk1 one 2", r"segments:1: start and end must be numbers"),
        ("segments", "u1 talk1 2 1", r"segments:1: segment u1 runs from 2.0 to 1.0"),
        ("segments", "u1 talk9 0 1", r"segments:1: recording talk9 is not in wav.scp"),
        ("text", "u1 a\nu1 b", r"text:2: id u1 appears twice \(first on line 1\)"),
        ("utt2spk", "u1", r"utt2spk:1: expected '<utt> <spk>'"),
        ("text", "latin-1", r"text: not UTF-8 text \(byte 6: invalid continuation byte\)"),
    ],
)
def test_malformed_tables_are_named_by_file_and_line(tmp_path, table, content, message):
    part = tmp_path / "data" / "dev"
    _write(part, "wav.scp", ["talk1 audio/long.wav"])
    _write(part, "segments", ["u1 talk1 0 1"])
    _write(part, "text", ["u1 hello"])
    if content is None:
        (part / table).unlink()
    elif content == "latin-1":
        (part / table).write_bytes("u1 café\n".encode("latin-1"))
    else:
        (part / table).write_text(content + "\n")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_kaldi_part(part)


def test_utterances_must_match_between_the_tables(tmp_path):
    part = tmp_path / "data" / "train"
    _write(part, "wav.scp", ["a x.wav", "b y.wav"])
    _write(part, "text", ["a hello", "c world"])
    with pytest.raises(ValueError, match=r"1 ids in text but not in wav.scp .*\(e.g. c\); 1 ids "
                                         r"in wav.scp .* but not in text \(e.g. b\)"):  # fmt: skip
        read_kaldi_part(part)
    _write(part, "segments", ["a a 0 1", "s b 0 1"])
    with pytest.raises(ValueError, match=r"1 utterances in text but not in segments \(e.g. c\)"):
        read_kaldi_part(part)
    with pytest.raises(FileNotFoundError, match=r"data/nothing does not exist \(folders there: "):
        prepare_kaldi(tmp_path / "data", tmp_path / "m", ["nothing"])


def test_prepare_cli_and_a_training_run_on_kaldi_dirs(tiny_corpus, tmp_path, capsys):
    from conftest import train_two_steps

    _kaldi_dirs(tiny_corpus, tmp_path / "recipe")
    data, manifests = tmp_path / "recipe" / "data", tmp_path / "m"
    assert main(["prepare", "kaldi", "--corpus-dir", str(data), "--out", str(manifests),
                 "--num-jobs", "1"]) == 0  # fmt: skip
    assert all((manifests / f"cuts_{part}.jsonl.gz").is_file() for part in ("train", "dev", "test"))
    printed = capsys.readouterr().out
    assert "dev: 3 utterances, 0.00 h (utterances " in printed and " s, median " in printed
    assert "over data.max_duration_s" not in printed  # none is longer than 30 s
    shutil.rmtree(tmp_path / "recipe")  # the run loads what the command cached
    valid = train_two_steps("kaldi", data, manifests, tmp_path / "run")
    assert valid["step"] == 2 and valid["wer"] >= 0


def test_prepare_cli_names_a_folder_without_data_directories(tmp_path, capsys):
    (tmp_path / "data" / "train").mkdir(parents=True)  # no wav.scp
    assert main(["prepare", "kaldi", "--corpus-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "m")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"no data directory (*/wav.scp) in {tmp_path / 'data'}" in err and err[-1] == "\n"
    assert err.count("\n") == 1


def test_validate_decodes_every_recording_and_checks_every_utterance(tiny_corpus, tmp_path):
    from dmao.data.validation_formats import validate_kaldi
    from dmao.models.frontend import subsampled_length

    written = _kaldi_dirs(tiny_corpus, tmp_path / "recipe")
    data = tmp_path / "recipe" / "data"
    clean = validate_kaldi(data, ["train", "dev", "test"], subsampled_length=subsampled_length)
    # the corpus's own problem utterances, and nothing else
    assert {(p.utterance_id, p.reason) for p in clean.problems} == {
        (tiny_corpus.empty_id, "empty_transcript"),
        (tiny_corpus.infeasible_id, "ctc_infeasible"),
    }
    kept = len(tiny_corpus.transcripts["train"]) + 3 + len(tiny_corpus.transcripts["test"])
    assert clean.num_utterances == kept
    dev_seconds = sum(end - start for _, start, end, _ in written["dev"][:2])
    dev_seconds += len(written["long"]) / RATE - written["dev"][2][1]
    test_seconds = sum(sf.info(p).duration for p in _flacs(tiny_corpus, "test").values())
    train_seconds = sum(sf.info(p).duration for p in _flacs(tiny_corpus, "train").values())
    total = dev_seconds + test_seconds + train_seconds
    assert clean.audio_seconds == pytest.approx(total, abs=0.01)

    # a truncated file (the header reads: only decoding finds it), a command writing garbage, a
    # segment past its recording, a malformed part
    train = _flacs(tiny_corpus, "train")
    first = next(iter(train))
    copy = (
        tmp_path / "recipe" / "audio" / "LibriSpeech" / train[first].relative_to(tiny_corpus.root)
    )
    copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 3])
    wav = (data / "test" / "wav.scp").read_text().splitlines()
    garbage = wav[0].split()[0]
    wav[0] = f"{garbage} echo not audio |"
    (data / "test" / "wav.scp").write_text("\n".join(wav) + "\n")
    segments = data / "dev" / "segments"
    lines = segments.read_text().splitlines()
    utt, reco, start, _ = lines[0].split()
    lines[0] = f"{utt} {reco} {start} 99"
    segments.write_text("\n".join(lines) + "\n")
    _write(data / "broken", "wav.scp", ["a x.wav"])
    report = validate_kaldi(data, ["train", "dev", "test", "broken"],
                            subsampled_length=subsampled_length)  # fmt: skip
    found = {(p.part, p.utterance_id, p.reason) for p in report.problems}
    assert ("train", first, "unreadable_audio") in found
    assert ("test", garbage, "unreadable_audio") in found
    assert ("dev", utt, "segment_outside_recording") in found
    assert ("broken", "-", "malformed_data_dir") in found
    broken = next(p for p in report.problems if p.part == "broken")
    assert "broken/text does not exist" in broken.detail
    assert len(report.problems) == len(clean.problems) + 4
    # the command line: --kaldi finds the parts, --strict fails on problems
    assert main(["validate", str(data), "--kaldi", "--parts", "dev", "--strict"]) == 1
    assert main(["validate", str(data), "--kaldi", "--parts", "test"]) == 0


def test_prepare_reports_the_utterances_training_would_leave_out_as_too_long(capsys):
    """Whole long recordings (a Kaldi dir without segments) show in `dmao prepare`'s summary."""
    from types import SimpleNamespace

    from dmao.cli.prepare import _report

    cuts = [SimpleNamespace(duration=d) for d in (1.0, 2.0, 3.0, 600.0, 45.0)]
    _report({"train": cuts, "empty": []}, Path("m"))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        "train: 5 utterances, 0.18 h (utterances 1.0–600.0 s, median 3.0 s; "
        "2 over data.max_duration_s=30 s)"
    )
    assert printed[1] == "empty: 0 utterances, 0.00 h"
