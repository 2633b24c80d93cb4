"""NIST SPHERE reading: parity with libsndfile where it reads the file, the variants it refuses,
partial reads, lhotse integration, and clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording

from dmao.data.sphere import (
    SphereFormatError,
    install_audio_backend,
    read_sphere,
    read_sphere_header,
    write_sphere,
)


def _signal(channels: int, num_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 8000
    tone = 0.4 * np.sin(2 * np.pi * 220 * t)
    return np.stack(
        [
            tone * (c + 1) / channels + 0.05 * rng.standard_normal(num_samples)
            for c in range(channels)
        ]
    ).clip(-1, 1)


@pytest.mark.parametrize(
    ("coding", "big_endian", "subtype"),
    [
        ("ulaw", False, "ULAW"),
        ("alaw", False, "ALAW"),
        ("pcm", False, "PCM_16"),
        ("pcm", True, "PCM_16"),
    ],
)
def test_reads_what_libsndfile_reads_bit_exactly(tmp_path, coding, big_endian, subtype):
    x = _signal(2, 8000)
    # Files written by dmao and by libsndfile, read by both.
    ours, theirs = tmp_path / "ours.sph", tmp_path / "theirs.sph"
    write_sphere(ours, x, 8000, coding=coding, big_endian=big_endian)
    sf.write(
        theirs, x.T, 8000, format="NIST", subtype=subtype, endian="BIG" if big_endian else "LITTLE"
    )
    for path in (ours, theirs):
        samples, rate = read_sphere(path)
        reference, ref_rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == ref_rate == 8000
        assert samples.shape == (2, 8000) and samples.dtype == np.float32
        np.testing.assert_array_equal(samples, reference.T)
    # G.711 keeps ~8 bits: the decoded signal is close to the original.
    tolerance = 3e-5 if coding == "pcm" else 0.03
    assert np.abs(read_sphere(ours)[0] - x).max() < tolerance


def test_reads_mulaw_variants_libsndfile_refuses(tmp_path):
    """8-bit files whose header gives a two-byte byte-order field, which libsndfile 1.2 rejects
    ("unsupported compression format"); and the 'mu-law' spelling of the coding."""
    x = _signal(2, 4000)
    reference = tmp_path / "ref.sph"
    write_sphere(reference, x, 8000, coding="ulaw")
    expected = read_sphere(reference)[0]
    payload = reference.read_bytes()[1024:]
    for variant in ("sample_byte_format -s2 01", "sample_byte_format -s2 10"):
        lines = [
            "NIST_1A",
            "   1024",
            "channel_count -i 2",
            "sample_count -i 4000",
            "sample_rate -i 8000",
            "sample_n_bytes -i 1",
        ]
        lines += ["sample_coding -s6 mu-law", variant]
        header = ("\n".join([*lines, "end_head"]) + "\n").encode()
        path = tmp_path / "variant.sph"
        path.write_bytes(header + b" " * (1024 - len(header)) + payload)
        with pytest.raises(RuntimeError):  # soundfile.LibsndfileError
            sf.read(path)
        np.testing.assert_array_equal(read_sphere(path)[0], expected)


def test_partial_read_is_the_slice_of_the_full_read(tmp_path):
    path = tmp_path / "a.sph"
    write_sphere(path, _signal(2, 16000), 8000, coding="ulaw")
    full, _ = read_sphere(path)
    part, _ = read_sphere(path, offset_s=0.5, duration_s=0.25)
    np.testing.assert_array_equal(part, full[:, 4000:6000])
    tail, _ = read_sphere(path, offset_s=1.9, duration_s=5.0)  # clipped at the end
    np.testing.assert_array_equal(tail, full[:, 15200:])


def test_lhotse_reads_sph_through_dmao_backend(tmp_path):
    install_audio_backend()
    path = tmp_path / "sw02001.sph"
    x = _signal(2, 12000)
    write_sphere(path, x, 8000, coding="ulaw")
    recording = Recording.from_file(path)
    assert (recording.sampling_rate, recording.num_channels, recording.num_samples) == (
        8000,
        2,
        12000,
    )
    audio = recording.load_audio(channels=1, offset=0.5, duration=0.5)
    np.testing.assert_array_equal(audio, read_sphere(path)[0][1:2, 4000:8000])


def test_errors_name_the_file_and_the_problem(tmp_path):
    good = tmp_path / "good.sph"
    write_sphere(good, _signal(1, 1000), 16000)
    truncated = tmp_path / "truncated.sph"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(SphereFormatError, match=r"truncated\.sph: truncated SPHERE file"):
        read_sphere_header(truncated)

    not_sphere = tmp_path / "wav.sph"
    sf.write(not_sphere, np.zeros(100), 16000, format="WAV")
    with pytest.raises(SphereFormatError, match=r"wav\.sph: not a NIST SPHERE file"):
        read_sphere(not_sphere)

    shortened = tmp_path / "shortened.sph"
    header = b"NIST_1A\n   1024\nchannel_count -i 2\nsample_count -i 10\nsample_rate -i 8000\n"
    header += b"sample_n_bytes -i 1\nsample_coding -s26 ulaw,embedded-shorten-v2.00\nend_head\n"
    shortened.write_bytes(header + b" " * (1024 - len(header)) + b"ajkg\x02")
    assert read_sphere_header(shortened).shorten
    if shutil.which("sph2pipe") is None:
        with pytest.raises(SphereFormatError, match=r"shortened\.sph: .*shorten-compressed"):
            read_sphere(shortened)

    odd = tmp_path / "odd.sph"
    header = b"NIST_1A\n   1024\nsample_count -i 10\nsample_rate -i 8000\n"
    header += b"sample_coding -s6 pculaw\nend_head\n"
    odd.write_bytes(header + b" " * (1024 - len(header)) + bytes(20))
    with pytest.raises(SphereFormatError, match="unsupported SPHERE sample_coding 'pculaw'"):
        read_sphere(odd)
