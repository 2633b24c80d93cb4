"""A Hugging Face dataset as the Hub serves it (Parquet shards with an ``Audio`` column) or as
``save_to_disk`` writes it (Arrow streams and ``state.json``): ``dmao prepare parquet``, ``dmao
validate --parquet`` and a training run with ``data.corpus=parquet``. The files are written with
pyarrow in the layouts ``datasets`` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dmao.cli.main import main
from dmao.data.corpora.parquet import (
    parquet_parts,
    part_shards,
    prepare_parquet,
    read_parquet_part,
)
from dmao.data.manifests import cut_transcript

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_META = {"huggingface": json.dumps({"info": {"features": {
    "file": {"dtype": "string", "_type": "Value"},
    "audio": {"sampling_rate": 16000, "_type": "Audio"},
    "text": {"dtype": "string", "_type": "Value"},
    "speaker_id": {"dtype": "int64", "_type": "Value"},
    "id": {"dtype": "string", "_type": "Value"},
}}})}  # fmt: skip


def _flacs(tiny_corpus, part: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((tiny_corpus.root / part).rglob("*.flac"))}


def _write(path: Path, columns: dict, metadata: dict | None = None) -> None:
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _hub_dataset(tiny_corpus, root: Path) -> Path:
    """``root/data``: train in two shards as ``datasets`` writes them (audio bytes, the Hub's
    metadata, ``id`` and ``speaker_id`` columns); dev in one shard without metadata, its
    transcript in ``sentence`` and no ids (named by the audio paths); test as the Hub's Parquet
    export (``test/0000.parquet``) holding paths only, to files beside it."""
    data = root / "data"
    texts = {p: tiny_corpus.transcripts[p] for p in ("train", "dev", "test")}
    train = list(_flacs(tiny_corpus, "train").items())
    half = len(train) // 2
    for index, shard in enumerate((train[:half], train[half:])):
        _write(data / f"train-{index:05d}-of-00002.parquet", {
            "file": [str(p) for _, p in shard],
            "audio": pa.array([{"bytes": p.read_bytes(), "path": p.name} for _, p in shard], AUDIO),
            "text": [f"[noise] {texts['train'][u]}" for u, _ in shard],
            "speaker_id": [int(u.split("-")[0]) for u, _ in shard],
            "id": [u for u, _ in shard],
        }, HF_META)  # fmt: skip
    dev = list(_flacs(tiny_corpus, "dev").items())
    _write(data / "dev-00000-of-00001.parquet", {
        "audio": pa.array([{"bytes": p.read_bytes(), "path": f"x/{p.name}"} for _, p in dev],
                          AUDIO),
        "sentence": [texts["dev"][u] for u, _ in dev],
    })  # fmt: skip
    test = list(_flacs(tiny_corpus, "test").items())
    for _, p in test:
        (data / "test" / "wavs").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, data / "test" / "wavs" / p.name)
    _write(data / "test" / "0000.parquet", {
        "audio": pa.array([{"bytes": None, "path": f"wavs/{p.name}"} for _, p in test], AUDIO),
        "transcription": [texts["test"][u] for u, _ in test],
    })  # fmt: skip
    return data


def test_hub_parquet_files_become_the_corpus_cuts(tiny_corpus, tiny_cuts, tmp_path):
    data = _hub_dataset(tiny_corpus, tmp_path)
    assert parquet_parts(data) == ["dev", "test", "train"]
    cuts = prepare_parquet(data, tmp_path / "m", ["train", "dev", "test"], num_jobs=1)
    for part in ("train", "dev", "test"):
        reference = {c.id: c for c in tiny_cuts[part]}
        got = {c.id: c for c in cuts[part]}
        empty = {tiny_corpus.empty_id} if part == "train" else set()
        assert set(got) == set(reference) - empty  # ids: the id column, else the audio paths
        for utterance, cut in got.items():
            assert cut_transcript(cut) == cut_transcript(reference[utterance])
            np.testing.assert_allclose(cut.load_features(), reference[utterance].load_features(),
                                       atol=1e-3)  # fmt: skip
    speakers = {c.supervisions[0].speaker for c in cuts["train"]}
    assert speakers == {u.split("-")[0] for u in tiny_corpus.transcripts["train"]}
    # bytes copied out unchanged; paths read where they are
    flacs = _flacs(tiny_corpus, "train")
    for cut in cuts["train"]:
        source = Path(cut.recording.sources[0].source)
        assert source.parent == tmp_path / "m" / "audio" / "train"
        assert source.read_bytes() == flacs[cut.id].read_bytes()
    assert all(Path(c.recording.sources[0].source).parent == data / "test" / "wavs"
               for c in cuts["test"])  # fmt: skip
    # cached: a second call loads without the files
    shutil.rmtree(data)
    assert sorted(prepare_parquet(data, tmp_path / "m", ["dev"])["dev"].ids) == sorted(
        c.id for c in cuts["dev"]
    )


def test_bad_cells_are_bad_audio_and_bad_files_one_line(tiny_corpus, tmp_path):
    data = _hub_dataset(tiny_corpus, tmp_path)
    shard = data / "dev-00000-of-00001.parquet"
    table = pq.read_table(shard)
    cells = table.column("audio").to_pylist()
    cells[0] = {"bytes": b"not audio", "path": cells[0]["path"]}
    cells[1] = {"bytes": None, "path": None}
    _write(shard, {"audio": pa.array(cells, AUDIO), "sentence": table.column("sentence")})
    # a row without a path: the part's ids are row numbers (dev-0000000, ...)
    with pytest.raises(ValueError) as caught:
        prepare_parquet(data, tmp_path / "strict", ["dev"], num_jobs=1)
    message = str(caught.value)
    assert f"dev dev-0000000: unreadable_audio: {shard}:row 0: the audio cell is not audio" in (
        message
    )
    assert f"dev dev-0000001: missing_audio: {shard}:row 1: the audio cell has neither" in message
    cuts = prepare_parquet(data, tmp_path / "skip", ["dev"], num_jobs=1, bad_audio="skip",
                           max_bad_audio_fraction=0.5)  # fmt: skip
    assert len(cuts["dev"]) == len(cells) - 2
    # a part in two folders, no transcript column, no audio column: one line each
    _write(tmp_path / "two" / "a" / "train.parquet", {"audio": pa.array([], AUDIO), "text": []})
    _write(tmp_path / "two" / "b" / "train.parquet", {"audio": pa.array([], AUDIO), "text": []})
    with pytest.raises(ValueError, match=r"part 'train' has data files in 2 folders \(a, b\)"):
        parquet_parts(tmp_path / "two")
    odd = tmp_path / "odd" / "test.parquet"
    _write(odd, {"audio": pa.array([], AUDIO), "words": pa.array([], pa.string())})
    with pytest.raises(
        ValueError,
        match=r"test\.parquet: no transcript column \(one of text, "
        r"sentence.*columns: audio, words\); set data\.text_col",
    ):
        read_parquet_part([odd], "test")
    assert read_parquet_part([odd], "test", text_column="words") == []
    odd.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"test\.parquet: not a readable Parquet file \("):
        read_parquet_part([odd], "test")
    _write(odd, {"file": ["a.wav"], "text": ["x"]})
    with pytest.raises(ValueError, match=r"test\.parquet: no audio columns \(columns: file, text"):
        read_parquet_part([odd], "test")


def test_validate_and_prepare_cli_and_a_training_run(tiny_corpus, tmp_path, capsys):
    from conftest import train_two_steps

    data = _hub_dataset(tiny_corpus, tmp_path)
    manifests = tmp_path / "m"
    assert main(["validate", str(data), "--parquet", "--parts", "dev", "test", "--strict"]) == 0
    report = tmp_path / "report.json"
    assert main(["validate", str(data), "--parquet", "--json", str(report)]) == 0
    found = json.loads(report.read_text())["problems"]
    problems = {(p["utterance_id"], p["reason"]) for p in found}
    assert problems == {(tiny_corpus.empty_id, "empty_transcript"),
                        (tiny_corpus.infeasible_id, "ctc_infeasible")}  # fmt: skip
    capsys.readouterr()
    assert main(["prepare", "parquet", "--corpus-dir", str(data), "--out", str(manifests),
                 "--num-jobs", "1"]) == 0  # fmt: skip
    assert "manifests for " in capsys.readouterr().out
    valid = train_two_steps("parquet", data, manifests, tmp_path / "run")
    assert valid["step"] == 2 and valid["wer"] >= 0


def test_without_pyarrow_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    import sys

    data = tmp_path / "data"
    _write(data / "train.parquet", {"audio": pa.array([], AUDIO), "text": []})
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if it were not installed
    assert (
        main(["prepare", "parquet", "--corpus-dir", str(data), "--out", str(tmp_path / "m")]) == 2
    )
    err = capsys.readouterr().err
    assert err == (
        "dmao prepare: error: reading Parquet files needs pyarrow: pip install 'dmao[parquet]' "
        "(or pyarrow)\n"
    )


def _arrow(path: Path, columns: dict) -> None:
    """An Arrow IPC stream as ``datasets``' ``ArrowWriter`` writes it (record batches of 40
    rows, the Hub's features in the schema)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns).replace_schema_metadata(HF_META)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=40)


def _save_to_disk(folder: Path, split: str | None, shards: list[dict]) -> None:
    """``folder`` as ``Dataset.save_to_disk`` writes it: one Arrow IPC stream per shard
    (``data-0000k-of-0000n.arrow``, the Hub's features in the schema), ``state.json`` naming
    them and the split, ``dataset_info.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data-{k:05d}-of-{len(shards):05d}.arrow" for k in range(len(shards))]
    for name, columns in zip(names, shards, strict=True):
        _arrow(folder / name, columns)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": "0",
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": split}  # fmt: skip
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text(
        json.dumps(json.loads(HF_META["huggingface"])["info"])
    )


def test_a_dataset_saved_to_disk_becomes_the_corpus_cuts(tiny_corpus, tmp_path):
    import soundfile as sf

    from dmao.data.text import normalize_transcript

    files = {
        u: p for part in ("train", "dev", "test") for u, p in _flacs(tiny_corpus, part).items()
    }
    texts = {u: t for part in ("train", "dev", "test")
             for u, t in tiny_corpus.transcripts[part].items()}  # fmt: skip
    utterances = sorted(files)
    assert len(utterances) > 16  # more than one slice of the reader's 16-row batches
    half = len(utterances) // 2

    def columns(ids: list[str]) -> dict:
        return {"file": [str(files[u]) for u in ids],
                "audio": pa.array([{"bytes": files[u].read_bytes(), "path": files[u].name}
                                   for u in ids], AUDIO),
                "text": [texts[u] for u in ids],
                "speaker_id": [int(u.split("-")[0]) for u in ids], "id": ids}  # fmt: skip

    saved = tmp_path / "saved"  # a DatasetDict: one folder per split
    _save_to_disk(
        saved / "train", "train", [columns(utterances[:half]), columns(utterances[half:])]
    )
    _save_to_disk(saved / "held_out", None, [columns(utterances[:3])])  # no split: the folder
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "held_out"]}))
    assert parquet_parts(saved) == ["held_out", "train"]
    cuts = prepare_parquet(saved, tmp_path / "m", ["train", "held_out"], num_jobs=1)
    train = {c.id: c for c in cuts["train"]}
    assert set(train) == set(utterances) - {tiny_corpus.empty_id}
    for utterance, cut in train.items():
        np.testing.assert_allclose(cut.load_audio()[0], sf.read(files[utterance])[0], atol=1e-6)
        assert cut_transcript(cut) == normalize_transcript(texts[utterance])
        assert cut.supervisions[0].speaker == utterance.split("-")[0]
    assert sorted(cuts["held_out"].ids) == utterances[:3]
    report = tmp_path / "report.json"
    assert main(["validate", str(saved), "--parquet", "--parts", "held_out", "--json",
                 str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["problems"] == []
    (saved / "held_out" / "data-00000-of-00001.arrow").write_bytes(b"not arrow")
    with pytest.raises(ValueError, match=r"data-00000-of-00001\.arrow: not a readable Arrow file"):
        read_parquet_part([saved / "held_out" / "data-00000-of-00001.arrow"], "held_out")
    (saved / "held_out" / "state.json").write_text("{}")
    with pytest.raises(ValueError, match=r"state\.json: not a save_to_disk state\.json with"):
        parquet_parts(saved)


def test_a_dataset_in_load_datasets_cache_is_read_by_split(tiny_corpus, tmp_path):
    """The cache of ``load_dataset`` (an audiofolder-style dataset: paths to the extracted
    files, no bytes): ``<builder>-<split>[-NNNNN-of-NNNNN].arrow`` beside
    ``dataset_info.json``; a ``map`` cache file beside them is not a split."""
    cache = tmp_path / "cache" / "tiny_speech" / "default" / "0.0.0" / "f00d"
    texts = {p: tiny_corpus.transcripts[p] for p in ("train", "dev")}

    def columns(part: str, items: list[tuple[str, Path]]) -> dict:
        audio = [{"bytes": None, "path": str(p)} for _, p in items]
        return {"audio": pa.array(audio, AUDIO), "text": [texts[part][u] for u, _ in items],
                "id": [u for u, _ in items]}  # fmt: skip

    train = list(_flacs(tiny_corpus, "train").items())
    dev = list(_flacs(tiny_corpus, "dev").items())
    _arrow(cache / "tiny_speech-train-00000-of-00002.arrow", columns("train", train[:4]))
    _arrow(cache / "tiny_speech-train-00001-of-00002.arrow", columns("train", train[4:]))
    _arrow(cache / "tiny_speech-validation.arrow", columns("dev", dev))
    _arrow(cache / "cache-3f2a9b.arrow", columns("dev", dev[:1]))  # a map() result
    (cache / "dataset_info.json").write_text(json.dumps({"builder_name": "tiny_speech"}))
    assert parquet_parts(tmp_path / "cache") == ["train", "validation"]
    rows = read_parquet_part(part_shards(tmp_path / "cache", "train"), "train")
    assert [r.id for r in rows] == [u for u, _ in train]
    assert all(r.path == p for r, (_, p) in zip(rows, train, strict=True))
    cuts = prepare_parquet(tmp_path / "cache", tmp_path / "m", ["validation"], num_jobs=1)
    assert sorted(cuts["validation"].ids) == sorted(u for u, _ in dev)
