"""What ``dmao transcribe`` reads: files as given, folders searched for audio, @LIST files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmao.export import AudioInput, expand_inputs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_files_are_taken_as_given_even_when_missing(tmp_path):
    a = _touch(tmp_path / "a.wav")
    assert expand_inputs([a, "gone.flac"]) == [
        AudioInput(str(a), a),
        AudioInput("gone.flac", Path("gone.flac")),
    ]


def test_a_folder_gives_its_audio_files_sorted_without_hidden_and_text_files(tmp_path):
    corpus = tmp_path / "corpus"
    for name in ("b/2.flac", "a/1.WAV", "a/1.trans.txt", "a/.1.wav", ".cache/3.wav", "c.sph"):
        _touch(corpus / name)
    (corpus / "d.wav").mkdir()  # a folder named like audio is not a file
    inputs = expand_inputs([str(corpus)])
    assert [i.id for i in inputs] == [str(corpus / p) for p in ("a/1.WAV", "b/2.flac", "c.sph")]
    assert all(i.path.is_file() and i.error is None for i in inputs)


def test_a_folder_without_audio_is_one_failed_input(tmp_path):
    _touch(tmp_path / "notes.txt")
    (only,) = expand_inputs([tmp_path])
    assert only.path == tmp_path and only.error is not None
    assert only.error.startswith(f"{tmp_path}: no audio files below this folder; expected")
    assert "*.flac" in only.error and "\n" not in only.error


def test_list_files_resolve_relative_paths_against_their_folder(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    audio = _touch(tmp_path / "audio" / "x.wav")
    (lists / "all.txt").write_text(
        "# a comment\n"
        "\n"
        "../audio/x.wav\n"
        f"utt-1\t{audio}\n"
        "utt-2\t../audio\n"  # listed entries are taken literally: a folder is a bad entry
        "  ../missing.wav  \n",
        encoding="utf-8",
    )
    assert expand_inputs([f"@{lists / 'all.txt'}", audio]) == [
        AudioInput("../audio/x.wav", lists / "../audio/x.wav"),
        AudioInput("utt-1", audio),
        AudioInput("utt-2", lists / "../audio"),
        AudioInput("../missing.wav", lists / "../missing.wav"),
        AudioInput(str(audio), audio),
    ]


def test_bad_list_files_stop_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such list file"):
        expand_inputs([f"@{tmp_path / 'nope.txt'}"])
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt: the list names no files"):
        expand_inputs([f"@{tmp_path / 'empty.txt'}"])
    (tmp_path / "bad.txt").write_text("a.wav\n\tb.wav\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected PATH or ID<TAB>PATH"):
        expand_inputs([f"@{tmp_path / 'bad.txt'}"])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9.wav\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not a readable UTF-8 list"):
        expand_inputs([f"@{tmp_path / 'latin1.txt'}"])
