"""Audio files → text with an exported model (``dmao transcribe``).

Each file is read as mono at the model's rate (:func:`~dmao.export.audio.load_audio`; a Kaldi data
directory's utterances by :class:`~dmao.export.inputs.InputReader`), turned into the fbank features
the model was trained on (the settings stored in the export), run through the acoustic model —
PyTorch or ONNX Runtime — and decoded with CTC greedy or prefix beam search, or with a beam search
over an n-gram LM (the export's, ``dmao export --lm``, or one given here).

:meth:`Transcriber.transcribe_files` reads files ahead, sorts them by length and runs them
through the acoustic model together, up to ``batch_seconds`` of padded audio a pass (the search
is one file at a time; results in input order). The model masks padding, so a file's
log-probabilities do not depend on its batch beyond float rounding (tested). Long files go alone.
A file that fails in any way — unreadable, too short, an error in the model or the decoder —
becomes one :class:`Failure` with a one-line message and the others are still transcribed (a
failed pass is run again file by file, so the error is the failing file's only).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from dmao.config.schema import DECODE_METHODS
from dmao.decoding.alignment import ctc_best_path
from dmao.decoding.confidence import ConfidenceMeasure, frame_confidence
from dmao.decoding.ctc import beam_search_batch, greedy_decode
from dmao.decoding.lm_decoder import CTCLMDecoder, token_symbols, word_boundary_symbol
from dmao.decoding.prior import apply_prior
from dmao.decoding.timing import SUBSAMPLING_FACTOR, WordTiming, word_timings
from dmao.evaluation.confidence import Calibration
from dmao.export.artefact import ExportedModel
from dmao.export.audio import RawFormat
from dmao.export.chunking import chunked_log_probs, pause_segments
from dmao.export.inputs import AudioInput, InputReader
from dmao.export.language_model import LanguageModel
from dmao.export.onnx_export import OnnxAcousticModel
from dmao.export.prior import search_prior_scale
from dmao.export.results import Failure, Transcription, failure_message

__all__ = ["BACKENDS", "Failure", "Transcriber", "Transcription"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BACKENDS = ("torch", "onnx", "onnx-int8")
# Long files (docs/export.md, "Long recordings"; chunk, context and pause chosen on dev with
# benchmarks/bench_long_audio.py).
DEFAULT_LONG_FILE_SECONDS = 30.0
"""Files up to this long go through the model whole and are searched once, as in ``dmao decode``."""
DEFAULT_CHUNK_SECONDS = 6.0
"""Chunk length of a longer file."""
DEFAULT_CONTEXT_SECONDS = 2.0
"""Context on each side of a chunk."""
DEFAULT_PAUSE_SECONDS = 0.24
"""A pause this long ends a segment of a longer file (6 output frames)."""
DEFAULT_BATCH_SECONDS = 60.0
"""Padded audio per acoustic-model pass of :meth:`Transcriber.transcribe_files` (BENCHMARKS.md,
"Batched transcription")."""
# The acoustic model needs at least this many feature frames (its frontend subsamples by 4).
_MIN_FRAMES = 4
# transcribe_files reads this many batch budgets of audio ahead and sorts them by length.
_WINDOW_BATCHES = 8


class Transcriber:
    """Transcribes audio files with an exported model.

    Args:
        exported: from :func:`~dmao.export.load_exported`.
        backend: ``torch`` (the PyTorch model), ``onnx`` (``model.onnx`` through ONNX Runtime)
            or ``onnx-int8`` (``model.int8.onnx``, its int8 copy, from ``dmao export --int8``).
        method: ``greedy``, ``beam`` (CTC prefix beam search without a language model) or
            ``lm`` (beam search with an n-gram LM, as ``dmao decode --method lm``).
        beam_size: beams for ``method="beam"`` (``lm`` takes its own from ``language_model``).
        language_model: for ``method="lm"``: the LM and its search settings; None: the export's
            own (``dmao export --lm``).
        num_threads: ONNX Runtime intra-op threads (the torch backend uses torch's setting).
        raw: how headerless ``.raw``/``.pcm`` files store their samples (None: such files fail
            with a message asking for it).
        timestamps: also give each word's time span (:attr:`Transcription.words`): from the
            argmax path (greedy) or the best path that spells the beam search's hypothesis
            (:func:`~dmao.decoding.alignment.ctc_best_path`); 40 ms resolution; and its
            confidence in [0, 1] from the model's posteriors (:mod:`dmao.decoding.confidence`).
        confidence: how the word confidences are computed; default
            :meth:`~dmao.decoding.confidence.ConfidenceMeasure.for_method` of ``method``.
        calibrate: map them through the export's calibration (``dmao export
            --confidence-from``) when it was fitted for this search and measure; False: raw
            confidences.
        long_file_seconds: a file longer than this goes through the acoustic model in chunks
            and is searched between pauses (:mod:`dmao.export.chunking`); shorter ones whole.
        chunk_seconds: chunk length of a long file; None or 0: every file whole, however long.
        context_seconds: audio on each side of a chunk that its window also sees.
        pause_seconds: in a long file, a pause (the blank best for this long) ends a segment:
            segments are searched alone and joined with a space; 0: one search.
        prior_scale: divide the export's CTC prior (``dmao export --prior-scale``) out of the
            posteriors before the search with this scale, as ``dmao decode --prior-scale``;
            None: the export's own scale with the export's default method (the search it was
            chosen with, :attr:`ExportedModel.decode_method`), no prior with another method or
            an export without one; 0: off.
        batch_seconds: :meth:`transcribe_files` sorts the files it reads ahead by length and
            runs them through the acoustic model together, up to this much padded audio a pass;
            0: one file at a time. A file longer than this (or than ``long_file_seconds``) goes
            alone.
    """

    def __init__(
        self,
        exported: ExportedModel,
        *,
        backend: str = "torch",
        method: str = "greedy",
        beam_size: int = 8,
        language_model: LanguageModel | None = None,
        num_threads: int | None = None,
        raw: RawFormat | None = None,
        timestamps: bool = False,
        confidence: ConfidenceMeasure | None = None,
        calibrate: bool = True,
        long_file_seconds: float = DEFAULT_LONG_FILE_SECONDS,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
        pause_seconds: float = DEFAULT_PAUSE_SECONDS,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        prior_scale: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if method not in DECODE_METHODS:
            raise ValueError(
                f"decoding method must be one of {', '.join(DECODE_METHODS)}, got {method!r}"
            )
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.exported = exported
        self.prior_scale = search_prior_scale(exported, prior_scale, method)
        self.backend = backend
        self.method = method
        self.beam_size = beam_size
        self.raw = raw
        self.timestamps = timestamps
        self.confidence = confidence or ConfidenceMeasure.for_method(method)
        fitted = exported.calibration
        self.calibration: Calibration | None = None
        """Applied to every word confidence (the export's, if fitted for this search/measure)."""
        if (
            calibrate
            and fitted is not None
            and (fitted.search, fitted.measure) == (method, self.confidence.label)
        ):
            self.calibration = fitted.calibration
        self.sampling_rate = exported.features.sampling_rate
        self._reader = InputReader(self.sampling_rate, raw)
        self._extractor = exported.features.extractor()
        self._onnx: OnnxAcousticModel | None = None
        self._symbols: list[str] | None = None  # token symbols by id, for word times
        self._chunk: tuple[int, int] | None = None  # (chunk, context) in feature frames
        shift = exported.features.frame_shift_s
        if chunk_seconds:
            chunk = _seconds_to_frames(chunk_seconds, shift, "chunk_seconds")
            context = _seconds_to_frames(context_seconds, shift, "context_seconds")
            if chunk == 0:
                raise ValueError(f"chunk_seconds must be at least 0.04 s, got {chunk_seconds}")
            self._chunk = (chunk, context)
        # In output frames (T' = T // 4).
        long_file = _seconds_to_frames(long_file_seconds, shift, "long_file_seconds")
        self._long_file = long_file // SUBSAMPLING_FACTOR
        self._pause = (
            _seconds_to_frames(pause_seconds, shift, "pause_seconds") // SUBSAMPLING_FACTOR
        )
        # Padded feature frames a batched pass may hold (0: no batches).
        self._batch_frames = _seconds_to_frames(batch_seconds, shift, "batch_seconds")
        if backend != "torch":
            path = exported.checked_onnx(int8=backend == "onnx-int8")
            self._onnx = OnnxAcousticModel(path, num_threads=num_threads)
        self.language_model: LanguageModel | None = None
        self._lm_decoder: CTCLMDecoder | None = None
        if method == "lm":
            self.language_model = language_model or exported.language_model()
            if self.language_model is None:
                raise ValueError(
                    f"export {exported.directory} has no n-gram LM: export with `dmao export "
                    "--lm FILE`, or give one (--lm FILE, --lexicon FILE for a word LM)"
                )
            self._lm_decoder = self.language_model.decoder(exported.tokenizer)

    def features(self, samples: np.ndarray) -> Tensor:
        """``samples (N,)`` float32 at the model's rate → ``(T, F)`` float32 log-mel fbank."""
        return torch.from_numpy(self._extractor.extract(samples, self.sampling_rate))

    @torch.inference_mode()
    def log_probs(self, features: Tensor) -> Tensor:
        """``features (T, F)`` of one file → ``(T', V)`` CTC log-probabilities (CPU); a long file
        (:meth:`is_long`) window by window (:func:`~dmao.export.chunking.chunked_log_probs`)."""
        self._check_length(features)
        if not self.is_long(features.shape[0] // SUBSAMPLING_FACTOR):
            return self._model_log_probs(features)
        return chunked_log_probs(self._model_log_probs, features, *self._chunk)

    @torch.inference_mode()
    def batch_log_probs(self, features: list[Tensor]) -> list[Tensor]:
        """One acoustic-model pass over several files: ``features``, each ``(T_i, F)``, padded
        into ``(B, max T_i, F)`` → each file's ``(T'_i, V)`` log-probabilities (CPU). No
        chunking: for files that are not :meth:`is_long`."""
        for item in features:
            self._check_length(item)
        return self._model_pass(features)

    def _check_length(self, features: Tensor) -> None:
        if features.shape[0] < _MIN_FRAMES:
            raise ValueError(
                f"audio too short: {features.shape[0]} feature frames, the model needs at least "
                f"{_MIN_FRAMES} ({_MIN_FRAMES * self.exported.features.frame_shift_s:.2f} s)"
            )

    @property
    def chunk_frames(self) -> tuple[int, int] | None:
        """``(chunk, context)`` of a long file in feature frames; None: every file whole."""
        return self._chunk

    def is_long(self, num_output_frames: int) -> bool:
        """Whether a file of ``num_output_frames`` (``T' = T // 4``) is longer than
        ``long_file_seconds`` and so chunked and searched between pauses."""
        return self._chunk is not None and num_output_frames > self._long_file

    def _model_log_probs(self, features: Tensor) -> Tensor:
        """One pass of the acoustic model: ``(T, F)`` → ``(T', V)``."""
        return self._model_pass([features])[0]

    def _model_pass(self, features: list[Tensor]) -> list[Tensor]:
        """``features``, each ``(T_i, F)``, zero-padded into ``(B, max T_i, F)`` and through the
        model once → each ``(T'_i, V)`` on the CPU."""
        lens = torch.tensor([item.shape[0] for item in features], dtype=torch.int64)
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)  # (B, T, F)
        if self._onnx is not None:
            log_probs, out_lens = self._onnx(padded, lens)
        else:
            device = next(self.exported.model.parameters()).device
            log_probs, out_lens = self.exported.model(padded.to(device), lens.to(device))
        log_probs, out_lens = log_probs.cpu(), out_lens.cpu()
        return [log_probs[i, : int(out_lens[i])] for i in range(len(features))]

    def decode(self, log_probs: Tensor) -> str:
        """``log_probs (T', V)`` of one file → text (a long file: searched between pauses)."""
        texts = (self.search(log_probs[a:b]) for a, b in self.segments(log_probs))
        return " ".join(text for text in texts if text)

    def segments(self, log_probs: Tensor) -> list[tuple[int, int]]:
        """The output-frame ranges searched one by one: the whole file, or for a long file
        (:meth:`is_long`) the ranges between pauses of ``pause_seconds``
        (:func:`~dmao.export.chunking.pause_segments`)."""
        length = log_probs.shape[0]
        if self._pause == 0 or not self.is_long(length):
            return [(0, length)]
        return pause_segments(log_probs, self.exported.tokenizer.blank_id, self._pause)

    def search(self, log_probs: Tensor) -> str:
        """Text of one greedy, beam or LM search over all of ``log_probs (T', V)``."""
        log_probs = self._prior_corrected(log_probs)
        if self._lm_decoder is not None:
            return self._lm_decoder.decode(log_probs).text
        return self.exported.tokenizer.decode(self._tokens(log_probs))

    def _prior_corrected(self, log_probs: Tensor) -> Tensor:
        """``log_probs (T', V) - prior_scale · log_prior``: what the search scores."""
        if not self.prior_scale:
            return log_probs
        return apply_prior(log_probs, self.exported.prior.log_prior, self.prior_scale)

    def _tokens(self, log_probs: Tensor) -> list[int]:
        lens = torch.tensor([log_probs.shape[0]], dtype=torch.int64)
        blank = self.exported.tokenizer.blank_id
        if self.method == "greedy":
            return greedy_decode(log_probs[None], lens, blank)[0]
        return beam_search_batch(log_probs[None], lens, self.beam_size, blank)[0]

    def _text_and_path(self, log_probs: Tensor) -> tuple[str, list[int]]:
        """The search's text and the frame path (``(T',)`` token per frame) that spells it, as
        ``dmao decode`` takes word times from: the argmax path (greedy), the best path of the
        hypothesis (beam) or the LM search's own path (lm)."""
        log_probs = self._prior_corrected(log_probs)
        if self._lm_decoder is not None:
            hypothesis = self._lm_decoder.decode(log_probs)
            return hypothesis.text, hypothesis.frame_tokens
        tokens = self._tokens(log_probs)
        if self.method == "greedy":
            path = log_probs.argmax(dim=-1).tolist()
        else:
            path = ctc_best_path(log_probs, tokens, self.exported.tokenizer.blank_id)
        return self.exported.tokenizer.decode(tokens), path

    def word_times(self, log_probs: Tensor) -> tuple[str, list[WordTiming]]:
        """``log_probs (T', V)`` of one file → its text and each word's time span."""
        frame_seconds = self.exported.features.frame_shift_s * SUBSAMPLING_FACTOR
        texts, words = [], []
        for a, b in self.segments(log_probs):
            text, segment_words = self._word_times(log_probs[a:b], frame_seconds)
            texts.append(text)
            offset = a * frame_seconds
            words += [dataclasses.replace(w, start_s=w.start_s + offset) for w in segment_words]
        return " ".join(text for text in texts if text), words

    def _word_times(self, log_probs: Tensor, frame_seconds: float) -> tuple[str, list[WordTiming]]:
        tokenizer = self.exported.tokenizer
        text, path = self._text_and_path(log_probs)
        if self._symbols is None:
            self._symbols = token_symbols(tokenizer)
        boundary = word_boundary_symbol(tokenizer)
        words = word_timings(
            path,
            self._symbols,
            tokenizer.blank_id,
            boundary,
            frame_seconds,
            frame_confidence(log_probs, self.confidence).tolist(),
            self.confidence.aggregation,
        )
        if self.calibration is not None:
            calibrated = self.calibration
            words = [dataclasses.replace(w, confidence=calibrated(w.confidence)) for w in words]
        return text, words

    def transcribe_samples(self, samples: np.ndarray) -> str:
        """Text of ``samples (N,)`` float32 mono at the model's rate."""
        return self.decode(self.log_probs(self.features(samples)))

    def transcribe_file(self, path: str | Path) -> Transcription:
        """Text of one audio file (any format, rate and channel count that ``load_audio`` reads).

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: it is not readable audio or is too short for the model.
        """
        read = self._read(AudioInput.of(path))
        return self._finish(read, self._with_path(read.audio.path, self.log_probs, read.features))

    def transcribe_files(
        self, inputs: Iterable[str | Path | AudioInput]
    ) -> Iterator[Transcription | Failure]:
        """One result per input, in order: a :class:`Transcription`, or a :class:`Failure` for a
        file that could not be transcribed, whatever the reason, so that one bad file never
        stops the others. (``KeyboardInterrupt`` and other non-``Exception`` errors stop it.)

        Files are read ahead ``_WINDOW_BATCHES`` budgets of audio at a time; a window's files,
        sorted by length (so that little is padded), share acoustic-model passes of up to
        ``batch_seconds`` of padded audio; its results are then yielded in input order."""
        window: list[_Read | Failure] = []  # in input order; it starts with a file to run
        window_frames = 0
        for item in inputs:
            entry = self._read_or_fail(AudioInput.of(item))
            if isinstance(entry, Failure):
                if window:
                    window.append(entry)
                else:
                    yield entry
                continue
            frames = entry.features.shape[0]
            if self.is_long(frames // SUBSAMPLING_FACTOR) or frames > self._batch_frames:
                yield from self._run_window(window)  # the files before it first, in order
                yield from self._run_window([entry])  # alone
                window, window_frames = [], 0
                continue
            window.append(entry)
            window_frames += frames
            if window_frames >= _WINDOW_BATCHES * self._batch_frames:
                yield from self._run_window(window)
                window, window_frames = [], 0
        yield from self._run_window(window)

    def _read_or_fail(self, audio: AudioInput) -> _Read | Failure:
        if audio.error is not None:
            return Failure(audio.id, audio.path, audio.error, ValueError(audio.error))
        try:
            return self._read(audio)
        except Exception as err:  # the per-file boundary: any failure is this file's
            return Failure(audio.id, audio.path, failure_message(audio.path, err), err)

    def _read(self, audio: AudioInput) -> _Read:
        """The file's samples read and turned into features (and checked to be long enough)."""
        start = time.perf_counter()
        samples = self._reader.read(audio)
        features = self._with_path(audio.path, self.features, samples)
        self._with_path(audio.path, self._check_length, features)
        seconds = len(samples) / self.sampling_rate
        return _Read(audio, features, seconds, time.perf_counter() - start)

    def _run_window(self, window: list[_Read | Failure]) -> Iterator[Transcription | Failure]:
        """The window's files through the model, shortest first, in passes of up to
        ``batch_seconds`` of padded audio, each searched; then every result in window order."""
        reads = sorted(
            (entry for entry in window if isinstance(entry, _Read)),
            key=lambda read: read.features.shape[0],
        )
        outputs: dict[int, Tensor | Exception] = {}  # by id() of the read
        group: list[_Read] = []
        for read in reads:
            if group and (len(group) + 1) * read.features.shape[0] > self._batch_frames:
                outputs.update(self._run_pass(group))
                group = []
            group.append(read)
        if group:
            outputs.update(self._run_pass(group))
        for entry in window:
            if isinstance(entry, Failure):
                yield entry
                continue
            try:
                output = outputs[id(entry)]
                if isinstance(output, Exception):
                    raise output
                yield self._finish(entry, output)
            except Exception as err:  # the per-file boundary
                audio = entry.audio
                yield Failure(audio.id, audio.path, failure_message(audio.path, err), err)

    def _run_pass(self, reads: list[_Read]) -> dict[int, Tensor | Exception]:
        """``reads`` through the model in one pass (one file: :meth:`log_probs`), by ``id()``
        of each read. A failed pass is run again file by file, so that its error is only the
        failing file's."""
        if len(reads) > 1:
            start = time.perf_counter()
            try:
                batch = self.batch_log_probs([read.features for read in reads])
            except Exception as err:  # e.g. out of memory: each file alone says whose it is
                log.debug("a pass of %d files failed; again one by one", len(reads), exc_info=err)
            else:
                share = (time.perf_counter() - start) / sum(r.features.shape[0] for r in reads)
                for read in reads:
                    read.seconds += share * read.features.shape[0]
                return {id(read): output for read, output in zip(reads, batch, strict=True)}
        outputs: dict[int, Tensor | Exception] = {}
        for read in reads:
            start = time.perf_counter()
            try:
                outputs[id(read)] = self._with_path(read.audio.path, self.log_probs, read.features)
            except Exception as err:  # the per-file boundary
                outputs[id(read)] = err
            read.seconds += time.perf_counter() - start
        return outputs

    def _finish(self, read: _Read, log_probs: Tensor) -> Transcription:
        """The search over one file's ``log_probs (T', V)`` and its result."""
        start = time.perf_counter()
        words = None
        if self.timestamps:
            text, words = self._with_path(read.audio.path, self.word_times, log_probs)
        else:
            text = self._with_path(read.audio.path, self.decode, log_probs)
        return Transcription(
            path=read.audio.path,
            text=text,
            audio_seconds=read.audio_seconds,
            processing_seconds=read.seconds + time.perf_counter() - start,
            id=read.audio.id,
            words=words,
            span=read.audio.span,
        )

    @staticmethod
    def _with_path(path: Path, fn: Callable[..., _T], *args: object) -> _T:
        """``fn(*args)``, with a ValueError's message prefixed by the file (``FILE: reason``)."""
        try:
            return fn(*args)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


@dataclass
class _Read:
    """A file read and turned into features ``(T, F)``, waiting for the acoustic model;
    ``seconds``: the processing time spent on it so far."""

    audio: AudioInput
    features: Tensor
    audio_seconds: float
    seconds: float


def _seconds_to_frames(seconds: float, frame_shift_s: float, name: str) -> int:
    """Seconds → feature frames, rounded to a multiple of the subsampling factor."""
    if seconds < 0:
        raise ValueError(f"{name} must be >= 0, got {seconds}")
    return SUBSAMPLING_FACTOR * round(seconds / frame_shift_s / SUBSAMPLING_FACTOR)
