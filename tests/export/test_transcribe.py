"""Transcribing audio files with an export: the same features, log-probs and text as ``dmao
decode``; the ONNX backend gives PyTorch's results; a 48 kHz stereo copy of an utterance gives the
original's features up to the resampler; files batched through the model get their own results;
any failure of one file (unreadable, too short, an error in the model) is one line for that
file, and the rest of the batch is transcribed.

Why some comparisons carry a tolerance: ``dmao decode`` reads the fbank cached at data
preparation, which lhotse stores lilcom-compressed (values rounded to 1/32, so off by at most
1/64), while ``transcribe`` computes the fbank exactly from the audio. The tiny test model has
seen 60 steps of training and has near-ties between labels on some frames, so a 1/64 change of
the features can change a letter (measured: one letter of one of the six test utterances). The
text is therefore compared exactly where the inputs are identical (the cached features), and
end to end from the audio files with a character error rate bound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from dmao.data.manifests import load_cuts
from dmao.decoding.decode_run import decode_split
from dmao.evaluation.wer import score_corpus
from dmao.export import (
    Failure,
    RawFormat,
    Transcriber,
    Transcription,
    expand_inputs,
    load_audio,
    load_exported,
)
from dmao.export.transcribe import DEFAULT_BATCH_SECONDS

RATE = 16000
# lhotse's LilcomChunkyWriter rounds the cached log-mel values to multiples of 2**-5.
_LILCOM_MAX_ERROR = 2.0**-6 + 1e-6
# End-to-end text from audio vs text from cached features: at most this character error rate
# (measured 0-2 % on the tiny model; a wrong feature pipeline gives > 50 %).
_MAX_CER = 0.1


@pytest.fixture(scope="module")
def test_cuts(tiny_dmao_run):
    """The test utterances with their audio file paths, shortest first."""
    cuts = load_cuts(tiny_dmao_run.parent / "manifests", "test").sort_by_duration()
    return [(cut, Path(cut.recording.sources[0].source)) for cut in cuts]


def _decode_hypotheses(run: Path, method: str) -> dict[str, str]:
    """``{utterance id: text}`` from ``dmao decode``'s hypotheses file."""
    result = decode_split(run, "test", method=method, beam_size=4, progress_bar=False)
    rows = result.hypotheses_path.read_text(encoding="utf-8").splitlines()[1:]
    return {r.split("\t")[0]: r.split("\t")[4] for r in rows if not r.startswith("#")}


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_transcribe_matches_decode(tiny_dmao_run, tiny_export, test_cuts, method):
    decoded = _decode_hypotheses(tiny_dmao_run, method)
    assert sum(len(text) for text in decoded.values()) > 10  # the model does emit text
    transcriber = Transcriber(load_exported(tiny_export), method=method, beam_size=4)
    from_files = []
    for cut, path in test_cuts:
        cached = torch.from_numpy(cut.load_features())
        exact = transcriber.features(load_audio(path, RATE))
        assert exact.shape == cached.shape  # same fbank settings: same frame count
        assert float((exact - cached).abs().max()) <= _LILCOM_MAX_ERROR, cut.id
        # Same features in, same text out: model, search and tokenizer match dmao decode.
        assert transcriber.decode(transcriber.log_probs(cached)) == decoded[cut.id], cut.id
        result = transcriber.transcribe_file(path)
        assert result.audio_seconds == pytest.approx(cut.duration, abs=1e-3)
        from_files.append(result.text)
    score = score_corpus([decoded[cut.id] for cut, _ in test_cuts], from_files)
    assert score.cer <= _MAX_CER, list(zip(decoded.values(), from_files, strict=True))


def test_onnx_backend_equals_torch_backend(tiny_export, test_cuts):
    exported = load_exported(tiny_export)
    torch_backend = Transcriber(exported, backend="torch")
    onnx_backend = Transcriber(exported, backend="onnx", num_threads=1)
    for _, path in test_cuts:
        features = torch_backend.features(load_audio(path, RATE))
        expected = torch_backend.log_probs(features)
        got = onnx_backend.log_probs(features)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4, rtol=0)
        assert onnx_backend.decode(got) == torch_backend.decode(expected)


def test_48khz_stereo_copy_transcribes_like_the_original(tiny_export, test_cuts, tmp_path):
    """Each test utterance upsampled to 48 kHz, as two channels whose mean is the original.

    Up- and downsampling (scipy's polyphase filter, as lhotse uses without torchaudio) keeps the
    signal below ~7 kHz and attenuates the band up to 8 kHz: the 4 top mel bins (7.0-7.6 kHz)
    change by up to ~0.8 in log-energy, the other 76 by ~0.01 on average. The log-probs then
    move by up to ~0.2, which can flip near-tied letters of the tiny model; hence the
    tolerances, and the text compared by character error rate.
    """
    transcriber = Transcriber(load_exported(tiny_export))
    rng = np.random.default_rng(0)
    originals, copies = [], []
    for cut, path in test_cuts:
        x = load_audio(path, RATE)
        up = resample_poly(x, 3, 1).astype(np.float32)
        noise = 0.05 * rng.standard_normal(len(up)).astype(np.float32)
        stereo = tmp_path / f"{cut.id}.flac"
        sf.write(stereo, np.stack([up + noise, up - noise], axis=1), 48000, subtype="PCM_24")
        assert sf.info(stereo).channels == 2 and sf.info(stereo).samplerate == 48000

        y = load_audio(stereo, RATE)
        assert y.shape == x.shape
        assert float(np.abs(y - x).max()) < 0.02
        f_x, f_y = transcriber.features(x), transcriber.features(y)
        assert f_y.shape == f_x.shape
        assert float((f_y - f_x)[:, :76].abs().max()) < 0.3
        assert float((f_y - f_x).abs().mean()) < 0.03
        lp_x, lp_y = transcriber.log_probs(f_x), transcriber.log_probs(f_y)
        assert float((lp_y - lp_x).abs().max()) < 0.5
        originals.append(transcriber.transcribe_file(path).text)
        copies.append(transcriber.transcribe_file(stereo).text)
    assert score_corpus(originals, copies).cer <= _MAX_CER, (originals, copies)


def _mixed_inputs(good: Path, folder: Path) -> list[tuple[Path, str | None]]:
    """Real good and bad files next to each other: ``(path, expected message after "PATH: ")``,
    None for a file that must be transcribed."""
    folder.mkdir()
    samples, rate = sf.read(good, dtype="int16")
    raw = folder / "good.raw"
    samples.astype("<i2").tofile(raw)  # the same samples as headerless 16-bit PCM
    (folder / "empty.wav").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 2])
    (folder / "notes.wav").write_text("not audio, a text file renamed .wav\n")
    (folder / "a_folder").mkdir()
    sf.write(folder / "short.wav", np.zeros(320, np.float32), rate)  # 0.02 s: 2 frames < 4
    return [
        (good, None),
        (folder / "gone.wav", "no such audio file"),
        (folder / "empty.wav", "empty file (0 bytes); expected audio"),
        (folder / "truncated.flac", "not readable audio (flac decoder lost sync); expected"),
        (folder / "notes.wav", "not readable audio (Format not recognised); expected"),
        (raw, None),
        (folder / "a_folder", "a folder; expected an audio file"),
        (folder / "short.wav", "audio too short: 2 feature frames, the model needs at least 4"),
        (good, None),
    ]


@pytest.mark.parametrize("batch_seconds", [0.0, DEFAULT_BATCH_SECONDS])
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_batch_survives_bad_files(tiny_export, test_cuts, tmp_path, backend, batch_seconds):
    exported = load_exported(tiny_export)
    raw = RawFormat("s16le", RATE)
    transcriber = Transcriber(
        exported, backend=backend, num_threads=1, raw=raw, batch_seconds=batch_seconds
    )
    cases = _mixed_inputs(test_cuts[-1][1], tmp_path / "mixed")
    results = list(transcriber.transcribe_files([path for path, _ in cases]))
    assert len(results) == len(cases)
    for (path, expected), result in zip(cases, results, strict=True):
        assert result.path == path and result.id == str(path)
        if expected is None:
            assert isinstance(result, Transcription), getattr(result, "message", None)
            assert result.processing_seconds > 0 and result.real_time_factor > 0
        else:
            assert isinstance(result, Failure), path
            assert result.message.startswith(f"{path}: {expected}"), result.message
            assert "\n" not in result.message and "Details" not in result.message
    texts = {result.text for result in results if isinstance(result, Transcription)}
    assert len(texts) == 1 and texts != {""}  # the raw copy reads as the original

    # Without its format a headerless file fails alone, with a message naming the options.
    plain = Transcriber(exported, backend=backend, num_threads=1)
    good, raw_path = cases[0][0], cases[5][0]
    failure, again = plain.transcribe_files([raw_path, good])
    assert isinstance(failure, Failure) and isinstance(again, Transcription)
    assert failure.message.startswith(f"{raw_path}: headerless PCM")
    assert "--raw-format s16le --raw-sample-rate 16000" in failure.message


@pytest.mark.parametrize("batch_seconds", [0.0, DEFAULT_BATCH_SECONDS])
def test_an_error_inside_the_model_fails_that_file_only(
    tiny_export, test_cuts, monkeypatch, batch_seconds
):
    """Not only unreadable audio: whatever goes wrong for one file (here the acoustic model
    raising for the second file) is that file's failure, one line, and the batch goes on. A
    batched pass that fails (here: always, as out of memory would) is run again file by file,
    so the error lands on the file that causes it."""
    transcriber = Transcriber(load_exported(tiny_export), batch_seconds=batch_seconds)
    real_log_probs = transcriber.log_probs
    calls, batches = [], []

    def flaky(features):
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB")
        return real_log_probs(features)

    def batch_out_of_memory(features):
        batches.append(len(features))
        raise RuntimeError("CUDA out of memory.")

    monkeypatch.setattr(transcriber, "log_probs", flaky)
    monkeypatch.setattr(transcriber, "batch_log_probs", batch_out_of_memory)
    paths = [path for _, path in test_cuts[:3]]
    first, second, third = transcriber.transcribe_files(paths)
    assert batches == ([3] if batch_seconds else [])
    assert len(calls) == 3
    assert isinstance(first, Transcription) and isinstance(third, Transcription)
    assert isinstance(second, Failure) and isinstance(second.error, RuntimeError)
    assert second.message == (
        f"{paths[1]}: RuntimeError: CUDA out of memory.; Tried to allocate 2.00 GiB"
    )


def test_batched_files_get_their_own_results(tiny_export, test_cuts, monkeypatch):
    """Files padded into one acoustic-model pass get the log-probs they get alone (up to float
    rounding: other matrix shapes), whatever they are batched with; transcribe_files sorts the
    files it reads ahead by length, groups them within the padded-audio budget and returns
    their results in input order."""
    exported = load_exported(tiny_export)
    alone = Transcriber(exported, batch_seconds=0)
    paths = [path for _, path in test_cuts]  # shortest first
    features = [alone.features(load_audio(path, RATE)) for path in paths]
    expected = [alone.log_probs(f) for f in features]
    # Longest first: every shorter file is padded, the shortest the most.
    together = alone.batch_log_probs(features[::-1])[::-1]
    for got, want in zip(together, expected, strict=True):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4, rtol=0)
    texts = [alone.decode(lp) for lp in expected]
    assert [r.text for r in alone.transcribe_files(paths)] == texts

    # A budget of ~2.5 of the longest files: passes of two or three, and a file alone at the end.
    longest = max(f.shape[0] for f in features)
    budget_frames = 4 * (int(2.5 * longest) // 4)  # the budget is a multiple of 4 frames
    batched = Transcriber(exported, batch_seconds=budget_frames * exported.features.frame_shift_s)
    passes = []
    real_batch = batched.batch_log_probs

    def recorded(items):
        passes.append([item.shape[0] for item in items])
        return real_batch(items)

    monkeypatch.setattr(batched, "batch_log_probs", recorded)
    inputs = paths + paths[::-1]
    results = list(batched.transcribe_files(inputs))
    assert [r.path for r in results] == inputs
    assert [r.text for r in results] == texts + texts[::-1]
    assert passes and all(len(p) >= 2 for p in passes)
    assert all(len(p) * max(p) <= budget_frames for p in passes)
    # Any two files fit, so only the last group can be a single file (which runs alone).
    assert sum(len(p) for p in passes) in (len(inputs), len(inputs) - 1)
    lengths = [frames for p in passes for frames in p]
    assert lengths == sorted(lengths)  # read ahead and sorted, so that little is padded
    assert all(r.processing_seconds > 0 for r in results)


def test_bad_settings_are_refused(tiny_export, tmp_path):
    exported = load_exported(tiny_export)
    with pytest.raises(ValueError, match="backend"):
        Transcriber(exported, backend="tensorrt")
    with pytest.raises(ValueError, match="method"):
        Transcriber(exported, method="viterbi")
    exported.directory = tmp_path  # an export without model.onnx
    with pytest.raises(FileNotFoundError, match=r"no model\.onnx"):
        Transcriber(exported, backend="onnx")


def test_a_kaldi_data_directory_transcribes_like_its_files(tiny_export, test_cuts, tmp_path):
    """Two test utterances joined into one recording cut back by ``segments``, and a third
    behind a ``wav.scp`` command, give the texts of their own files (same samples in)."""
    (a, path_a), (b, path_b), (c, path_c) = test_cuts[:3]
    x_a, x_b = load_audio(path_a, RATE), load_audio(path_b, RATE)
    part = tmp_path / "data" / "test"
    part.mkdir(parents=True)
    sf.write(tmp_path / "joined.wav", np.concatenate([x_a, x_b]), RATE, subtype="FLOAT")
    (part / "wav.scp").write_text(f"joined joined.wav\nthird cat {path_c} |\n")
    boundary = len(x_a) / RATE
    (part / "segments").write_text(
        f"{a.id} joined 0 {boundary!r}\n{b.id} joined {boundary!r} -1\n{c.id} third 0 -1\n"
    )
    transcriber = Transcriber(load_exported(tiny_export), timestamps=True)
    results = list(transcriber.transcribe_files(expand_inputs([part])))
    assert all(isinstance(r, Transcription) for r in results), results
    assert [r.id for r in results] == [a.id, b.id, c.id]
    assert [r.audio_seconds for r in results] == pytest.approx(
        [a.duration, b.duration, c.duration], abs=1e-3
    )
    own = [transcriber.transcribe_file(p) for p in (path_a, path_b, path_c)]
    assert [r.text for r in results] == [r.text for r in own]
    assert sum(len(r.text) for r in own) > 10  # the model does emit text
    # CTM in the recording's time: b's words where they lie in the joined recording
    assert own[1].words, "the test needs words in b"
    shifted = [
        f"joined A {w.start_s + boundary:.2f} {w.duration_s:.2f} {w.word} {w.confidence:.3f}"
        for w in own[1].words
    ]
    assert results[1].ctm_lines() == shifted
    assert results[2].ctm_lines()[0].startswith("third A ")
