"""espeak-ng speech synthesis through ctypes, with the library and data bundled by espeakng-loader.

No system espeak-ng is needed: ``espeakng_loader.get_library_path()`` gives ``libespeak-ng.so`` and
``espeakng_loader.get_data_path()`` its ``espeak-ng-data`` folder. We drive the C API directly:
``espeak_Initialize`` in synchronous mode with a callback that collects the 16-bit samples,
``espeak_SetVoiceByName`` (``"en-gb-scotland+f2"``: language voice + variant),
``espeak_SetParameter`` for rate, pitch, pitch range and volume, and ``espeak_Synth``.

Reproducibility. espeak-ng keeps synthesis state in static variables between calls: measured on
espeak-ng 1.52 (espeakng-loader 0.2.4), the same text synthesised after a different utterance
comes out with different samples and even a different length, and ``espeak_Terminate`` followed by
``espeak_Initialize`` does not reset it. So before every utterance we unload the library
(``dlclose``) and load it again, which costs about 0.5 ms and makes the samples a function of text,
voice and parameters only. A self-check at start-up verifies this; if the platform does not unload
libraries, we log a warning and synthesis still works, without bit-exact reproducibility.

The library has process-wide state and is not thread-safe: use one :class:`EspeakSynthesizer` per
process (``get_synthesizer()``); calls are serialised by a lock. For parallel synthesis, use
processes.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import logging
import math
import threading
import weakref
from pathlib import Path
from typing import ClassVar

import espeakng_loader
import numpy as np
from scipy.signal import firwin, resample_poly

__all__ = [
    "DEFAULT_VOLUME",
    "EspeakSynthesizer",
    "get_synthesizer",
    "resample",
    "synthesize",
]

logger = logging.getLogger(__name__)

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_EE_NOT_FOUND = 2
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4

# espeak's volume is 0..200 (default 100). At 100, several English variants (+paul, +ed, +klatt4,
# ...) reach int16 full scale and clip. At 30, the loudest variant the corpus uses (+Storm) peaked
# at -3.7 dBFS and the quietest (+m8) at -16.5 dBFS, measured over the 8 English voices, 4
# sentences, pitch 30 and 70, pitch range 80; so no clipping, and over 11 bits of signal.
# Callers normalise the level afterwards.
DEFAULT_VOLUME = 30

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_dlclose = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)


class EspeakSynthesizer:
    """The espeak-ng engine of this process. Create it through :func:`get_synthesizer`.

    Only one may exist per process: a second one would hold the library loaded, so that reloading
    could not reset it (the start-up self-check detects exactly that).
    """

    _alive: ClassVar[weakref.WeakSet[EspeakSynthesizer]] = weakref.WeakSet()

    def __init__(
        self,
        library_path: str | Path | None = None,
        data_path: str | Path | None = None,
        volume: int = DEFAULT_VOLUME,
    ) -> None:
        if len(EspeakSynthesizer._alive) > 0:
            raise RuntimeError(
                "an EspeakSynthesizer already exists in this process; use get_synthesizer()"
            )
        EspeakSynthesizer._alive.add(self)
        self.library_path = str(library_path or espeakng_loader.get_library_path())
        self.data_path = str(data_path or espeakng_loader.get_data_path())
        if not 0 <= volume <= 200:
            raise ValueError(f"espeak volume must be in 0..200, got {volume}")
        self.volume = volume
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the C thunk when the Python object is collected.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self._lib: ctypes.CDLL | None = None
        self.sample_rate = self._reload()
        self.reproducible = self._check_reproducible()
        if not self.reproducible:
            logger.warning(
                "espeak-ng state is not reset between utterances on this platform (dlclose did "
                "not unload %s): synthesis works, but audio is not bit-for-bit reproducible",
                self.library_path,
            )

    def _on_samples(self, wav: ctypes.Array, num_samples: int, events: int) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def _reload(self) -> int:
        """(Re)load the library so all its static state starts fresh; returns its sample rate."""
        if self._lib is not None:
            self._lib.espeak_Terminate()
            if _dlclose is not None:
                _dlclose(self._lib._handle)
            self._lib = None
        lib = ctypes.CDLL(self.library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique identifier out
            ctypes.c_void_p,  # user data
        ]
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed (returned {sample_rate}) with data path "
                f"{self.data_path}; is espeakng-loader installed completely?"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        return sample_rate

    def _check_reproducible(self) -> bool:
        probe = "one two three"
        first = self.synthesize(probe)
        self.synthesize("a different sentence in between", voice="en-gb-x-rp+f2", pitch=80)
        return np.array_equal(first, self.synthesize(probe))

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate_wpm: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        rand_seed: int = 0,
    ) -> np.ndarray:
        """Synthesise ``text`` at the native rate (``self.sample_rate``, 22050 Hz).

        Args:
            text: what to say; punctuation shapes the prosody.
            voice: espeak voice name, optionally with a variant: ``"en-us"``, ``"en-gb-x-rp+f2"``.
            rate_wpm: speaking rate in words per minute (espeak accepts 80..450).
            pitch: base pitch, 0..100 (50 = the voice's default).
            pitch_range: pitch variation, 0..100 (0 = monotone, 50 = default).
            rand_seed: seed of espeak's internal random generator (used by some voices).

        Returns:
            ``(num_samples,)`` int16 samples; empty if espeak produced no audio.
        """
        if not text.strip():
            raise ValueError("text to synthesise is empty")
        for name, value, low, high in (
            ("rate_wpm", rate_wpm, 80, 450),
            ("pitch", pitch, 0, 100),
            ("pitch_range", pitch_range, 0, 100),
        ):
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high}, got {value}")
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            self._reload()
            lib = self._lib
            assert lib is not None
            status = lib.espeak_SetVoiceByName(voice.encode())
            if status == _EE_NOT_FOUND:
                raise ValueError(
                    f"espeak-ng has no voice {voice!r} (voices are under {self.data_path}/lang, "
                    "variants under voices/!v; write them as 'en-us+m3')"
                )
            if status != _EE_OK:
                raise RuntimeError(f"espeak_SetVoiceByName({voice!r}) failed with {status}")
            for param, value in (
                (_PARAM_RATE, rate_wpm),
                (_PARAM_PITCH, pitch),
                (_PARAM_RANGE, pitch_range),
                (_PARAM_VOLUME, self.volume),
            ):
                lib.espeak_SetParameter(param, int(value), 0)
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(ctypes.c_long(rand_seed))
            self._chunks = []
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with {status} for {text!r}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_SYNTHESIZER: EspeakSynthesizer | None = None
_SYNTHESIZER_LOCK = threading.Lock()


def get_synthesizer() -> EspeakSynthesizer:
    """The process-wide espeak-ng engine, created on first use (the C library is a singleton)."""
    global _SYNTHESIZER
    with _SYNTHESIZER_LOCK:
        if _SYNTHESIZER is None:
            _SYNTHESIZER = EspeakSynthesizer()
        return _SYNTHESIZER


@functools.cache
def _lowpass(up: int, down: int) -> np.ndarray:
    # scipy.signal.resample_poly's default filter, designed once instead of on every call (it
    # took a tenth of the per-utterance time).
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling of ``(num_samples,)`` audio; returns float64 ``(num_samples',)``.

    22050 -> 16000 Hz is the ratio 320/441, done exactly by ``scipy.signal.resample_poly``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if orig_rate == new_rate:
        return samples
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    return resample_poly(samples, up, down, window=_lowpass(up, down))


def synthesize(
    text: str,
    voice: str = "en-us",
    rate_wpm: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; no noise, no padding, no level normalisation.

    Args:
        text: English text (any case; punctuation shapes the prosody).
        voice: espeak voice, optionally ``+variant``: ``"en-us"``, ``"en-gb-scotland+m3"``.
        rate_wpm: words per minute, 80..450.
        pitch: base pitch 0..100; pitch_range: 0..100 (0 = monotone).
        sample_rate: output rate in Hz; espeak's native 22050 Hz is resampled.

    Returns:
        ``(samples, sample_rate)``: samples ``(num_samples,)`` float32 in [-1, 1].
    """
    engine = get_synthesizer()
    native = engine.synthesize(text, voice, rate_wpm, pitch, pitch_range)
    audio = resample(native / 32768.0, engine.sample_rate, sample_rate)
    return audio.astype(np.float32), sample_rate
