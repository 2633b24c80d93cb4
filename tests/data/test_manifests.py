from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse.utils import fastcopy

from dmao.data.features import FRAME_SHIFT_S, NUM_MEL_BINS, fbank_extractor
from dmao.data.manifests import cut_transcript, cuts_path, load_cuts, prepare_manifests
from dmao.data.text import normalize_transcript


def test_cuts_match_the_corpus(tiny_corpus, tiny_cuts) -> None:
    assert set(tiny_cuts) == set(tiny_corpus.parts)
    for part, cuts in tiny_cuts.items():
        written = tiny_corpus.transcripts[part]
        ids = list(cuts.ids)
        # One cut per utterance, named by the utterance id, sorted.
        assert ids == sorted(written)
        for cut in cuts:
            assert len(cut.supervisions) == 1
            sup = cut.supervisions[0]
            assert sup.text == normalize_transcript(written[cut.id])
            assert sup.custom["original_text"] == written[cut.id]
            assert sup.speaker == cut.id.split("-")[0]
            assert cut.sampling_rate == 16000
            assert cut.duration == pytest.approx(sup.duration)


def test_transcripts_are_normalised_through_the_real_recipe(tiny_corpus, tiny_cuts) -> None:
    messy = tiny_cuts["train"][tiny_corpus.messy_id]
    assert messy.supervisions[0].text == "THE WELL KNOWN MILL DON'T WALK"
    assert cut_transcript(messy) == "THE WELL KNOWN MILL DON'T WALK"
    assert cut_transcript(tiny_cuts["train"][tiny_corpus.empty_id]) == ""


def test_features_are_cached_80_dim_fbank(tiny_cuts) -> None:
    for cut in tiny_cuts["dev"]:
        assert cut.has_features
        feats = cut.load_features()
        assert feats.shape == (cut.num_frames, NUM_MEL_BINS)
        assert cut.num_frames == round(cut.duration / FRAME_SHIFT_S)
        assert np.isfinite(feats).all()
        # The cache is lilcom-compressed: close to, not equal to, a fresh extraction.
        fresh = fbank_extractor(16000).extract(cut.load_audio()[0], 16000)
        np.testing.assert_allclose(feats, fresh, atol=0.02)


def test_load_cuts_reads_what_prepare_wrote(tiny_corpus, tmp_path) -> None:
    out_dir = tmp_path / "m"
    cuts = prepare_manifests(tiny_corpus.root, out_dir, ["test"], num_jobs=1)["test"]
    assert cuts_path(out_dir, "test").is_file()
    for lazy in (False, True):
        loaded = load_cuts(out_dir, "test", lazy=lazy)
        assert loaded.is_lazy == lazy
        assert list(loaded.ids) == list(cuts.ids)
        assert [c.supervisions[0].text for c in loaded] == [c.supervisions[0].text for c in cuts]
        np.testing.assert_array_equal(loaded[0].load_features(), cuts[0].load_features())


def test_prepare_is_idempotent_and_adds_features_later(tiny_corpus, tmp_path) -> None:
    out_dir = tmp_path / "m"
    plain = prepare_manifests(tiny_corpus.root, out_dir, ["dev"], compute_features=False)["dev"]
    assert not any(cut.has_features for cut in plain)
    assert not list(out_dir.glob("feats_*"))

    # Same call again: the cached file is loaded, not rewritten.
    mtime = cuts_path(out_dir, "dev").stat().st_mtime_ns
    again = prepare_manifests(tiny_corpus.root, out_dir, ["dev"], compute_features=False)["dev"]
    assert cuts_path(out_dir, "dev").stat().st_mtime_ns == mtime
    assert list(again.ids) == list(plain.ids)

    # Asking for features on the cached, featureless cuts computes and stores them.
    featured = prepare_manifests(tiny_corpus.root, out_dir, ["dev"], num_jobs=1)["dev"]
    assert all(cut.has_features for cut in featured)
    assert all(cut.has_features for cut in load_cuts(out_dir, "dev"))
    assert list(featured.ids) == list(plain.ids)

    # The corpus is not read again once cached: it may even be gone.
    moved = tmp_path / "moved"
    shutil.copytree(tiny_corpus.root, moved)
    reloaded = prepare_manifests(moved / "missing", out_dir, ["dev"])["dev"]
    assert list(reloaded.ids) == list(plain.ids)


def test_parallel_feature_extraction_matches_serial(tiny_corpus, tiny_cuts, tmp_path) -> None:
    parallel = prepare_manifests(tiny_corpus.root, tmp_path / "m", ["dev"], num_jobs=2)["dev"]
    assert list(parallel.ids) == list(tiny_cuts["dev"].ids)
    for a, b in zip(parallel, tiny_cuts["dev"], strict=True):
        np.testing.assert_array_equal(a.load_features(), b.load_features())


def test_audio_at_another_rate_is_resampled(tiny_corpus, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root / "test", corpus / "test")
    for flac in (corpus / "test").rglob("*.flac"):
        audio, rate = sf.read(flac, dtype="float32")
        sf.write(flac, audio[::2], rate // 2, subtype="PCM_16")  # crude 8 kHz copy
    cuts = prepare_manifests(corpus, tmp_path / "m", ["test"], num_jobs=1)["test"]
    for cut in cuts:
        assert cut.sampling_rate == 16000
        assert cut.load_audio().shape[1] == round(cut.duration * 16000)
        assert cut.load_features().shape == (round(cut.duration / FRAME_SHIFT_S), NUM_MEL_BINS)


def test_missing_corpus_and_parts_raise_clear_errors(tiny_corpus, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*\.trans\.txt"):
        prepare_manifests(tmp_path / "nowhere", tmp_path / "m", ["train"])
    with pytest.raises(FileNotFoundError, match=r"'train-clean-100'.*\['dev', 'test', 'train'\]"):
        prepare_manifests(tiny_corpus.root, tmp_path / "m", ["train-clean-100"])
    with pytest.raises(FileNotFoundError, match=r"no cuts for part 'dev'.*prepare_manifests"):
        load_cuts(tmp_path / "m", "dev")
    with pytest.raises(TypeError, match="sequence of part names"):
        prepare_manifests(tiny_corpus.root, tmp_path / "m", "dev")


def test_malformed_corpus_parts_raise_clear_errors(tiny_corpus, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root / "test", corpus / "test")
    (corpus / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no \*\.trans\.txt"):
        prepare_manifests(corpus, tmp_path / "m", ["empty"])

    # An utterance id without a transcript would crash lhotse's recipe inside a thread pool.
    trans = next((corpus / "test").rglob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join([*lines, lines[0].split()[0]]) + "\n")
    with pytest.raises(ValueError, match=rf"{trans.name}:{len(lines) + 1}: expected"):
        prepare_manifests(corpus, tmp_path / "m", ["test"])


def test_missing_audio_is_reported_not_dropped(tiny_corpus, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root / "test", corpus / "test")
    for flac in (corpus / "test").rglob("*.flac"):
        flac.unlink()
    with pytest.raises(
        ValueError,
        match=r"test: 6 of 6 utterances(.|\n)*test 61-70968-0000: missing_audio: .*0000\.flac",
    ):
        prepare_manifests(corpus, tmp_path / "m", ["test"])


# ---------------------------------------------------------------------------------------------
# Feature parity. lhotse's Fbank is a port of Kaldi's compute-fbank (its mel banks are copied from
# torchaudio.compliance.kaldi, the framing follows Kaldi's snip_edges=false), so it is meant to
# match Kaldi. torchaudio is not a dependency of this project (and is not installed here), so the
# reference is Kaldi's algorithm written out in NumPy below, from Kaldi's feature-window.cc and
# mel-computations.cc; the torchaudio comparison runs only where torchaudio happens to exist.


def _kaldi_fbank_reference(
    wave: np.ndarray,
    sampling_rate: int = 16000,
    num_bins: int = 80,
    low_freq: float = 60.0,
    high_freq: float = 7600.0,
    preemph: float = 0.97,
) -> np.ndarray:
    frame_len = int(0.025 * sampling_rate)
    shift = int(0.010 * sampling_rate)
    fft_len = 1 << (frame_len - 1).bit_length()
    n = len(wave)
    wave = wave.astype(np.float64)
    # snip_edges=false: frame i is centred on sample i*shift + shift/2; the signal is mirrored at
    # the ends (Kaldi's ExtractWindow: s < 0 -> -s-1, s >= n -> 2n-1-s).
    num_frames = (n + shift // 2) // shift
    idx = np.arange(num_frames)[:, None] * shift + shift // 2 - frame_len // 2
    idx = idx + np.arange(frame_len)[None, :]
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
    frames = wave[idx]
    frames = frames - frames.mean(axis=1, keepdims=True)
    emphasised = frames.copy()
    emphasised[:, 1:] = frames[:, 1:] - preemph * frames[:, :-1]
    emphasised[:, 0] = frames[:, 0] - preemph * frames[:, 0]
    povey = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_len) / (frame_len - 1))) ** 0.85
    power = np.abs(np.fft.rfft(emphasised * povey, n=fft_len)) ** 2  # (frames, fft_len/2 + 1)

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(low_freq), mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bin_mel = mel(np.arange(fft_len // 2) * sampling_rate / fft_len)
    banks = np.zeros((num_bins, fft_len // 2 + 1))
    for b in range(num_bins):
        left, centre, right = (mel_low + k * delta for k in (b, b + 1, b + 2))
        up = (bin_mel - left) / (centre - left)
        down = (right - bin_mel) / (right - centre)
        banks[b, : fft_len // 2] = np.maximum(0.0, np.minimum(up, down))
    energies = power @ banks.T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps))


def test_fbank_shape_and_frame_count(tiny_cuts) -> None:
    extractor = fbank_extractor(16000)
    for cut in list(tiny_cuts["train"])[:5]:
        audio = cut.load_audio()[0]
        feats = extractor.extract(audio, 16000)
        assert feats.dtype == np.float32
        assert feats.shape == (round(len(audio) / 160), NUM_MEL_BINS)
        assert np.isfinite(feats).all()
    assert extractor.frame_shift == FRAME_SHIFT_S
    assert extractor.feature_dim(16000) == NUM_MEL_BINS


def test_fbank_matches_kaldi_reference(tiny_cuts) -> None:
    extractor = fbank_extractor(16000)
    for cut in list(tiny_cuts["test"])[:3]:
        audio = cut.load_audio()[0]
        ours = extractor.extract(audio, 16000)
        reference = _kaldi_fbank_reference(audio)
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)


def test_fbank_matches_torchaudio_kaldi_if_available(tiny_cuts) -> None:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    audio = next(iter(tiny_cuts["test"])).load_audio()
    ours = fbank_extractor(16000).extract(audio[0], 16000)
    theirs = kaldi.fbank(
        torch.from_numpy(audio),
        num_mel_bins=80,
        frame_length=25.0,
        frame_shift=10.0,
        low_freq=60.0,
        high_freq=-400.0,
        dither=0.0,
        snip_edges=False,
        sample_frequency=16000,
    ).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-3, rtol=1e-4)


def test_fbank_handles_8khz() -> None:
    # high_freq is an offset from Nyquist, so the same settings are valid at 8 kHz (3600 Hz).
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    feats = fbank_extractor(8000).extract(audio, 8000)
    assert feats.shape == (100, NUM_MEL_BINS)
    assert np.isfinite(feats).all()


def test_cut_transcript_joins_and_normalises_supervisions(tiny_cuts) -> None:
    cut = next(iter(tiny_cuts["test"]))
    first = cut.supervisions[0]
    texts = ["hello,", "...", "world-wide"]
    three = fastcopy(cut, supervisions=[fastcopy(first, text=t) for t in texts])
    assert cut_transcript(three) == "HELLO WORLD WIDE"
