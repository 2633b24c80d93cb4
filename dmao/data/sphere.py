"""NIST SPHERE audio (``.sph``: TED-LIUM, Switchboard, Hub5'00) read in numpy, as a lhotse backend.

lhotse's default backend hands every ``.sph`` file to the ``sph2pipe`` program, which is not
installable here (no PyPI or Debian package). libsndfile reads most uncompressed SPHERE files,
2-channel 8 kHz mu-law included, but refuses 8-bit (mu-law) files whose header gives a two-byte
``sample_byte_format`` (``-s2 01`` or ``-s2 10``: "unsupported compression format", measured with
libsndfile 1.2.2), a spelling some releases use. Uncompressed SPHERE is simple —
a 1024-byte text header followed by interleaved samples — so dmao reads it itself:

- 16-bit PCM (``sample_coding pcm`` or absent) in either byte order (``sample_byte_format`` ``01``
  little-endian, ``10`` big-endian), mu-law (``ulaw``/``mu-law``) and A-law (``alaw``), 8 bits per
  sample, any number of interleaved channels;
- only the requested stretch is read from disk (``offset``/``duration``), which matters for
  talks and conversations of 10–20 minutes cut into short segments;
- samples are returned as float32 ``(channels, samples)`` scaled exactly as libsndfile scales
  them (``int16 / 32768``; mu-law/A-law through the G.711 tables), so features do not depend on
  which reader produced them (tested against libsndfile where it reads the file).

Shorten-compressed SPHERE (``sample_coding ...,embedded-shorten-...``, found in some LDC releases)
is not decoded here: when the ``sph2pipe`` program is on ``PATH`` it is used for those files,
otherwise reading fails with a message saying how to decompress them once.

:func:`install_audio_backend` makes this reader lhotse's backend for ``.sph`` files (everything
else keeps lhotse's default readers). It is called by the corpus preparation and the data pipeline,
and by the feature-extraction worker processes.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse.audio.backend import (
    AudioBackend,
    CompositeAudioBackend,
    LibsndfileCompatibleAudioInfo,
    Sph2pipeSubprocessBackend,
    get_current_audio_backend,
    get_default_audio_backend,
    read_sph,
    set_current_audio_backend,
)
from lhotse.utils import compute_num_samples

__all__ = [
    "DmaoAudioBackend",
    "SphereBackend",
    "SphereFormatError",
    "SphereHeader",
    "install_audio_backend",
    "read_sphere",
    "read_sphere_header",
    "shorten_error",
    "write_sphere",
]

log = logging.getLogger(__name__)

_MAGIC = b"NIST_1A"
_PCM_CODINGS = ("pcm",)
_MULAW_CODINGS = ("ulaw", "mu-law", "mulaw")
_ALAW_CODINGS = ("alaw", "a-law")


class SphereFormatError(ValueError):
    """A ``.sph`` file is not readable SPHERE audio; the message names the file and the reason."""


@dataclass(frozen=True)
class SphereHeader:
    """The fields of a SPHERE header that reading the samples needs."""

    path: Path
    header_bytes: int
    """Size of the text header; the samples start at this byte offset (1024 in LDC corpora)."""
    sample_rate: int
    channel_count: int
    sample_count: int
    """Samples per channel."""
    sample_n_bytes: int
    coding: str
    """``pcm``, ``ulaw`` or ``alaw`` (normalised spelling)."""
    big_endian: bool
    """Byte order of 2-byte PCM (``sample_byte_format 10``)."""
    shorten: bool
    """The samples are shorten-compressed (not decodable by :func:`read_sphere`)."""

    @property
    def duration_s(self) -> float:
        return self.sample_count / self.sample_rate


def read_sphere_header(path: Path | str) -> SphereHeader:
    """Parse the text header of a SPHERE file.

    Raises:
        SphereFormatError: not a SPHERE file, a required field is missing, an unsupported sample
            coding, or a file shorter than its header says (truncated).
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(1024)
        if not head.startswith(_MAGIC):
            raise SphereFormatError(
                f"{path}: not a NIST SPHERE file (starts with {head[:8]!r}, expected {_MAGIC!r})"
            )
        lines = head.split(b"\n")
        try:
            header_bytes = int(lines[1])
        except (IndexError, ValueError):
            raise SphereFormatError(f"{path}: second header line must be the header size") from None
        if header_bytes > len(head):
            head += f.read(header_bytes - len(head))
    fields: dict[str, str] = {}
    for raw in head[:header_bytes].split(b"\n")[2:]:
        line = raw.decode("latin-1").strip()
        if line == "end_head":
            break
        parts = line.split(maxsplit=2)
        if len(parts) == 3:  # "<name> -<type> <value>"
            fields[parts[0]] = parts[2].strip()
    else:
        raise SphereFormatError(f"{path}: SPHERE header has no end_head line")

    def integer(name: str, default: int | None = None) -> int:
        if name not in fields:
            if default is None:
                raise SphereFormatError(f"{path}: SPHERE header has no {name} field")
            return default
        try:
            return int(fields[name])
        except ValueError:
            raise SphereFormatError(
                f"{path}: SPHERE field {name} must be an integer, got {fields[name]!r}"
            ) from None

    coding_field = fields.get("sample_coding", "pcm").lower()
    codings = [c.strip() for c in coding_field.split(",")]
    shorten = any("shorten" in c for c in codings)
    base = codings[0]
    if base in _PCM_CODINGS or base.startswith("embedded-shorten"):
        coding = "pcm"
    elif base in _MULAW_CODINGS:
        coding = "ulaw"
    elif base in _ALAW_CODINGS:
        coding = "alaw"
    else:
        raise SphereFormatError(
            f"{path}: unsupported SPHERE sample_coding {coding_field!r} "
            "(readable: pcm, ulaw/mu-law, alaw)"
        )
    n_bytes = integer("sample_n_bytes", 1 if coding != "pcm" else 2)
    if (coding == "pcm" and n_bytes != 2) or (coding != "pcm" and n_bytes != 1):
        raise SphereFormatError(
            f"{path}: {coding} SPHERE with sample_n_bytes={n_bytes} is not supported "
            "(expected 2 for pcm, 1 for ulaw/alaw)"
        )
    header = SphereHeader(
        path=path,
        header_bytes=header_bytes,
        sample_rate=integer("sample_rate"),
        channel_count=integer("channel_count", 1),
        sample_count=integer("sample_count"),
        sample_n_bytes=n_bytes,
        coding=coding,
        big_endian=fields.get("sample_byte_format", "01") == "10",
        shorten=shorten,
    )
    if header.sample_rate <= 0 or header.channel_count <= 0 or header.sample_count < 0:
        raise SphereFormatError(
            f"{path}: invalid SPHERE header (sample_rate={header.sample_rate}, "
            f"channel_count={header.channel_count}, sample_count={header.sample_count})"
        )
    if not shorten:
        expected = header_bytes + header.sample_count * header.channel_count * n_bytes
        size = path.stat().st_size
        if size < expected:
            raise SphereFormatError(
                f"{path}: truncated SPHERE file: {size} bytes, the header promises {expected} "
                f"({header.sample_count} samples x {header.channel_count} channels x {n_bytes} "
                "bytes + header)"
            )
    return header


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte → linear value in int16 units (the table libsndfile uses), (256,)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float32)


def _alaw_table() -> np.ndarray:
    """G.711 A-law byte → linear value in int16 units, (256,)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (a & 0x70) >> 4
    value = (a & 0x0F) << 4
    value = np.where(segment == 0, value + 8, (value + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, value, -value).astype(np.float32)


_MULAW = _mulaw_table()
_ALAW = _alaw_table()


def shorten_error(path: Path) -> SphereFormatError:
    """The error for a shorten-compressed file where sph2pipe is not installed."""
    return SphereFormatError(
        f"{path}: SPHERE audio is shorten-compressed, which dmao cannot decode and sph2pipe is "
        "not on PATH. Decompress the corpus once with LDC's sph2pipe "
        "(`sph2pipe -f sph in.sph out.sph` writes uncompressed SPHERE), or put sph2pipe on PATH "
        "so that dmao hands these files to it"
    )


def read_sphere(
    path: Path | str, offset_s: float = 0.0, duration_s: float | None = None
) -> tuple[np.ndarray, int]:
    """Read (a stretch of) an uncompressed SPHERE file.

    Args:
        path: the ``.sph`` file.
        offset_s: start of the stretch in seconds.
        duration_s: its length in seconds; ``None`` reads to the end.

    Returns:
        ``(samples, sample_rate)``: ``samples`` float32 ``(channels, num_samples)`` in [-1, 1)
        (``int16 / 32768``, mu-law/A-law decoded through the G.711 tables first).

    Raises:
        SphereFormatError: see :func:`read_sphere_header`; shorten-compressed files without
            ``sph2pipe`` on ``PATH``.
    """
    header = read_sphere_header(path)
    if header.shorten:
        if shutil.which("sph2pipe") is None:
            raise shorten_error(header.path)
        return read_sph(header.path, offset=offset_s, duration=duration_s)
    # Sample positions as lhotse computes them for every other backend.
    start = min(compute_num_samples(offset_s, header.sample_rate), header.sample_count)
    stop = (
        header.sample_count
        if duration_s is None
        else min(start + compute_num_samples(duration_s, header.sample_rate), header.sample_count)
    )
    frame_bytes = header.channel_count * header.sample_n_bytes
    with header.path.open("rb") as f:
        f.seek(header.header_bytes + start * frame_bytes)
        raw = f.read((stop - start) * frame_bytes)
    if header.coding == "pcm":
        ints = np.frombuffer(raw, dtype=">i2" if header.big_endian else "<i2")
        samples = ints.astype(np.float32) / 32768.0
    else:
        table = _MULAW if header.coding == "ulaw" else _ALAW
        samples = table[np.frombuffer(raw, dtype=np.uint8)] / np.float32(32768.0)
    # Interleaved frames → (channels, samples).
    return np.ascontiguousarray(samples.reshape(-1, header.channel_count).T), header.sample_rate


def write_sphere(
    path: Path | str,
    samples: np.ndarray,
    sample_rate: int,
    *,
    coding: str = "pcm",
    big_endian: bool = False,
    extra_fields: dict[str, str] | None = None,
) -> None:
    """Write uncompressed SPHERE with a 1024-byte header in the style of LDC's releases.

    Args:
        path: the ``.sph`` file to write.
        samples: float ``(channels, num_samples)`` (or ``(num_samples,)``) in [-1, 1].
        sample_rate: in Hz.
        coding: ``pcm`` (16-bit), ``ulaw`` or ``alaw`` (8-bit G.711).
        big_endian: byte order of 16-bit PCM (``sample_byte_format 10``).
        extra_fields: more ``name: "-type value"`` header lines, e.g. ``{"database_id": "-s11
            switchboard"}``.
    """
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    channels, count = samples.shape
    linear = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
    frames = linear.T.reshape(-1)  # interleaved: (num_samples * channels,)
    if coding == "pcm":
        payload = frames.astype(">i2" if big_endian else "<i2").tobytes()
        fields = {"sample_n_bytes": "-i 2", "sample_sig_bits": "-i 16"}
        fields["sample_byte_format"] = "-s2 10" if big_endian else "-s2 01"
    elif coding in ("ulaw", "alaw"):
        table = _MULAW if coding == "ulaw" else _ALAW
        payload = _encode_g711(frames, table).tobytes()
        fields = {"sample_n_bytes": "-i 1", "sample_byte_format": "-s1 1"}
    else:
        raise ValueError(f"coding must be pcm, ulaw or alaw, got {coding!r}")
    fields = {
        "channel_count": f"-i {channels}",
        "sample_count": f"-i {count}",
        "sample_rate": f"-i {sample_rate}",
        "sample_coding": f"-s{len(coding)} {coding}",
        **fields,
        **(extra_fields or {}),
    }
    text = "NIST_1A\n   1024\n" + "".join(f"{k} {v}\n" for k, v in fields.items()) + "end_head\n"
    header = text.encode("ascii")
    if len(header) > 1024:
        raise ValueError(f"SPHERE header of {len(header)} bytes does not fit in 1024")
    Path(path).write_bytes(header + b" " * (1024 - len(header)) + payload)


def _encode_g711(linear: np.ndarray, table: np.ndarray) -> np.ndarray:
    """int16 samples → the G.711 byte whose decoded value (``table``) is nearest, (N,) uint8."""
    order = np.argsort(table, kind="stable")
    values = table[order]
    idx = np.clip(np.searchsorted(values, linear), 1, len(values) - 1)
    nearer_left = (linear - values[idx - 1]) <= (values[idx] - linear)
    return order[np.where(nearer_left, idx - 1, idx)].astype(np.uint8)


class SphereBackend(AudioBackend):
    """lhotse audio backend for ``.sph`` files through :func:`read_sphere`."""

    def read_audio(
        self,
        path_or_fd: object,
        offset: float = 0.0,
        duration: float | None = None,
        force_opus_sampling_rate: int | None = None,
    ) -> tuple[np.ndarray, int]:
        return read_sphere(Path(path_or_fd), offset_s=offset, duration_s=duration)

    def handles_special_case(self, path_or_fd: object) -> bool:
        return isinstance(path_or_fd, (str, Path)) and str(path_or_fd).lower().endswith(".sph")

    def is_applicable(self, path_or_fd: object) -> bool:
        return self.handles_special_case(path_or_fd)

    def supports_info(self) -> bool:
        return True

    def info(
        self, path_or_fd: object, force_opus_sampling_rate: int | None = None
    ) -> LibsndfileCompatibleAudioInfo:
        header = read_sphere_header(Path(path_or_fd))
        # With sph2pipe, shorten files are readable; the header's sample_count holds for the
        # decompressed samples too.
        if header.shorten and shutil.which("sph2pipe") is None:
            raise shorten_error(header.path)
        return LibsndfileCompatibleAudioInfo(
            channels=header.channel_count,
            frames=header.sample_count,
            samplerate=header.sample_rate,
            duration=header.duration_s,
        )


class DmaoAudioBackend(CompositeAudioBackend):
    """lhotse's default backend with :class:`SphereBackend` in place of the sph2pipe one."""

    def __init__(self) -> None:
        default = get_default_audio_backend()
        others = [b for b in default.backends if not isinstance(b, Sph2pipeSubprocessBackend)]
        super().__init__([SphereBackend(), *others])


def install_audio_backend() -> None:
    """Make :class:`DmaoAudioBackend` lhotse's audio backend in this process (idempotent).

    A backend chosen by the user through the ``LHOTSE_AUDIO_BACKEND`` environment variable is left
    alone (e.g. ``Sph2pipeSubprocessBackend`` where sph2pipe is installed). Processes forked later
    (data-loader workers) inherit the choice; spawned feature workers call this themselves.
    """
    if os.environ.get("LHOTSE_AUDIO_BACKEND"):
        return
    if not isinstance(get_current_audio_backend(), DmaoAudioBackend):
        set_current_audio_backend(DmaoAudioBackend())
        log.debug("lhotse audio backend: %s", DmaoAudioBackend.__name__)
