"""NeMo's tarred datasets (``tarred_audio_manifest.json`` beside ``audio_<k>.tar`` shards, as
``convert_to_tarred_audio_dataset.py`` writes them): ``dmao prepare nemo``, ``dmao validate
--nemo`` and ``dmao transcribe``'s refusal."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.cli.main import main
from dmao.data.corpora.nemo import find_nemo_manifests, nemo_parts, prepare_nemo
from dmao.data.corpora.nemo_tarred import member_id, read_members
from dmao.data.manifests import cut_transcript

RATE = 16000


def _tar(shard: Path, members: dict[str, bytes]) -> None:
    shard.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(shard, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _audio(samples: np.ndarray, kind: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, RATE, format=kind, subtype="PCM_16")
    return out.getvalue()


def _manifest(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _dataset(tiny_corpus, root: Path) -> dict[str, np.ndarray]:
    """``root/train/``: two shards of the tiny corpus's train files, named as the tarring
    script squashes them (``<speaker>_<name>.wav``); one of them also split into two lines
    by ``offset`` (the second named ``-sub1``, the script's rule); one member re-encoded as FLAC
    while its line keeps ``.wav`` (``--force_codec flac``). ``root/dev/bucket1``, ``bucket2``:
    a bucketed dataset whose buckets both have an ``audio_0.tar``. Returns each member's
    samples by member id."""
    flacs = sorted((tiny_corpus.root / "train").rglob("*.flac"))[:6]
    texts = tiny_corpus.transcripts["train"]
    samples = {f"audio_{p.stem}": sf.read(p, dtype="int16")[0] for p in flacs}
    names = list(samples)
    records, shards = [], ({}, {})
    for i, name in enumerate(names):
        kind = "FLAC" if i == 1 else "WAV"
        shards[i % 2][f"{name}.{kind.lower()}"] = _audio(samples[name], kind)
        records.append({"audio_filepath": f"{name}.wav", "duration": len(samples[name]) / RATE,
                        "text": texts[flacs[i].stem], "shard_id": i % 2})  # fmt: skip
    split = names[2]
    half = len(samples[split]) / RATE / 2
    records[2]["duration"] = half
    records.append({"audio_filepath": f"{split}-sub1.wav", "offset": half,
                    "duration": half, "text": "SECOND HALF", "shard_id": 0})  # fmt: skip
    for k, members in enumerate(shards):
        _tar(root / "train" / f"audio_{k}.tar", members)
    _manifest(root / "train" / "tarred_audio_manifest.json", records)
    for bucket, name in (("bucket1", names[3]), ("bucket2", names[4])):
        _tar(root / "dev" / bucket / "audio_0.tar", {"same.wav": _audio(samples[name])})
        _manifest(root / "dev" / bucket / "tarred_audio_manifest.json", [
            {"audio_filepath": "same.wav", "duration": len(samples[name]) / RATE,
             "text": "BUCKET", "shard_id": 0}
        ])  # fmt: skip
    samples["bucket1"], samples["bucket2"] = samples[names[3]], samples[names[4]]
    return samples


def test_member_ids_follow_the_tarring_scripts_names():
    assert member_id("wavs_a.wav") == "wavs_a"
    assert member_id("wavs_a-sub3.wav") == "wavs_a"  # a later span of the same file
    assert member_id("x_12_5_3_0.flac") == "x_12_5_3_0"  # --slice_with_offset
    assert member_id("folder/plain") == "plain"


def test_a_tarred_dataset_becomes_the_parts_cuts(tiny_corpus, tmp_path):
    samples = _dataset(tiny_corpus, tmp_path / "corpus")
    corpus = tmp_path / "corpus"
    assert nemo_parts(corpus) == ["dev", "train"]
    assert len(find_nemo_manifests(corpus, "dev")) == 2
    cuts = prepare_nemo(corpus, tmp_path / "m", ["train", "dev"], num_jobs=1)
    train = {c.id: c for c in cuts["train"]}
    names = [n for n in samples if n.startswith("audio_")]
    split = names[2]
    whole = [n for n in names if n != split]
    half, end = (round(len(samples[split]) / RATE * 100 / k) for k in (2, 1))  # centiseconds
    assert set(train) == {*whole, f"{split}-0000000-{half:07d}", f"{split}-{half:07d}-{end:07d}"}
    for name in whole:  # each member's audio, FLAC and WAV alike, read back from the copy
        audio = train[name].load_audio()[0]
        np.testing.assert_allclose(audio, samples[name] / 32768, atol=1e-4)
        assert train[name].has_features
    halves = sorted((c for c in train.values() if c.recording_id == split), key=lambda c: c.start)
    assert [cut_transcript(c) for c in halves][1] == "SECOND HALF"
    joined = np.concatenate([c.load_audio()[0] for c in halves])
    np.testing.assert_allclose(joined, samples[split][: len(joined)] / 32768, atol=1e-4)
    copied = sorted(p.name for p in (tmp_path / "m" / "audio" / "train").rglob("*.*"))
    assert copied == sorted([f"{n}.{'flac' if n == names[1] else 'wav'}" for n in names])
    # the buckets are one part; the same member name in both is two recordings
    dev = {c.recording_id: c for c in cuts["dev"]}
    assert len(dev) == 2
    for reco, cut in dev.items():
        bucket = "bucket1" if "bucket1" in reco else "bucket2"
        np.testing.assert_allclose(cut.load_audio()[0], samples[bucket] / 32768, atol=1e-4)


def test_missing_members_and_shards_are_bad_audio_not_a_stop(tiny_corpus, tmp_path, capsys):
    samples = _dataset(tiny_corpus, tmp_path / "corpus")
    corpus = tmp_path / "corpus"
    names = [n for n in samples if n.startswith("audio_")]
    shard = corpus / "train" / "audio_1.tar"
    with tarfile.open(shard) as tar:  # shard 1 loses its first member
        kept = {m.name: tar.extractfile(m).read() for m in tar.getmembers()[1:]}
    _tar(shard, kept)
    (corpus / "dev" / "bucket2" / "audio_0.tar").unlink()
    with pytest.raises(ValueError, match=rf"train {names[1]}: missing_audio: .*audio_1\.tar/"
                                         rf"{names[1]}: no member of that name in "):  # fmt: skip
        prepare_nemo(corpus, tmp_path / "strict", ["train"], num_jobs=1)
    cuts = prepare_nemo(corpus, tmp_path / "skip", ["train", "dev"], num_jobs=1,
                        bad_audio="skip", max_bad_audio_fraction=0.5)  # fmt: skip
    assert names[1] not in set(cuts["train"].ids) and len(cuts["train"]) == len(names)
    assert len(cuts["dev"]) == 1
    bad = json.loads((tmp_path / "skip" / "bad_audio.json").read_text())
    details = sorted(e["detail"] for e in bad["bad_audio"])
    assert any("bucket2/audio_0.tar does not exist" in d for d in details), details
    # validate reads the shards in place and names the same problems
    report = tmp_path / "report.json"
    assert main(["validate", str(corpus), "--nemo", "--json", str(report)]) == 0
    problems = json.loads(report.read_text())["problems"]
    missing = {(p["part"], p["reason"]) for p in problems if p["reason"] == "missing_audio"}
    assert missing == {("train", "missing_audio"), ("dev", "missing_audio")}
    assert len([p for p in problems if p["reason"] == "missing_audio"]) == 2
    capsys.readouterr()


def test_read_members_reports_a_broken_shard_once_per_member(tmp_path):
    shard = tmp_path / "audio_0.tar"
    shard.write_bytes(b"not a tar file at all" * 40)
    got = dict(read_members(shard, ["a", "b"]))
    assert set(got) == {"a", "b"}
    assert all(v[0] == "unreadable_audio" and "not a readable tar file" in v[1]
               for v in got.values())  # fmt: skip


def test_a_part_both_plain_and_tarred_is_ambiguous(tiny_corpus, tmp_path):
    _dataset(tiny_corpus, tmp_path)
    _manifest(tmp_path / "train.json", [{"audio_filepath": "a.wav", "text": "x"}])
    with pytest.raises(ValueError, match=r"2 manifests of part 'train' \(train\.json, "
                                         r"train/ \(a tarred dataset\)\); keep one"):  # fmt: skip
        find_nemo_manifests(tmp_path, "train")


def test_transcribe_refuses_a_tarred_manifest_in_one_line(tiny_corpus, tmp_path, capsys):
    from dmao.export.inputs import expand_inputs

    _dataset(tiny_corpus, tmp_path)
    manifest = tmp_path / "train" / "tarred_audio_manifest.json"
    with pytest.raises(ValueError, match=r"tarred_audio_manifest\.json:1: a line of a tarred "
                                         r"dataset \('shard_id'\)"):  # fmt: skip
        expand_inputs([str(manifest)])
