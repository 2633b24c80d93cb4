"""Any corpus as NeMo manifests (JSON lines with ``audio_filepath``, ``duration``, ``text``):
``dmao prepare nemo``, ``dmao validate --nemo`` and a training run with ``data.corpus=nemo``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.cli.main import main
from dmao.data.corpora.nemo import find_nemo_manifests, nemo_parts, prepare_nemo
from dmao.data.corpora.nemo import read_nemo_manifest as read
from dmao.data.manifests import cut_transcript

RATE = 16000


def _flacs(tiny_corpus, part: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((tiny_corpus.root / part).rglob("*.flac"))}


def _lines(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _nemo_dirs(tiny_corpus, root: Path) -> dict:
    """``root/manifests/{train.json,dev_manifest.json,test.jsonl}`` as NeMo's scripts write
    them: train lists the corpus's files by paths relative to the manifest's folder (markers
    added to the text); dev is three spans of
    one long file (the last running 0.3 s past its end); test names its files by absolute
    paths (of the copy: tests may break them), plus two copied under one name into two
    folders, without ``duration``. Returns
    what was written."""
    audio = root / "manifests" / "audio"
    shutil.copytree(tiny_corpus.root, audio)
    train = {u: p.relative_to(tiny_corpus.root) for u, p in _flacs(tiny_corpus, "train").items()}
    texts = tiny_corpus.transcripts["train"]
    _lines(root / "manifests" / "train.json", [
        {"audio_filepath": f"audio/{rel}", "duration": sf.info(audio / rel).duration,
         "text": f"[noise] {texts[u]}", "speaker": u.split("-")[0]}
        for u, rel in train.items()
    ])  # fmt: skip
    pieces, spans, start = [np.zeros(int(0.2 * RATE))], [], 0.2
    for utt, path in list(_flacs(tiny_corpus, "dev").items())[:3]:
        samples, _ = sf.read(path)
        spans.append((utt, start, len(samples) / RATE, samples))
        pieces += [samples, np.zeros(int(0.2 * RATE))]
        start += len(samples) / RATE + 0.2
    long = np.concatenate(pieces)
    sf.write(root / "long.wav", long, RATE, subtype="FLOAT")  # beside the cwd, not the manifest
    durations = [spans[0][2], spans[1][2], spans[2][2] + 0.5]  # the last: 0.3 s past the end
    dev_texts = tiny_corpus.transcripts["dev"]
    _lines(root / "manifests" / "dev_manifest.json", [
        {"audio_filepath": "long.wav", "offset": round(s, 4), "duration": d,
         "text": dev_texts[u]}
        for (u, s, _, _), d in zip(spans, durations, strict=True)
    ])  # fmt: skip
    test = {
        u: audio / p.relative_to(tiny_corpus.root) for u, p in _flacs(tiny_corpus, "test").items()
    }
    first, second = list(test.values())[:2]
    for folder, source in (("a", first), ("b", second)):
        (root / "twins" / folder).mkdir(parents=True)
        shutil.copy(source, root / "twins" / folder / "same.flac")
    test_texts = tiny_corpus.transcripts["test"]
    records = [{"audio_filepath": str(p), "duration": sf.info(p).duration,
                "text": test_texts[u]} for u, p in test.items()]  # fmt: skip
    records += [{"audio_filepath": str(root / "twins" / f / "same.flac"), "text": "TWIN"}
                for f in ("a", "b")]  # fmt: skip
    _lines(root / "manifests" / "test.jsonl", records)
    return {"dev": spans, "long": long, "twins": (first, second)}


def test_nemo_manifests_become_the_corpus_cuts(tiny_corpus, tiny_cuts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # long.wav is found in the current directory
    written = _nemo_dirs(tiny_corpus, tmp_path)
    folder = tmp_path / "manifests"
    assert nemo_parts(folder) == ["dev", "test", "train"]
    cuts = prepare_nemo(folder, tmp_path / "m", ["train", "dev", "test"], num_jobs=1)
    # whole files: the corpus's own utterances and features; the empty one is dropped
    reference = {c.id: c for c in tiny_cuts["train"]}
    assert set(cuts["train"].ids) == set(reference) - {tiny_corpus.empty_id}
    for cut in cuts["train"]:
        assert cut_transcript(cut) == cut_transcript(reference[cut.id])  # marker gone
        assert cut.supervisions[0].speaker == cut.id.split("-")[0]
        np.testing.assert_allclose(cut.load_features(), reference[cut.id].load_features(),
                                   atol=1e-3)  # fmt: skip
    # spans of one file: Kaldi-style ids in centiseconds, each cut its span
    dev = {c.id: c for c in cuts["dev"]}
    spans = [(s, s + d + 0.5 * (i == 2)) for i, (_, s, d, _) in enumerate(written["dev"])]
    assert list(dev) == [f"long-{round(s * 100):07d}-{round(e * 100):07d}" for s, e in spans]
    for cut, (_, start, _, samples) in zip(dev.values(), written["dev"], strict=True):
        assert cut.start == pytest.approx(start, abs=1e-4)
        np.testing.assert_allclose(cut.load_audio()[0][: len(samples)], samples, atol=1e-4)
    assert list(dev.values())[2].end == pytest.approx(len(written["long"]) / RATE, abs=1e-3)
    # one name in two folders: the folder joins the id
    test = {c.id: c for c in cuts["test"]}
    assert set(test) == {*_flacs(tiny_corpus, "test"), "a_same", "b_same"}  # the rest: names
    for twin, source in zip(("a_same", "b_same"), written["twins"], strict=True):
        np.testing.assert_allclose(test[twin].load_audio()[0], sf.read(source)[0], atol=1e-6)
    # cached: a second call loads without the corpus
    shutil.rmtree(folder)
    assert list(prepare_nemo(folder, tmp_path / "m", ["dev"])["dev"].ids) == list(dev)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"x\.json:2: not JSON \(Expecting property name"),
        ('["a.wav"]', r"x\.json:2: expected a JSON object, got list"),
        (
            '{"audio_filepath": "a.wav"}',
            r"x\.json:2: expected a string 'text' \(keys there: "
            r"audio_filepath\)",
        ),
        (
            '{"audio_filepath": "a.wav", "text": "x", "offset": -1}',
            r"x\.json:2: 'offset' must be"
            r" a number of seconds >= 0",
        ),
        ('{"audio_filepath": "a.wav", "text": "x", "duration": "3"}', r"x\.json:2: 'duration'"),
        (
            '{"audio_filepath": "a.wav", "text": "y", "duration": 1}',
            r"x\.json:2: the same span "
            r"of .*a\.wav as line 1",
        ),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path, line, message):
    path = tmp_path / "x.json"
    path.write_text('{"audio_filepath": "a.wav", "text": "x", "duration": 1}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read(path)


def test_layout_problems_name_the_parts(tmp_path):
    _lines(tmp_path / "train.json", [{"audio_filepath": "a.wav", "text": "x"}])
    _lines(tmp_path / "train_manifest.jsonl", [{"audio_filepath": "a.wav", "text": "x"}])
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert nemo_parts(tmp_path) == ["train"]
    with pytest.raises(
        ValueError,
        match=r"2 manifests of part 'train' \(train\.json, "
        r"train_manifest\.jsonl\); keep one",
    ):
        find_nemo_manifests(tmp_path, "train")
    with pytest.raises(
        FileNotFoundError,
        match=r"no NeMo manifest of part 'dev' in .* \(parts "
        r"there: train\)",
    ):
        find_nemo_manifests(tmp_path, "dev")
    (tmp_path / "empty.json").write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.json: no utterances"):
        read(tmp_path / "empty.json")
    (tmp_path / "latin.json").write_bytes('{"audio_filepath": "é.wav"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.json: not UTF-8 text \(byte 20: "):
        read(tmp_path / "latin.json")


def test_bad_files_and_spans_outside_are_reported(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = _nemo_dirs(tiny_corpus, tmp_path)
    folder = tmp_path / "manifests"
    records = [json.loads(x) for x in (folder / "test.jsonl").read_text().splitlines()]
    records[0]["audio_filepath"] = "nowhere.flac"
    _lines(folder / "test.jsonl", records)
    with pytest.raises(ValueError, match=r"test nowhere: missing_audio: .*manifests/nowhere\.flac"):
        prepare_nemo(folder, tmp_path / "strict", ["test"], num_jobs=1)
    cuts = prepare_nemo(folder, tmp_path / "skip", ["test"], num_jobs=1, bad_audio="skip",
                        max_bad_audio_fraction=0.5)  # fmt: skip
    assert len(cuts["test"]) == len(records) - 1
    dev = [json.loads(x) for x in (folder / "dev_manifest.json").read_text().splitlines()]
    dev[2]["duration"] = len(written["long"]) / RATE  # from its offset: ends far past the file
    _lines(folder / "dev_manifest.json", dev)
    with pytest.raises(
        ValueError,
        match=r"dev_manifest\.json: 1 span\(s\) outside their audio "
        r"file: line 3 \(",
    ):
        prepare_nemo(folder, tmp_path / "m", ["dev"], num_jobs=1)


def test_validate_and_prepare_cli_and_a_training_run(tiny_corpus, tmp_path, monkeypatch, capsys):
    from conftest import train_two_steps

    monkeypatch.chdir(tmp_path)
    _nemo_dirs(tiny_corpus, tmp_path)
    folder, manifests = tmp_path / "manifests", tmp_path / "m"
    assert main(["validate", str(folder), "--nemo", "--parts", "dev", "test", "--strict"]) == 0
    capsys.readouterr()
    assert main(["prepare", "nemo", "--corpus-dir", str(folder), "--out", str(manifests),
                 "--num-jobs", "1"]) == 0  # fmt: skip
    assert "dev: 3 utterances" in capsys.readouterr().out
    valid = train_two_steps("nemo", folder, manifests, tmp_path / "run")
    assert valid["step"] == 2 and valid["wer"] >= 0
    # a file emptied: validate lists it beside the corpus's own problem utterances
    records = [json.loads(x) for x in (folder / "test.jsonl").read_text().splitlines()]
    emptied = Path(records[0]["audio_filepath"])
    assert tmp_path in emptied.parents  # a copy, not the shared corpus
    emptied.write_bytes(b"")
    report = tmp_path / "report.json"
    assert main(["validate", str(folder), "--nemo", "--json", str(report)]) == 0
    problems = {(p["part"], p["reason"]) for p in json.loads(report.read_text())["problems"]}
    assert problems == {("test", "empty_file"), ("train", "ctc_infeasible"),
                        ("train", "empty_transcript")}  # fmt: skip


@pytest.mark.parametrize("kind", ["kaldi", "nemo", "parquet", "lhotse"])
def test_prepare_of_a_missing_folder_is_one_line(tmp_path, capsys, kind):
    missing = tmp_path / "nowhere"
    assert main(["prepare", kind, "--corpus-dir", str(missing), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dmao prepare: error: --corpus-dir {missing} does not exist; expected ")
    assert err.count("\n") == 1
