"""What :class:`~dmao.export.Transcriber` gives for each file: a :class:`Transcription`, or a
:class:`Failure` with one line that names the file and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dmao.decoding.timing import WordTiming
from dmao.evaluation.sclite import ctm_lines
from dmao.export.inputs import RecordingSpan

__all__ = ["Failure", "Transcription", "failure_message"]


@dataclass
class Transcription:
    """The result for one file.

    ``processing_seconds`` is the wall time from reading the file to the decoded text
    (reading, resampling, features, acoustic model, search); for a file that went through the
    model in a batch, the pass's time is shared among its files by their length. ``id``
    defaults to the path.
    """

    path: Path
    text: str
    audio_seconds: float
    processing_seconds: float = 0.0
    id: str = ""
    words: list[WordTiming] | None = None
    """Each word's start and duration (``Transcriber(timestamps=True)``), else None."""
    span: RecordingSpan | None = None
    """Where the utterance lies in its recording (a Kaldi data directory's utterance, a NeMo
    manifest's line), else None."""

    def __post_init__(self) -> None:
        self.id = self.id or str(self.path)

    def ctm_lines(self) -> list[str]:
        """The words as sclite CTM lines, ``NAME CHANNEL START DURATION WORD CONFIDENCE``: for a
        file, ``NAME`` is the id (whitespace → ``_``), channel ``A``, times from its start; for an
        utterance of a Kaldi data directory, in its recording's time and named by
        ``reco2file_and_channel`` (else the recording id, ``A``), as Kaldi's ``get_ctm.sh``
        writes them for scoring against an STM."""
        words = self.words or []
        if self.span is None:
            return ctm_lines("_".join(self.id.split()), words)
        offset = self.span.start
        shifted = [replace(w, start_s=w.start_s + offset) for w in words]
        return ctm_lines(self.span.file, shifted, self.span.channel)

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (< 1: faster than real time)."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0


@dataclass
class Failure:
    """A file that could not be transcribed.

    ``message`` is one line that starts with the file: ``FILE: what is wrong; what was
    expected``; ``error`` is the exception behind it (for a traceback with ``dmao -v``).
    """

    id: str
    path: Path
    message: str
    error: Exception


def failure_message(path: Path, err: Exception) -> str:
    """One line that starts with ``path``: our own errors already read ``FILE: reason``;
    anything else (an error inside ONNX Runtime, the model or the search) gets the file and the
    exception's type in front."""
    reason = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if isinstance(err, (FileNotFoundError, ValueError)) and reason.startswith(f"{path}: "):
        return reason
    return f"{path}: {type(err).__name__}: {reason or 'no message'}"
