"""``dmao score REF HYP``: transcripts read in every format, scored as a decode, bad ones named."""

from __future__ import annotations

import json

import pytest

from dmao.cli.main import main
from dmao.evaluation.results_table import find_results
from dmao.evaluation.sclite import read_trn, write_trn
from dmao.evaluation.significance import read_paired_decodes
from dmao.evaluation.transcripts import read_transcripts, score_files
from dmao.evaluation.wer import score_corpus


def _kaldi_test_set(tmp_path):
    part = tmp_path / "data" / "test"
    part.mkdir(parents=True)
    (part / "text").write_text(
        "u1 HELLO [noise] WORLD\nu2 A B C\nu3 <unk>\nu4 GOOD DAY\n", encoding="utf-8"
    )
    (part / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\nu4 s2\n", encoding="utf-8")
    return part


def test_every_format_is_read(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 HELLO  WORLD\n\nu2\nu3\tA  B\n", encoding="utf-8")  # Kaldi text
    assert read_transcripts(text).texts == {"u1": "HELLO WORLD", "u2": "", "u3": "A B"}

    default = tmp_path / "transcribe.txt"  # dmao transcribe: ID<TAB>text; an id may hold spaces
    default.write_text("my dir/a.wav\thello there\nb.wav\t\n", encoding="utf-8")
    assert read_transcripts(default).texts == {"my dir/a.wav": "hello there", "b.wav": ""}

    tsv = tmp_path / "transcribe.tsv"
    tsv.write_text("id\ttext\tduration_s\trtf\na\thi you\t1.5\t0.1\n", encoding="utf-8")
    assert read_transcripts(tsv).texts == {"a": "hi you"}

    jsonl = tmp_path / "transcribe.jsonl"
    jsonl.write_text(
        json.dumps({"id": "a", "path": "a.wav", "text": "hi  you", "duration_s": 1.0}) + "\n"
        + json.dumps({"id": "b", "path": "b.wav", "error": "b.wav: empty file"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    found = read_transcripts(jsonl)
    assert (found.texts, found.failed) == ({"a": "hi you"}, ["b"])

    trn = tmp_path / "hyp.trn"
    write_trn(trn, {"s1-u1": "HELLO", "s1-u2": "A B"})
    assert read_transcripts(trn).texts == {"s1-u1": "HELLO", "s1-u2": "A B"}

    nemo = tmp_path / "test_manifest.json"  # NeMo: ids from the files, text or pred_text
    nemo.write_text(
        json.dumps({"audio_filepath": "/d/a.wav", "duration": 1.0, "text": "hi  you",
                    "pred_text": "hi", "speaker": "s7"}) + "\n"
        + json.dumps({"audio_filepath": "/d/b.flac", "offset": 2.5, "duration": 1.25,
                      "text": "yes", "pred_text": "yes"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    found = read_transcripts(nemo)
    assert (found.texts, found.speakers) == ({"a": "hi you", "b-0000250-0000375": "yes"},
                                             {"a": "s7"})  # fmt: skip
    assert read_transcripts(nemo, nemo_text="pred_text").texts == {
        "a": "hi",
        "b-0000250-0000375": "yes",
    }

    folder = read_transcripts(_kaldi_test_set(tmp_path))
    assert folder.texts["u1"] == "HELLO [noise] WORLD"  # as written; normalised when scored
    assert folder.speakers == {"u1": "s1", "u2": "s1", "u3": "s2", "u4": "s2"}


def test_a_scored_file_is_a_decode_for_results_and_significance(tmp_path, caplog):
    part = _kaldi_test_set(tmp_path)
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("u1\thello world\nu3\tuh\nu2\ta c d\n", encoding="utf-8")  # u4 failed
    out = tmp_path / "scored"
    scored = score_files(part, hyp, out_dir=out)
    # u3's reference is only <unk>: not scored, as it is not in a prepared corpus either.
    assert scored.ids == ["u1", "u2", "u4"] and scored.empty_references == 1
    assert scored.missing == ["u4"] and "1 of 3 references have no hypothesis" in caplog.text
    expected = score_corpus(["HELLO WORLD", "A B C", "GOOD DAY"], ["hello world", "a c d", ""])
    assert scored.score.summary() == expected.summary()
    assert (scored.score.word.errors, scored.score.word.ref_len) == (4, 7)
    assert read_trn(out / "ref.trn") == {
        "s1-u1": "HELLO WORLD",
        "s1-u2": "A B C",
        "s2-u4": "GOOD DAY",
    }
    (row,) = find_results([out])
    assert (row.split, row.decoder, row.utterances) == ("test", "external", 3)
    assert row.wer == pytest.approx(100 * 4 / 7)
    paired = read_paired_decodes(out, out)  # what dmao significance reads
    assert paired.ids == ["u1", "u2", "u4"]
    assert json.loads((out / "result.json").read_text())["missing_hypotheses"] == 1
    with pytest.raises(
        ValueError, match=r"1 of 3 references have no hypothesis in .*\(e\.g\. u4\)"
    ):
        score_files(part, hyp, missing="error")


def test_the_command_prints_the_score(tmp_path, capsys):
    part = _kaldi_test_set(tmp_path)
    hyp = tmp_path / "hyp.trn"  # sclite trn on the hypothesis side, Kaldi ids
    write_trn(hyp, {"u1": "HELLO WORLD", "u2": "A B C", "u4": "GOOD DAY"})
    assert main(["score", str(part), str(hyp), "--aligner", "sclite"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("WER 0.00 % [ 0 / 7, 0 ins, 0 del, 0 sub ] CER 0.00 %")
    assert lines[1] == "3 utterances (1 empty references not scored)"


@pytest.mark.parametrize(
    ("ref", "hyp", "message"),
    [
        (
            "u1 A\n",
            "u1 A\nu9 B\nu8 C\n",
            r"hyp\.txt: 2 ids are not in .*ref\.txt \(e\.g\. u9, u8\)",
        ),
        ("u1 A\nu1 B\n", "u1 A\n", r"ref\.txt:2: id u1 appears twice \(first on line 1\)"),
        ("u1 A\n", '{"id": "u1"}\n', r"hyp\.txt:1: expected a JSON object with 'id' and 'text'"),
        ("u1 [noise]\n", "u1 A\n", r"ref\.txt: no reference is left to score"),
        (
            '{"audio_filepath": "u1.wav", "text": "A"}\n',
            '{"audio_filepath": "u1.wav", "text": "A"}\n',
            r"hyp\.txt:1: expected a string 'pred_text' \(keys there: audio_filepath, text\)",
        ),
    ],
)
def test_bad_transcripts_stop_with_one_line(tmp_path, ref, hyp, message):
    (tmp_path / "ref.txt").write_text(ref, encoding="utf-8")
    (tmp_path / "hyp.txt").write_text(hyp, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        score_files(tmp_path / "ref.txt", tmp_path / "hyp.txt")
    assert "\n" not in str(caught.value)


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such transcript file"):
        read_transcripts(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"a folder without a 'text' file"):
        read_transcripts(tmp_path)
