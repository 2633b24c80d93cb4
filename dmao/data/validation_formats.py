"""``dmao validate`` of the generic corpus layouts: Kaldi data directories
(:func:`validate_kaldi`), a lhotse recipe's manifests (:func:`validate_lhotse`), NeMo manifests
(:func:`validate_nemo`) and a Hugging Face dataset's Parquet files (:func:`validate_parquet`).

Each decodes every recording in full and checks every utterance's span, transcript and CTC
feasibility with the checks of :mod:`dmao.data.validation`; a part that cannot be read at all is
its one problem. Nothing is modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from dmao.data.bad_audio import audio_error_message
from dmao.data.tokenizer import Tokenizer
from dmao.data.validation import (
    CorpusProblem,
    Span,
    ValidationReport,
    check_audio,
    check_span,
    sample_problems,
)

__all__ = ["validate_kaldi", "validate_lhotse", "validate_nemo", "validate_parquet"]


def validate_kaldi(
    corpus_dir: str | Path,
    parts: Sequence[str],
    *,
    tokenizer: Tokenizer | None = None,
    subsampled_length: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check Kaldi data directories ``corpus_dir/<part>`` (:mod:`dmao.data.corpora.kaldi`):
    a malformed table (the part's one problem, ``malformed_data_dir``), every recording decoded
    in full (files, archive entries and the output of ``wav.scp`` commands, which are run),
    segments outside their recording, and per utterance the transcript (after the Kaldi markers
    are removed) and CTC feasibility. Any sampling rate is fine (resampled when used). Recording
    problems name the recording id; its utterances are not checked further.
    """
    from dmao.data.corpora.kaldi import audio_base, read_kaldi_part
    from dmao.data.sphere import read_sphere_header

    corpus_dir = Path(corpus_dir)
    base = audio_base(corpus_dir)
    report = ValidationReport()
    for part in parts:
        try:
            kaldi = read_kaldi_part(corpus_dir / part)
        except (FileNotFoundError, ValueError) as err:
            report.problems.append(
                CorpusProblem(part, "-", str(corpus_dir / part), "malformed_data_dir", str(err))
            )
            continue
        lengths = {}
        plain = set(kaldi.scp.files())
        for reco in kaldi.wav:
            where = kaldi.scp.where(reco, base)
            if reco in plain:
                path = kaldi.scp.path(reco, base)
                found, seconds, _ = check_audio(path, "listed in wav.scp but not on disk")
                if not found and reco in kaldi.scp.channels:  # a sph2pipe -c 2 command
                    channels = read_sphere_header(path).channel_count
                    problem = kaldi.scp.channel_problem(reco, channels)
                    found = [("unreadable_audio", problem)] if problem else []
            else:  # a command or an archive entry
                stream = kaldi.scp.stream(reco, base)
                found, seconds, _ = (
                    ([stream], 0.0, None) if isinstance(stream, tuple) else check_audio(stream)
                )
            report.problems += [CorpusProblem(part, reco, where, *f) for f in found]
            if not found:
                lengths[reco] = seconds
        for utt, (reco, start, end) in kaldi.spans().items():
            if reco in lengths:
                span = Span(part, utt, reco, start, end, kaldi.text[utt])
                paths = str(kaldi.folder / "text"), str(kaldi.folder / "segments")
                check_span(report, span, lengths[reco], *paths, tokenizer, subsampled_length)
    return report


def validate_lhotse(
    corpus_dir: str | Path,
    parts: Sequence[str],
    *,
    tokenizer: Tokenizer | None = None,
    subsampled_length: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check the manifests of a lhotse recipe in ``corpus_dir`` (:mod:`dmao.data.corpora.
    lhotse_manifests`): a part whose manifests are missing, ambiguous or unreadable
    (``malformed_manifests``), every recording decoded in full, supervisions of unknown
    recordings or outside theirs, and per supervision the transcript (Kaldi-style markers
    removed) and CTC feasibility. Recording problems name the recording id.
    """
    from dmao.data.corpora.lhotse_manifests import find_manifests, load_part

    corpus_dir = Path(corpus_dir)
    report = ValidationReport()
    for part in parts:
        try:
            paths = find_manifests(corpus_dir, part)
            recordings, supervisions = load_part(paths)
        except (FileNotFoundError, ValueError) as err:
            report.problems.append(
                CorpusProblem(part, "-", str(corpus_dir), "malformed_manifests", str(err))
            )
            continue
        lengths = {}
        for recording in recordings:
            where, found, seconds = _check_recording(recording)
            report.problems += [CorpusProblem(part, recording.id, where, *f) for f in found]
            if not found:
                lengths[recording.id] = seconds
        ids, manifest = set(recordings.ids), str(paths.get("supervisions", paths.get("cuts")))
        for sup in supervisions:
            if sup.recording_id not in ids:
                report.problems.append(CorpusProblem(
                    part, sup.id, manifest, "unknown_recording",
                    f"recording {sup.recording_id} is not in the part's recordings manifest",
                ))  # fmt: skip
            elif sup.recording_id in lengths:
                span = Span(part, sup.id, sup.recording_id, sup.start, sup.end, sup.text or "")
                check_span(report, span, lengths[sup.recording_id], manifest, manifest,
                            tokenizer, subsampled_length)  # fmt: skip
    return report


def validate_nemo(
    corpus_dir: str | Path,
    parts: Sequence[str],
    *,
    tokenizer: Tokenizer | None = None,
    subsampled_length: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check NeMo manifests ``corpus_dir/<part>.json`` or tarred datasets
    ``corpus_dir/<part>/`` (:mod:`dmao.data.corpora.nemo`): a part whose manifest is missing,
    ambiguous or malformed (``malformed_manifests``, its first bad line), every audio file (or
    shard member) decoded in full, and per line its span, transcript and CTC feasibility. File
    problems name the recording id the file gets.
    """
    from dmao.data.corpora.nemo import find_nemo_manifests, read_nemo_manifests

    report = ValidationReport()
    for part in parts:
        try:
            entries = read_nemo_manifests(find_nemo_manifests(corpus_dir, part))
        except (FileNotFoundError, ValueError) as err:
            report.problems.append(
                CorpusProblem(part, "-", str(corpus_dir), "malformed_manifests", str(err))
            )
            continue
        lengths = {}
        for reco, audio, (found, seconds, _) in _nemo_audio(entries):
            report.problems += [CorpusProblem(part, reco, str(audio), *f) for f in found]
            if not found:
                lengths[reco] = seconds
        for e in entries:
            if e.recording in lengths:
                span = Span(part, e.id, e.recording, e.offset, e.end, e.text)
                check_span(report, span, lengths[e.recording], e.where, e.where, tokenizer,
                            subsampled_length)  # fmt: skip
    return report


def _nemo_audio(entries) -> Iterator[tuple[str, Path, tuple[list, float, int | None]]]:
    """``(recording, audio, check_audio(...))`` of each file of NeMo manifest lines (entries
    of :func:`~dmao.data.corpora.nemo.read_nemo_manifests`); the members of a tarred
    dataset's shards read from the shard, one pass each."""
    from dmao.data.corpora.nemo import shard_members
    from dmao.data.corpora.nemo_tarred import read_members

    files = {e.recording: e.audio for e in entries}
    shards = shard_members(entries)
    tarred = {reco for members in shards.values() for reco in members.values()}
    for reco, audio in files.items():
        if reco not in tarred:
            yield reco, audio, check_audio(audio, "in the manifest, not on disk")
    for shard, members in shards.items():
        for member, data in read_members(shard, list(members)):
            found = ([data], 0.0, None) if isinstance(data, tuple) else check_audio(data)
            yield members[member], shard / member, found


def validate_parquet(
    corpus_dir: str | Path,
    parts: Sequence[str],
    *,
    tokenizer: Tokenizer | None = None,
    subsampled_length: Callable[[int], int] | None = None,
    text_column: str | None = None,
) -> ValidationReport:
    """Check a Hugging Face dataset's Parquet files below ``corpus_dir``
    (:mod:`dmao.data.corpora.parquet`): a part whose files are missing or unreadable
    (``malformed_manifests``), every row's audio decoded in full (its bytes, or the file its
    path names), and per row the transcript and CTC feasibility. Problems name the row's id.
    """
    from dmao.data.corpora.parquet import audio_cells, part_shards, read_parquet_part

    corpus_dir = Path(corpus_dir)
    report = ValidationReport()
    for part in parts:
        try:
            rows = read_parquet_part(part_shards(corpus_dir, part), part, text_column)
        except (FileNotFoundError, ValueError) as err:
            report.problems.append(
                CorpusProblem(part, "-", str(corpus_dir), "malformed_manifests", str(err))
            )
            continue
        for row, data in audio_cells(rows, text_column):
            if data is not None:
                where, (found, seconds, _) = row.where, check_audio(data)
            elif row.path is not None:
                where = str(row.path)
                found, seconds, _ = check_audio(row.path, f"named by {row.where}, not on disk")
            else:
                where, found, seconds = row.where, [("missing_audio", "no bytes, no path")], 0.0
            report.problems += [CorpusProblem(part, row.id, where, *f) for f in found]
            if not found:
                span = Span(part, row.id, row.id, 0.0, -1.0, row.text)
                check_span(report, span, seconds, row.where, row.where, tokenizer,
                            subsampled_length)  # fmt: skip
    return report


def _check_recording(recording) -> tuple[str, list[tuple[str, str]], float]:
    """``(where, problems, seconds)`` of a lhotse recording decoded in full: a file source as
    every file here (:func:`check_audio`), any other source through lhotse."""
    from dmao.data.corpora.lhotse_manifests import file_source

    path = file_source(recording)
    if path is not None:
        found, seconds, _ = check_audio(path, "in the recordings manifest, not on disk")
        return str(path), found, seconds
    source = recording.sources[0]
    try:
        samples = recording.load_audio()
    except Exception as err:  # any reader error makes the recording unusable
        return source.source, [("unreadable_audio", audio_error_message(err))], 0.0
    found = sample_problems(samples)
    return source.source, found, samples.shape[-1] / recording.sampling_rate
