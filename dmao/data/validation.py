"""Check a corpus before training (``dmao validate``): the LibriSpeech layout, and the checks
the generic layouts share (:mod:`dmao.data.validation_formats`: Kaldi data directories, lhotse
manifests, NeMo manifests, Parquet files).

Reads every transcript line and every audio file of the given parts and lists each problem with
its file and reason: missing, empty (0 bytes), unreadable or truncated audio, a sampling rate other
than the expected one, silence of zero length, non-finite samples, transcripts that are empty after
normalisation or hold characters the tokenizer cannot encode, utterances that CTC cannot align
(more labels plus repeats than output frames after subsampling), and audio files that no
transcript mentions. Nothing is modified.

:func:`validate_audio_folder` decodes every file of a folder of noise recordings or room impulse
responses (``data.noise_dir``, ``data.rir_dir``), whose preparation reads headers only.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from dmao.data.bad_audio import audio_error_message
from dmao.data.features import FRAME_SHIFT_S
from dmao.data.filtering import ctc_min_frames
from dmao.data.text import normalize_transcript
from dmao.data.tokenizer import Tokenizer

__all__ = [
    "CorpusProblem",
    "Span",
    "ValidationReport",
    "check_audio",
    "check_span",
    "sample_problems",
    "validate_audio_folder",
    "validate_corpus",
]


@dataclass(frozen=True)
class CorpusProblem:
    """One problem of one utterance or file."""

    part: str
    utterance_id: str
    path: str
    reason: str
    detail: str


@dataclass
class ValidationReport:
    """Every problem found, and how much was checked."""

    num_utterances: int = 0
    audio_seconds: float = 0.0
    problems: list[CorpusProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.reason for p in self.problems))

    def summary(self) -> str:
        head = f"checked {self.num_utterances} utterances ({self.audio_seconds / 3600:.2f} h): " + (
            "no problems" if self.ok else f"{len(self.problems)} problem(s) {self.counts()}"
        )
        lines = [head]
        for p in self.problems:
            lines.append(f"  {p.reason}: {p.path} ({p.utterance_id}): {p.detail}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "num_utterances": self.num_utterances,
                "audio_seconds": self.audio_seconds,
                "counts": self.counts(),
                "problems": [asdict(p) for p in self.problems],
            },
            indent=1,
        )


def validate_corpus(
    corpus_dir: str | Path,
    parts: Sequence[str],
    *,
    sampling_rate: int = 16000,
    tokenizer: Tokenizer | None = None,
    subsampled_length: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check parts of a LibriSpeech-layout corpus (``<part>/<spk>/<chapter>/*.flac`` +
    ``<spk>-<chapter>.trans.txt``).

    Args:
        corpus_dir: folder holding the parts.
        parts: part names to check.
        sampling_rate: the rate every file must have, in Hz.
        tokenizer: when given, transcripts must be encodable and CTC feasibility is checked on its
            labels; otherwise on the characters of the normalised transcript (spaces included).
        subsampled_length: output frames for a number of input frames (the model's subsampling);
            when None, CTC feasibility is not checked.
    """
    corpus_dir = Path(corpus_dir)
    report = ValidationReport()
    for part in parts:
        part_dir = corpus_dir / part
        if not part_dir.is_dir():
            report.problems.append(
                CorpusProblem(part, "-", str(part_dir), "missing_part", "no such directory")
            )
            continue
        mentioned: set[Path] = set()
        for trans in sorted(part_dir.rglob("*.trans.txt")):
            for line_no, line in enumerate(trans.read_text(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                audio = trans.parent / f"{utt_id}.flac"
                mentioned.add(audio)
                report.num_utterances += 1
                where = f"{trans}:{line_no}"
                problems, seconds = _check_utterance(
                    part, utt_id, audio, text, where, sampling_rate, tokenizer, subsampled_length
                )
                report.audio_seconds += seconds
                report.problems.extend(problems)
        for audio in sorted(part_dir.rglob("*.flac")):
            if audio not in mentioned:
                report.problems.append(
                    CorpusProblem(
                        part, audio.stem, str(audio), "no_transcript", "no .trans.txt line"
                    )
                )
    return report


def validate_audio_folder(folder: str | Path, field: str = "--audio-dir") -> ValidationReport:
    """Decode every audio file below ``folder`` (:data:`~dmao.data.audio_folder.AUDIO_SUFFIXES`,
    recursively) and list each that is empty, unreadable, truncated, of zero length or holds
    non-finite samples; any sampling rate is fine (resampled when used). The report's part is the
    folder's name, its utterance ids the paths below it.

    Raises:
        ValueError: naming ``field`` when the folder is missing or holds no audio file.
    """
    from dmao.data.audio_folder import audio_files

    folder = Path(folder)
    report = ValidationReport()
    for path in audio_files(folder, field):
        report.num_utterances += 1
        problems, seconds, _ = check_audio(path)
        report.audio_seconds += seconds
        file_id = path.relative_to(folder).as_posix()
        report.problems += [
            CorpusProblem(folder.name, file_id, str(path), reason, detail)
            for reason, detail in problems
        ]
    return report


class Span(NamedTuple):
    """One utterance: a span of a recording with its transcript as written."""

    part: str
    utt: str
    recording: str
    start: float
    end: float
    """``-1``: the recording's end."""
    text: str


def check_span(
    report: ValidationReport,
    span: Span,
    length: float,
    text_path: str,
    span_path: str,
    tokenizer: Tokenizer | None,
    subsampled_length: Callable[[int], int] | None,
) -> None:
    """Count one utterance of a readable recording of ``length`` seconds and record its
    problems: outside the recording (beyond the Kaldi overshoot), an empty or untokenizable
    transcript (markers removed), CTC infeasibility."""
    from dmao.data.corpora.kaldi import normalize_kaldi, span_in_recording

    problem = _problem_factory(span.part, span.utt, text_path)
    report.num_utterances += 1
    end, seconds = span_in_recording(span.start, span.end, length)
    if seconds is None:
        detail = f"{span.start:g}–{end:g} s of {span.recording}, which lasts {length:.2f} s"
        report.problems.append(problem("segment_outside_recording", detail, span_path))
        return
    report.audio_seconds += seconds
    found, normalised = _check_text(problem, normalize_kaldi(span.text), text_path, tokenizer)
    report.problems += found + _check_ctc(problem, normalised, seconds, tokenizer,
                                          subsampled_length)  # fmt: skip


def check_audio(
    path: Path | bytes, missing: str = "not on disk"
) -> tuple[list[tuple[str, str]], float, int | None]:
    """``([(reason, detail)], seconds, rate)`` of one audio file (or stream: ``bytes``), decoded
    in full (SPHERE by dmao's reader); ``rate`` is None when it could not be read. A file that
    does not exist is ``missing_audio`` with the detail ``missing`` (where it was listed)."""
    if isinstance(path, bytes):
        path = io.BytesIO(path)
    elif not path.is_file():
        return [("missing_audio", missing)], 0.0, None
    elif path.stat().st_size == 0:
        return [("empty_file", "0 bytes")], 0.0, None
    try:
        if isinstance(path, Path) and path.suffix.lower() == ".sph":
            from dmao.data.sphere import read_sphere

            channels, rate = read_sphere(path)
            samples = channels.T
        else:
            samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError for corrupt data
        return [("unreadable_audio", audio_error_message(err))], 0.0, None
    return sample_problems(samples.T), samples.shape[0] / rate, rate


def sample_problems(samples: np.ndarray) -> list[tuple[str, str]]:
    """No samples, or NaN/inf among them (``samples``: (channels, time))."""
    if samples.shape[-1] == 0:
        return [("empty_audio", "0 samples")]
    if not np.isfinite(samples).all():
        return [("non_finite_samples", "NaN or inf samples")]
    return []


def _check_utterance(
    part: str,
    utt_id: str,
    audio: Path,
    text: str,
    where: str,
    sampling_rate: int,
    tokenizer: Tokenizer | None,
    subsampled_length: Callable[[int], int] | None,
) -> tuple[list[CorpusProblem], float]:
    problem = _problem_factory(part, utt_id, str(audio))
    found, normalised = _check_text(problem, text, where, tokenizer)
    audio_problems, seconds, rate = check_audio(audio, "listed in the transcript but not on disk")
    found += [problem(reason, detail) for reason, detail in audio_problems]
    if rate is None:
        return found, 0.0
    if rate != sampling_rate:
        found.append(problem("wrong_sampling_rate", f"{rate} Hz, expected {sampling_rate} Hz"))
    return found + _check_ctc(problem, normalised, seconds, tokenizer, subsampled_length), seconds


def _problem_factory(part: str, utt_id: str, path: str) -> Callable[..., CorpusProblem]:
    """``problem(reason, detail, path=path)`` for one utterance."""

    def problem(reason: str, detail: str, where: str = path) -> CorpusProblem:
        return CorpusProblem(part, utt_id, where, reason, detail)

    return problem


def _check_text(
    problem: Callable[..., CorpusProblem], text: str, where: str, tokenizer: Tokenizer | None
) -> tuple[list[CorpusProblem], str]:
    """``(problems, normalised text)``: an empty or untokenizable transcript."""
    normalised = normalize_transcript(text)
    if not normalised:
        return [problem("empty_transcript", f"transcript {text!r} at {where}", where)], ""
    if tokenizer is not None and not tokenizer.can_encode(normalised):
        return [problem("untokenizable", f"{normalised!r} at {where}", where)], normalised
    return [], normalised


def _check_ctc(
    problem: Callable[..., CorpusProblem],
    normalised: str,
    seconds: float,
    tokenizer: Tokenizer | None,
    subsampled_length: Callable[[int], int] | None,
) -> list[CorpusProblem]:
    """An utterance of ``seconds`` that CTC cannot align to ``normalised`` (on the tokenizer's
    labels where it encodes the text, else on characters); nothing without a model's
    ``subsampled_length`` or a transcript."""
    if not normalised or subsampled_length is None:
        return []
    if tokenizer is not None and tokenizer.can_encode(normalised):
        labels = tokenizer.encode(normalised)
    else:
        labels = [ord(c) for c in normalised]
    frames = subsampled_length(int(seconds / FRAME_SHIFT_S))
    needed = ctc_min_frames(labels)
    if frames >= needed:
        return []
    detail = f"{frames} output frames < {needed} needed ({len(labels)} labels + repeats)"
    return [problem("ctc_infeasible", detail)]
