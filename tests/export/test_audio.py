"""load_audio: any format soundfile reads, headerless PCM with a stated format, any channel count
and rate → mono at the model's rate; one-line errors that name the file for everything else."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from lhotse.audio import backend as lhotse_backend

from dmao.export import RawFormat, load_audio

RATE = 16000


def _tone(rate: int, seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_mono_at_the_model_rate_is_read_unchanged(tmp_path):
    x = _tone(RATE)
    sf.write(tmp_path / "a.flac", x, RATE, subtype="PCM_16")
    expected, _ = sf.read(tmp_path / "a.flac", dtype="float32")
    got = load_audio(tmp_path / "a.flac", RATE)
    assert got.dtype == np.float32 and got.shape == (RATE,)
    assert np.array_equal(got, expected)


def test_channels_are_averaged(tmp_path):
    x = _tone(RATE)
    noise = 0.1 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    sf.write(tmp_path / "s.wav", np.stack([x + noise, x - noise], 1), RATE, subtype="FLOAT")
    assert np.allclose(load_audio(tmp_path / "s.wav", RATE), x, atol=1e-6)


@pytest.mark.parametrize(
    ("rate", "suffix", "kwargs"),
    [
        (48000, ".flac", {"subtype": "PCM_24"}),
        (44100, ".wav", {"subtype": "PCM_16"}),
        (8000, ".ogg", {}),
        (22050, ".mp3", {}),
        (16000, ".sph", {"format": "NIST", "subtype": "PCM_16"}),
        (8000, ".sph", {"format": "NIST", "subtype": "ULAW"}),
    ],
)
def test_formats_and_rates(tmp_path, rate, suffix, kwargs):
    path = tmp_path / f"a{suffix}"
    sf.write(path, np.stack([_tone(rate)] * 2, 1), rate, **kwargs)
    got = load_audio(path, RATE)
    # One second of audio is one second at the new rate (mp3 encoders add a few ms of padding).
    assert abs(len(got) - RATE) <= (0.06 * RATE if suffix == ".mp3" else 1)
    assert abs(_dominant_hz(got, RATE) - 440.0) <= 2.0
    assert 0.3 < np.abs(got).max() < 0.7


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav", RATE)
    (tmp_path / "notes.wav").write_text("this is text, not audio\n")
    with pytest.raises(ValueError, match=r"notes\.wav: not readable audio"):
        load_audio(tmp_path / "notes.wav", RATE)
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.flac: empty file \(0 bytes\); expected audio"):
        load_audio(tmp_path / "empty.flac", RATE)
    with pytest.raises(ValueError, match="a folder; expected an audio file"):
        load_audio(tmp_path, RATE)
    (tmp_path / "bad.sph").write_bytes(b"NIST_1A\n   1024\nnonsense")
    with pytest.raises(ValueError, match=r"bad\.sph: not readable SPHERE audio"):
        load_audio(tmp_path / "bad.sph", RATE)
    sf.write(tmp_path / "silent.wav", np.zeros((0, 1), np.float32), RATE)
    with pytest.raises(ValueError, match="no audio samples"):
        load_audio(tmp_path / "silent.wav", RATE)


@pytest.mark.parametrize(
    ("sample_format", "dtype", "channels"),
    [("s16le", "<i2", 1), ("s16be", ">i2", 2), ("f32le", "<f4", 2), ("s32be", ">i4", 1)],
)
def test_headerless_pcm_with_its_format(tmp_path, sample_format, dtype, channels):
    x = _tone(8000)
    scale = {"<i2": 32767, ">i2": 32767, "<f4": 1.0, ">i4": 2**31 - 1}[dtype]
    frames = np.stack([x] * channels, axis=1)  # (N, C): interleaved on disk
    (tmp_path / "a.pcm").write_bytes((frames * scale).astype(dtype).tobytes())
    got = load_audio(tmp_path / "a.pcm", RATE, raw=RawFormat(sample_format, 8000, channels))
    assert abs(len(got) - RATE) <= 1  # 1 s at 8 kHz → 1 s at 16 kHz
    assert abs(_dominant_hz(got, RATE) - 440.0) <= 2.0
    assert 0.45 < np.abs(got).max() < 0.55


def test_headerless_pcm_equals_the_same_samples_in_a_wav(tmp_path):
    x = (_tone(RATE) * 32767).astype(np.int16)
    sf.write(tmp_path / "a.wav", x, RATE, subtype="PCM_16")
    x.astype("<i2").tofile(tmp_path / "a.raw")
    raw = RawFormat("s16le", RATE)
    assert np.array_equal(
        load_audio(tmp_path / "a.raw", RATE, raw=raw), load_audio(tmp_path / "a.wav", RATE)
    )
    # The format applies to .raw/.pcm only: a WAV still reads its own header.
    assert np.array_equal(
        load_audio(tmp_path / "a.wav", RATE, raw=raw), load_audio(tmp_path / "a.wav", RATE)
    )


def test_headerless_pcm_errors(tmp_path):
    path = tmp_path / "a.RAW"
    np.zeros(101, "<i2").tofile(path)
    with pytest.raises(ValueError) as err:
        load_audio(path, RATE)
    message = str(err.value)
    assert message.startswith(f"{path}: headerless PCM")
    assert "--raw-format s16le --raw-sample-rate 16000" in message and "\n" not in message
    # 202 bytes are not whole 2-channel 16-bit frames (4 bytes): the stated format is wrong.
    with pytest.raises(ValueError, match=r"202 bytes is not a whole number of 4-byte frames"):
        load_audio(path, RATE, raw=RawFormat("s16le", RATE, channels=2))
    with pytest.raises(ValueError, match="raw sample format must be one of"):
        RawFormat("pcm16", RATE)
    with pytest.raises(ValueError, match="raw sample rate"):
        RawFormat("s16le", 0)


def test_unreadable_files_give_one_line_and_no_log_noise(tmp_path, caplog):
    """libsndfile refuses them, lhotse's fallback (audioread) too; lhotse logs "Using audioread"
    on the root logger and its own message spans lines ending in "Details:" - neither may show."""
    x = (_tone(RATE) * 32767).astype(np.int16)
    sf.write(tmp_path / "good.flac", x, RATE, subtype="PCM_16")
    data = (tmp_path / "good.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(data[: len(data) // 2])
    sf.write(tmp_path / "good.wav", x, RATE, subtype="PCM_16")
    (tmp_path / "header_only.wav").write_bytes((tmp_path / "good.wav").read_bytes()[:30])
    (tmp_path / "text.wav").write_text("this is text, not audio\n")
    caplog.set_level(logging.INFO)
    # lhotse logs its audioread line once per process (a cached function): make it due again.
    audioread_backends = getattr(lhotse_backend, "_available_audioread_backends", None)
    if audioread_backends is not None:
        audioread_backends.cache_clear()
    for name in ("truncated.flac", "header_only.wav", "text.wav"):
        with pytest.raises(ValueError) as err:
            load_audio(tmp_path / name, RATE)
        message = str(err.value)
        assert message.startswith(f"{tmp_path / name}: not readable audio ("), message
        assert "\n" not in message and "Details" not in message, message
        assert "expected a format libsndfile reads" in message
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_non_finite_samples_are_refused(tmp_path):
    x = _tone(RATE)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav: holds NaN or infinite samples"):
        load_audio(tmp_path / "nan.wav", RATE)
