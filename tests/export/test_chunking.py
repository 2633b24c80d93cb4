"""Long recordings (``dmao.export.chunking``, ``Transcriber(long_file_seconds=...)``): the windows
cover every output frame once and in order, with the frame alignment of the 4x subsampling;
pauses split the search; files up to ``long_file_seconds`` are untouched; the CLI's defaults are
the library's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dmao.cli.main import build_parser
from dmao.export import Transcriber, load_audio, load_exported
from dmao.export import transcribe as transcribe_module
from dmao.export.chunking import chunk_windows, chunked_log_probs, pause_segments

RATE = 16000


def _pool4(features: torch.Tensor) -> torch.Tensor:
    """A stand-in for the model with the frontend's exact frame mapping: output frame j is the
    mean of input frames 4j..4j+3, ``(T, F)`` → ``(T // 4, F)``."""
    usable = features.shape[0] // 4 * 4
    return features[:usable].reshape(-1, 4, features.shape[1]).mean(dim=1)


@pytest.mark.parametrize("num_frames", [4, 99, 400, 401, 402, 403, 404, 1000, 1003, 4097])
@pytest.mark.parametrize(("chunk", "context"), [(8, 0), (100, 20), (200, 40), (400, 100)])
def test_windows_cover_every_output_frame_once_in_order(num_frames, chunk, context):
    windows = chunk_windows(num_frames, chunk, context)
    kept = []
    for w in windows:
        assert w.start % 4 == 0 and 0 <= w.start < w.end <= num_frames
        assert w.end - w.start >= 4  # every window is long enough for the model
        local = (w.end - w.start) // 4
        stop = local if w.keep_to is None else w.keep_to
        assert 0 <= w.keep_from < stop <= local
        kept += [w.start // 4 + k for k in range(w.keep_from, stop)]
    assert kept == list(range(num_frames // 4))
    # And with a function that has the frontend's frame mapping, the result is exact.
    features = torch.randn(num_frames, 3, generator=torch.Generator().manual_seed(num_frames))
    assert torch.equal(chunked_log_probs(_pool4, features, chunk, context), _pool4(features))


def test_bad_chunk_settings_are_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        chunk_windows(100, 10, 4)
    with pytest.raises(ValueError, match="multiples of 4"):
        chunk_windows(100, 0, 4)


def _frames(best: list[int], vocab: int = 5) -> torch.Tensor:
    """Log-probs ``(len(best), vocab)`` whose best label per frame is ``best``."""
    log_probs = torch.full((len(best), vocab), -5.0)
    log_probs[torch.arange(len(best)), torch.tensor(best)] = -0.01
    return log_probs


def test_pauses_cut_in_their_middle_but_not_at_the_edges():
    b = 0
    best = [b] * 5 + [3, 3, b, 4] + [b] * 6 + [3] + [b, b] + [4] + [b] * 7
    # blank runs: 0-4 (edge), 7 (short), 9-14 (6 frames: cut at 12), 16-17 (short), 19-25 (edge)
    assert pause_segments(_frames(best), b, 6) == [(0, 12), (12, 26)]
    assert pause_segments(_frames(best), b, 7) == [(0, 26)]
    assert pause_segments(_frames(best), b, 2) == [(0, 12), (12, 17), (17, 26)]
    with pytest.raises(ValueError, match="min_frames"):
        pause_segments(_frames(best), b, 0)


@pytest.fixture(scope="module")
def exported(tiny_export):
    return load_exported(tiny_export)


def test_a_pause_becomes_a_word_boundary_in_a_long_file_only(exported):
    ids = {s: i for i, s in enumerate(exported.tokenizer.symbols)}  # the tiny run: characters
    blank, a, b = exported.tokenizer.blank_id, ids["A"], ids["B"]
    # "A", a 0.4 s pause with no word boundary emitted (as after a sentence), "B".
    best = [a] + [blank] * 10 + [b]
    log_probs = _frames(best, exported.tokenizer.vocab_size)
    short = Transcriber(exported, long_file_seconds=30)
    long = Transcriber(exported, long_file_seconds=0.2, pause_seconds=0.24)
    assert short.decode(log_probs) == "AB"  # an utterance: decoded as `dmao decode` does
    assert long.decode(log_probs) == "A B"
    assert Transcriber(exported, long_file_seconds=0.2, pause_seconds=0).decode(log_probs) == "AB"
    text, words = long.word_times(log_probs)
    assert text == "A B" and [w.word for w in words] == ["A", "B"]
    assert words[0].start_s == 0.0 and words[1].start_s == pytest.approx(11 * 0.04)


def _long_audio(tiny_dmao_run) -> tuple[np.ndarray, int]:
    from dmao.data.manifests import load_cuts

    cuts = sorted(load_cuts(tiny_dmao_run.parent / "manifests", "test"), key=lambda c: c.id)
    samples = [load_audio(c.recording.sources[0].source, RATE) for c in cuts]
    return np.concatenate(samples), len(cuts)


def test_a_long_file_is_transcribed_in_windows_with_word_times(exported, tiny_dmao_run):
    samples, _ = _long_audio(tiny_dmao_run)
    seconds = len(samples) / RATE
    whole = Transcriber(exported, chunk_seconds=None)
    chunked = Transcriber(exported, long_file_seconds=2, chunk_seconds=1, context_seconds=0.5)
    features = whole.features(samples)
    assert chunked.is_long(features.shape[0] // 4) and not whole.is_long(features.shape[0] // 4)
    a, b = whole.log_probs(features), chunked.log_probs(features)
    assert a.shape == b.shape == (features.shape[0] // 4, exported.tokenizer.vocab_size)
    assert not torch.equal(a, b)  # the windows do not see the whole file ...
    agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    assert agree > 0.8, agree  # ... but nearly every frame keeps its best label
    text, words = chunked.word_times(b)
    assert text == chunked.decode(b) and " ".join(w.word for w in words) == text
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] < seconds


def test_files_up_to_the_long_file_length_are_untouched(exported, tiny_dmao_run):
    samples, _ = _long_audio(tiny_dmao_run)
    default = Transcriber(exported)
    features = default.features(samples)
    assert features.shape[0] / 100 < transcribe_module.DEFAULT_LONG_FILE_SECONDS
    never = Transcriber(exported, chunk_seconds=None)
    log_probs = default.log_probs(features)
    assert torch.equal(log_probs, never.log_probs(features))
    assert default.segments(log_probs) == [(0, log_probs.shape[0])]


def test_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["transcribe", "--model", "m", "a.wav"])
    assert args.long_file_seconds == transcribe_module.DEFAULT_LONG_FILE_SECONDS
    assert args.chunk_seconds == transcribe_module.DEFAULT_CHUNK_SECONDS
    assert args.context_seconds == transcribe_module.DEFAULT_CONTEXT_SECONDS
    assert math.isclose(args.pause_seconds, transcribe_module.DEFAULT_PAUSE_SECONDS)
    assert args.batch_seconds == transcribe_module.DEFAULT_BATCH_SECONDS


def test_the_cli_passes_the_long_file_settings(tiny_export, tiny_dmao_run, tmp_path, capsys):
    import soundfile as sf

    from dmao.cli.main import main

    samples, _ = _long_audio(tiny_dmao_run)
    path = tmp_path / "long.wav"
    sf.write(path, samples, RATE)
    exported = load_exported(tiny_export)
    chunked = Transcriber(exported, long_file_seconds=2, chunk_seconds=1, context_seconds=0.5)
    expected = chunked.decode(chunked.log_probs(chunked.features(load_audio(path, RATE))))
    args = ["transcribe", "--model", str(tiny_export), str(path)]
    options = ["--long-file-seconds", "2", "--chunk-seconds", "1", "--context-seconds", "0.5"]
    assert main([*args, *options]) == 0
    assert capsys.readouterr().out == f"{path}\t{expected}\n"
    assert main([*args, "--chunk-seconds", "0"]) == 0  # off: the whole file, one search
    whole = Transcriber(exported, chunk_seconds=None)
    text = whole.decode(whole.log_probs(whole.features(load_audio(path, RATE))))
    assert capsys.readouterr().out == f"{path}\t{text}\n"
    assert text != expected  # so the first call did use the options
