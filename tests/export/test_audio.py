"""load_audio: any format soundfile reads, any channel count and rate → mono at the model's rate;
clear errors for missing and non-audio files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dmao.export import load_audio

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
    with pytest.raises(ValueError, match=r"empty\.flac: not readable audio"):
        load_audio(tmp_path / "empty.flac", RATE)
    with pytest.raises(ValueError, match="not a file"):
        load_audio(tmp_path, RATE)
    (tmp_path / "bad.sph").write_bytes(b"NIST_1A\n   1024\nnonsense")
    with pytest.raises(ValueError, match=r"bad\.sph: not readable SPHERE audio"):
        load_audio(tmp_path / "bad.sph", RATE)
    sf.write(tmp_path / "silent.wav", np.zeros((0, 1), np.float32), RATE)
    with pytest.raises(ValueError, match="no audio samples"):
        load_audio(tmp_path / "silent.wav", RATE)
