"""What ``dmao transcribe`` reads: files as given, folders searched for audio, @LIST files, Kaldi
data directories (their utterances, read from their recordings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmao.decoding.timing import WordTiming
from dmao.export import AudioInput, Transcription, expand_inputs
from dmao.export.inputs import InputReader, RecordingSpan


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


def _kaldi_recipe(tmp_path: Path, wav_scp: str, segments: str | None) -> Path:
    """``tmp_path/recipe/data/test`` with the given ``wav.scp`` (and ``segments``)."""
    part = tmp_path / "recipe" / "data" / "test"
    part.mkdir(parents=True)
    (part / "wav.scp").write_text(wav_scp, encoding="utf-8")
    if segments is not None:
        (part / "segments").write_text(segments, encoding="utf-8")
    return part


def test_a_kaldi_data_directory_gives_its_utterances(tmp_path):
    part = _kaldi_recipe(
        tmp_path,
        "rec1 audio/rec1.flac\nrec2 cat audio/rec2.wav |\nrec3 /abs/rec3.wav\n",
        "u1 rec1 0.0 1.5\nu2 rec1 1.5 -1\nu3 rec2 0 2\n",
    )
    root = (tmp_path / "recipe").resolve()  # relative entries start from the recipe's root
    (part / "reco2file_and_channel").write_text("rec1 talk1 1\n", encoding="utf-8")
    rec1 = root / "audio/rec1.flac"
    assert expand_inputs([part]) == [
        AudioInput("u1", rec1, span=RecordingSpan("rec1", None, root, 0, 1.5, "talk1", "1")),
        AudioInput("u2", rec1, span=RecordingSpan("rec1", None, root, 1.5, -1, "talk1", "1")),
        AudioInput(
            "u3",
            part / "wav.scp",
            span=RecordingSpan("rec2", "cat audio/rec2.wav", root, 0, 2, "rec2", "A"),
        ),
    ]
    (part / "segments").unlink()  # without segments: one utterance per recording
    assert [(i.id, i.span.start, i.span.end) for i in expand_inputs([part])] == [
        ("rec1", 0, -1),
        ("rec2", 0, -1),
        ("rec3", 0, -1),
    ]
    assert expand_inputs([part])[2].path == Path("/abs/rec3.wav")


@pytest.mark.parametrize(
    ("wav_scp", "segments", "message"),
    [
        ("rec1 a.wav\n", "u1 rec1 zero 1\n", r"segments:1: start and end must be numbers"),
        ("rec1 a.wav\n", "u1 rec2 0 1\n", r"segments:1: recording rec2 is not in wav\.scp"),
        ("rec1 a.wav\n", "u1 rec1 2 1\n", r"segments:1: segment u1 runs from 2\.0 to 1\.0"),
        ("rec1 a.wav\nrec1 b.wav\n", None, r"wav\.scp:2: id rec1 appears twice"),
        ("\n", None, r"wav\.scp: lists no recordings"),
    ],
)
def test_a_bad_kaldi_data_directory_stops_with_one_line(tmp_path, wav_scp, segments, message):
    part = _kaldi_recipe(tmp_path, wav_scp, segments)
    with pytest.raises(ValueError, match=message) as caught:
        expand_inputs([part])
    assert "\n" not in str(caught.value)


RATE = 16000


def _stereo(path: Path, seconds: float, seed: int) -> np.ndarray:
    """A 2-channel 16 kHz float WAV at ``path``; returns its ``(N, 2)`` samples."""
    rng = np.random.default_rng(seed)
    samples = (0.3 * rng.standard_normal((int(seconds * RATE), 2))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, RATE, subtype="FLOAT")
    return samples


def test_kaldi_utterances_are_read_from_their_recordings_on_channel_0(tmp_path):
    part = _kaldi_recipe(
        tmp_path,
        "rec1 audio/rec1.wav\n"
        "rec2 sh -c 'echo run >> runs.txt; cat audio/rec2.wav' |\n"
        "rec3 sh -c 'echo broken >&2; exit 3' |\n",
        "u1 rec1 0.5 1.0\n"
        "u2 rec1 1.0 -1\n"
        "u3 rec2 0 0.25\n"
        "u4 rec2 0.25 2.3\n"  # ends 0.3 s past the 2 s recording: shortened to it, as in Kaldi
        "u5 rec2 1.0 2.6\n"  # 0.6 s past: more than MAX_OVERSHOOT_S
        "u6 rec3 0 1\n",
    )
    root = tmp_path / "recipe"
    rec1 = _stereo(root / "audio" / "rec1.wav", 1.5, seed=1)
    rec2 = _stereo(root / "audio" / "rec2.wav", 2.0, seed=2)
    reader = InputReader(RATE)
    u1, u2, u3, u4, u5, u6 = expand_inputs([part])
    np.testing.assert_array_equal(reader.read(u1), rec1[8000:16000, 0])
    np.testing.assert_array_equal(reader.read(u2), rec1[16000:, 0])
    np.testing.assert_array_equal(reader.read(u3), rec2[:4000, 0])
    np.testing.assert_array_equal(reader.read(u4), rec2[4000:, 0])
    # the command ran once for both segments of its recording, in the recipe's root
    assert (root / "runs.txt").read_text().split() == ["run"]
    with pytest.raises(ValueError, match=r"segment u5 \(1-2\.6 s\) lies outside recording rec2"):
        reader.read(u5)
    with pytest.raises(ValueError) as caught:
        reader.read(u6)
    assert str(caught.value) == (
        f"{part / 'wav.scp'}: recording rec3: command exited with status 3: broken"
    )


def test_a_dash_is_standard_input_once(tmp_path):
    a = _touch(tmp_path / "a.wav")
    assert expand_inputs(["-", a]) == [
        AudioInput("-", Path("<stdin>"), stdin=True),
        AudioInput(str(a), a),
    ]
    assert expand_inputs(["./-"]) == [AudioInput("./-", Path("./-"))]  # a file named "-"
    with pytest.raises(ValueError, match=r"'-' \(standard input\) can be given once"):
        expand_inputs(["-", a, "-"])


def test_ctm_lines_of_a_kaldi_utterance_are_in_its_recording_time():
    words = [WordTiming("HELLO", 0.2, 0.3, 0.9), WordTiming("THERE", 0.6, 0.4, 0.5)]
    source = RecordingSpan("rec1", None, Path("."), 12.5, 14.0, "talk1", "1")
    utterance = Transcription(Path("a.wav"), "HELLO THERE", 1.5, id="u1", words=words, span=source)
    assert utterance.ctm_lines() == [
        "talk1 1 12.70 0.30 HELLO 0.900",
        "talk1 1 13.10 0.40 THERE 0.500",
    ]
    plain = Transcription(Path("my file.wav"), "HELLO THERE", 1.5, words=words)
    assert plain.ctm_lines() == [
        "my_file.wav A 0.20 0.30 HELLO 0.900",
        "my_file.wav A 0.60 0.40 THERE 0.500",
    ]


def test_a_nemo_manifest_gives_its_lines_as_spans(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    talk = _stereo(tmp_path / "audio" / "talk.wav", 2.0, seed=3)
    _stereo(tmp_path / "audio" / "short.wav", 0.5, seed=4)
    manifest = tmp_path / "lists" / "test.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(  # relative to the current directory (not beside the manifest); no text
        '{"audio_filepath": "audio/talk.wav", "offset": 0.5, "duration": 1.0}\n'
        '{"audio_filepath": "audio/talk.wav", "offset": 1.5}\n'
        f'{{"audio_filepath": "{tmp_path}/audio/short.wav", "duration": 0.5, "text": "x"}}\n'
    )
    inputs = expand_inputs([str(manifest)])
    assert [(i.id, i.path, i.span.start, i.span.end) for i in inputs] == [
        ("talk-0000050-0000150", tmp_path / "audio" / "talk.wav", 0.5, 1.5),
        ("talk-0000150-end", tmp_path / "audio" / "talk.wav", 1.5, -1),
        ("short", tmp_path / "audio" / "short.wav", 0.0, 0.5),
    ]
    reader = InputReader(RATE)
    np.testing.assert_array_equal(reader.read(inputs[0]), talk[8000:24000, 0])
    np.testing.assert_array_equal(reader.read(inputs[1]), talk[24000:, 0])
    manifest.write_text('{"audio_filepath": "audio/talk.wav", "offset": "soon"}\n')
    with pytest.raises(ValueError, match=r"test\.jsonl:1: 'offset' must be a number of seconds"):
        expand_inputs([str(manifest)])
