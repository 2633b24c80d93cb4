"""Hugging Face datasets as Parquet files (as the Hub serves them), as ``save_to_disk`` wrote
them or as ``load_dataset`` cached them → cuts.

Layout: ``data.corpus_dir`` holds a dataset's Parquet files (in sub-folders or not), a part per
split, named as the Hub names them::

    <corpus_dir>/data/train-00000-of-00004.parquet       part "train" (all its shards)
    <corpus_dir>/clean/test/0000.parquet                  part "test" (the Hub's Parquet export)
    <corpus_dir>/validation.parquet                       part "validation"

or folders ``Dataset.save_to_disk``/``DatasetDict.save_to_disk`` wrote (Arrow IPC streams)::

    <corpus_dir>/train/state.json, data-00000-of-00002.arrow, ...   part: state.json's split
                                                                    (else the folder's name)

(a ``state.json``'s ``_data_files``, in its order), or a dataset's folder in
``load_dataset``'s cache::

    <corpus_dir>/dataset_info.json, librispeech_asr-train.clean.100-00000-of-00014.arrow, ...
                                    (<builder_name>-<split>[-NNNNN-of-NNNNN].arrow)

A part's shards must lie in one folder (two configs' ``train`` are an error: point
``corpus_dir`` at one config). Columns, one row per utterance:

- the audio: the column the file's Hugging Face metadata calls ``Audio``, else the one struct
  column ``{bytes, path}`` (the ``Audio`` feature's storage). Rows with ``bytes`` are copied out
  once, the bytes unchanged, to ``<manifests>/audio/<part>/<id>.<wav|flac|...>`` (lhotse reads
  files); rows with only ``path`` name a file (relative: to the Parquet file's folder);
- the transcript: ``data.text_column`` (CLI ``--text-column``), else the first of
  :data:`TEXT_COLUMNS` the file has;
- the id: an ``id`` column, else the audio ``path``'s name without suffix when those are all
  given and distinct in the part, else ``<part>-<row>`` (7 digits, counted over the shards in
  name order);
- the speaker, where present: the first of :data:`SPEAKER_COLUMNS`.

Transcripts: whole tokens in brackets are removed (as in Kaldi data directories), then
:func:`~dmao.data.text.normalize_transcript`; an utterance left empty is dropped. A row whose
audio is empty, not audio, or missing is one bad-audio entry (``data.bad_audio``). Reading needs
``pyarrow`` (``pip install 'dmao[parquet]'``); the ``datasets`` library is not needed.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment

from dmao.data.audio_files import audio_info, write_audio_file
from dmao.data.bad_audio import BadAudio, BadAudioLog, scan_audio
from dmao.data.corpora.common import normalised_supervisions, recordings_from_files, segment_cuts
from dmao.data.corpora.kaldi import normalize_kaldi
from dmao.data.manifests import load_or_prepare

__all__ = [
    "PARQUET_LAYOUT",
    "SPEAKER_COLUMNS",
    "TEXT_COLUMNS",
    "ParquetRow",
    "audio_cells",
    "parquet_parts",
    "part_shards",
    "prepare_parquet",
    "read_parquet_part",
]

log = logging.getLogger(__name__)

PARQUET_LAYOUT = (
    "<corpus_dir>/**/<split>-NNNNN-of-NNNNN.parquet, <split>/NNNN.parquet or <split>.parquet "
    "(a Hugging Face dataset's Parquet files), <corpus_dir>/**/state.json + data-*.arrow "
    "(save_to_disk) or dataset_info.json + <builder>-<split>*.arrow (load_dataset's cache), "
    "with an Audio column ({bytes, path}) and a transcript column"
)
TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text")
"""Transcript columns looked for, in order, without ``data.text_column``."""
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}$")


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ModuleNotFoundError(
            "reading Parquet files needs pyarrow: pip install 'dmao[parquet]' (or pyarrow)"
        ) from None
    return pq


def _part_of(path: Path) -> str:
    match = _SHARD.match(path.stem)
    if match:
        return match["split"]
    return path.parent.name if path.stem.isdigit() else path.stem


def _saved(state: Path) -> tuple[str, list[Path]]:
    """``(split, its Arrow files)`` of a folder ``save_to_disk`` wrote, from its ``state.json``
    (the split: ``_split``, else the folder's name).

    Raises:
        ValueError: ``state.json`` is not JSON or lists no data files.
    """
    try:
        content = json.loads(state.read_text(encoding="utf-8"))
        files = [state.parent / f["filename"] for f in content["_data_files"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{state}: not a save_to_disk state.json with '_data_files' "
                         f"({type(err).__name__}: {err})") from None  # fmt: skip
    if not files:
        raise ValueError(f"{state}: '_data_files' lists no Arrow files")
    split = content.get("_split")
    return (split if isinstance(split, str) and split else state.parent.name), files


def _cached(info: Path) -> dict[str, list[Path]]:
    """``{split: its Arrow files, sorted}`` of a folder of ``load_dataset``'s cache (the
    builder's ``dataset_info.json`` beside ``<builder>-<split>[-NNNNN-of-NNNNN].arrow``; the
    ``cache-*.arrow`` of ``map`` and the like are not the dataset's)."""
    try:
        builder = json.loads(info.read_text(encoding="utf-8")).get("builder_name")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(builder, str) or not builder:
        return {}
    found: dict[str, list[Path]] = {}
    for path in sorted(info.parent.glob(f"{glob.escape(builder)}-*.arrow")):
        stem = path.stem[len(builder) + 1 :]
        match = _SHARD.match(stem)
        found.setdefault(match["split"] if match else stem, []).append(path)
    return found


def _shards(corpus_dir: Path) -> dict[str, list[Path]]:
    """``{part: its Parquet files (sorted), save_to_disk Arrow files (in state.json's order)
    or load_dataset cache files (sorted)}``.

    Raises:
        ValueError: a part with files in two folders; a bad ``state.json``.
    """
    found: dict[str, list[Path]] = {}
    for path in sorted(corpus_dir.rglob("*.parquet")):
        found.setdefault(_part_of(path), []).append(path)
    for state in sorted(corpus_dir.rglob("state.json")):
        if any(state.parent.glob("*.arrow")):
            split, files = _saved(state)
            found.setdefault(split, []).extend(files)
    for info in sorted(corpus_dir.rglob("dataset_info.json")):
        if not (info.parent / "state.json").is_file():
            for split, files in _cached(info).items():
                found.setdefault(split, []).extend(files)
    for part, paths in found.items():
        folders = sorted({str(p.parent.relative_to(corpus_dir)) for p in paths})
        if len(folders) > 1:
            raise ValueError(
                f"{corpus_dir}: part {part!r} has data files in {len(folders)} folders "
                f"({', '.join(folders)}): point the corpus folder at one of the dataset's configs"
            )
    return found


def part_shards(corpus_dir: Path | str, part: str) -> list[Path]:
    """The Parquet files of ``part`` below ``corpus_dir``, sorted.

    Raises:
        FileNotFoundError: none (the parts found named).
        ValueError: the part's files lie in two folders.
    """
    shards = _shards(Path(corpus_dir))
    if part not in shards:
        raise FileNotFoundError(
            f"no Parquet files of part {part!r} below {corpus_dir} (parts there: "
            f"{', '.join(sorted(shards)) or 'none'}); expected {PARQUET_LAYOUT}"
        )
    return shards[part]


def parquet_parts(corpus_dir: Path | str) -> list[str]:
    """The parts (splits) whose Parquet files lie below ``corpus_dir``, sorted."""
    return sorted(_shards(Path(corpus_dir)))


@dataclass(frozen=True)
class ParquetRow:
    """One utterance as the first pass reads it (no audio bytes): where, its id, the audio
    ``path`` the cell names (absolute; None if none), transcript and speaker."""

    shard: Path
    row: int
    """0-based within ``shard``."""
    id: str
    path: Path | None
    text: str
    speaker: str | None

    @property
    def where(self) -> str:
        return f"{self.shard}:row {self.row}"


def _columns(path: Path, schema: Any, text_column: str | None) -> tuple[str, str, str | None]:
    """``(audio, text, speaker or None)`` column names of one file.

    Raises:
        ValueError: no or several audio columns, or no transcript column.
    """
    import pyarrow as pa

    names = list(schema.names)
    features = {}
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            features = json.loads(meta).get("info", {}).get("features", {}) or {}
        except (ValueError, AttributeError):
            features = {}
    audio = [n for n, f in features.items() if isinstance(f, dict) and f.get("_type") == "Audio"]
    if not audio:
        audio = [
            field.name for field in schema
            if pa.types.is_struct(field.type)
            and {"bytes", "path"} <= {child.name for child in field.type}
        ]  # fmt: skip
    if len(audio) != 1:
        raise ValueError(f"{path}: {'no' if not audio else len(audio)} audio columns ("
                         f"{', '.join(audio) or 'columns: ' + ', '.join(names)}); expected "
                         f"one Audio column ({{bytes, path}})")  # fmt: skip
    candidates = [text_column] if text_column else list(TEXT_COLUMNS)
    text = next((c for c in candidates if c in names), None)
    if text is None:
        wanted = f"column {text_column!r}" if text_column else f"one of {', '.join(TEXT_COLUMNS)}"
        raise ValueError(f"{path}: no transcript column ({wanted}; columns: {', '.join(names)}); "
                         f"set data.text_column (--text-column)")  # fmt: skip
    speaker = next((c for c in SPEAKER_COLUMNS if c in names), None)
    return audio[0], text, speaker


class _ArrowStream:
    """A ``save_to_disk`` shard (an Arrow IPC stream, memory-mapped) read as a ``ParquetFile``
    is here: ``schema_arrow`` and ``iter_batches(columns, batch_size)``, where a column
    ``a.b`` is the field ``b`` of the struct column ``a``.

    Raises:
        ValueError: not an Arrow stream (pyarrow's reason, with the file named).
    """

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        try:
            with pa.memory_map(str(path)) as source:
                self.schema_arrow = pa.ipc.open_stream(source).schema
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{path}: not a readable Arrow file ({err})") from None

    def iter_batches(self, columns: list[str], batch_size: int) -> Iterator[Any]:
        import pyarrow as pa

        with pa.memory_map(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                for start in range(0, batch.num_rows, batch_size):
                    part = batch.slice(start, batch_size)
                    arrays = [_column(part, name) for name in columns]
                    names = [name.split(".")[0] for name in columns]
                    yield pa.RecordBatch.from_arrays(arrays, names=names)


def _column(batch: Any, name: str) -> Any:
    """Column ``name`` of a record batch; ``a.b``: a struct ``{b}`` of struct column ``a``'s
    field ``b`` (nulls kept)."""
    import pyarrow as pa

    outer, _, inner = name.partition(".")
    column = batch.column(outer)
    if not inner:
        return column
    child = column.flatten()[column.type.get_field_index(inner)]  # old field(): no offset
    return pa.StructArray.from_arrays([child], names=[inner], mask=column.is_null())


def _open(path: Path) -> Any:
    """pyarrow's ``ParquetFile`` of ``path``, or an :class:`_ArrowStream` of an ``.arrow``
    file.

    Raises:
        ValueError: not a Parquet (Arrow) file (pyarrow's reason, with the file named).
    """
    pq = _pyarrow_parquet()
    if path.suffix == ".arrow":
        return _ArrowStream(path)
    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None


def _batches(path: Path, columns: list[str], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    for batch in _open(path).iter_batches(columns=columns, batch_size=batch_size):
        yield batch.to_pylist()


def read_parquet_part(
    shards: Sequence[Path], part: str, text_column: str | None = None
) -> list[ParquetRow]:
    """Every row of one part's files with its id (module docstring), without the audio bytes.

    Raises:
        ValueError: a file without the needed columns, a row whose transcript is not a string,
            or two rows with one id (each names the file and row).
    """
    raw = []
    for shard in shards:
        schema = _open(shard).schema_arrow
        audio, text, speaker = _columns(shard, schema, text_column)
        columns = [f"{audio}.path", text, *([speaker] if speaker else [])]
        columns += ["id"] if "id" in schema.names else []
        row = 0
        for batch in _batches(shard, columns, 1024):
            for record in batch:
                if not isinstance(record[text], str):
                    raise ValueError(f"{shard}:row {row}: the transcript is {record[text]!r}, "
                                     f"not text")  # fmt: skip
                cell = record[audio] or {}
                raw.append((shard, row, record.get("id"), cell.get("path"), record[text],
                            record.get(speaker) if speaker else None))  # fmt: skip
                row += 1
    stems = [Path(path).stem if path else None for _, _, _, path, _, _ in raw]
    by_stem = None not in stems and len(set(stems)) == len(stems)
    rows, seen = [], {}
    for number, ((shard, row, given, path, text, speaker), stem) in enumerate(
        zip(raw, stems, strict=True)
    ):
        utterance = str(given) if given is not None else stem if by_stem else f"{part}-{number:07d}"
        if utterance in seen:
            raise ValueError(
                f"{shard}:row {row}: id {utterance} again (first at {seen[utterance]})"
            )
        seen[utterance] = f"{shard}:row {row}"
        file = None
        if path:
            file = Path(path) if Path(path).is_absolute() else shard.parent / path
        rows.append(ParquetRow(shard, row, utterance, file, text,
                               None if speaker is None else str(speaker)))  # fmt: skip
    return rows


def audio_cells(
    rows: list[ParquetRow], text_column: str | None
) -> Iterator[tuple[ParquetRow, bytes | None]]:
    """Each row with its audio bytes (None when the cell holds only a path), read a few rows
    at a time (the bytes of a part need not fit in memory)."""
    by_shard: dict[Path, list[ParquetRow]] = {}
    for row in rows:
        by_shard.setdefault(row.shard, []).append(row)
    for shard, its_rows in by_shard.items():
        audio, _, _ = _columns(shard, _open(shard).schema_arrow, text_column)
        cells = (cell for batch in _batches(shard, [f"{audio}.bytes"], 16) for cell in batch)
        for row, record in zip(its_rows, cells, strict=True):
            yield row, (record[audio] or {}).get("bytes") or None


def _recordings(
    part: str, rows: list[ParquetRow], bad: BadAudioLog, out: Path, text_column: str | None
) -> list[Recording]:
    """The part's readable recordings, audio bytes copied out below ``out``; each bad row
    recorded in ``bad``."""
    files: dict[str, Path] = {}
    named: dict[str, Path] = {}
    for row, data in audio_cells(rows, text_column):
        if data is not None:
            info = audio_info(data, "audio cell")
            if isinstance(info, tuple):
                bad.add(BadAudio(part, row.id, row.where, *info))
            else:
                files[row.id] = write_audio_file(data, out, row.id)
        elif row.path is not None:
            named[row.id] = row.path
        else:
            bad.add(BadAudio(part, row.id, row.where, "missing_audio",
                             "the audio cell has neither bytes nor a path"))  # fmt: skip
    found = scan_audio(list(named.values()))
    for utterance, path in named.items():
        if path in found:
            bad.add(BadAudio(part, utterance, str(path), *found[path]))
        else:
            files[utterance] = path
    return list(recordings_from_files(files).values())


def prepare_parquet(
    corpus_dir: Path | str,
    out_dir: Path | str,
    parts: Sequence[str],
    *,
    text_column: str | None = None,
    **options: Any,
) -> dict[str, CutSet]:
    """A Hugging Face dataset's Parquet files below ``corpus_dir`` → cuts (one per row) with
    cached fbank.

    Idempotent per part, like :func:`~dmao.data.manifests.prepare_manifests`; ``options`` are
    :func:`~dmao.data.manifests.load_or_prepare`'s keyword arguments.

    Raises:
        FileNotFoundError: ``corpus_dir`` is missing, or a part has no Parquet files.
        ImportError: pyarrow is not installed.
        ValueError: a file or row that cannot be read (:func:`read_parquet_part`), bad audio
            (strict: all listed) or more of it than the budget (skip).
    """
    corpus_dir = Path(corpus_dir)

    def read(missing: list[str], bad: BadAudioLog) -> dict[str, CutSet]:
        if not corpus_dir.is_dir():
            raise FileNotFoundError(f"data.corpus_dir {corpus_dir} does not exist; expected "
                                    f"{PARQUET_LAYOUT}")  # fmt: skip
        by_part = {}
        for part in missing:
            rows = read_parquet_part(part_shards(corpus_dir, part), part, text_column)
            bad.listed[part] = len(rows)
            out = Path(out_dir) / "audio" / part
            recordings = _recordings(part, rows, bad, out, text_column)
            by_part[part] = (rows, recordings)
        bad.check(missing, stage="pre-scan of the audio")
        cuts = {}
        for part, (rows, recordings) in by_part.items():
            readable = {r.id: r for r in recordings}
            supervisions = [
                SupervisionSegment(
                    id=row.id,
                    recording_id=row.id,
                    start=0.0,
                    duration=readable[row.id].duration,
                    channel=0,
                    text=row.text,
                    speaker=row.speaker,
                )
                for row in rows
                if row.id in readable
            ]
            kept, dropped = normalised_supervisions(supervisions, normalize_kaldi)
            log.info("Parquet part %s: %d utterances, %d empty after normalisation dropped",
                     part, len(kept), dropped)  # fmt: skip
            cuts[part] = segment_cuts(RecordingSet.from_recordings(recordings), kept)
        return cuts

    return load_or_prepare(out_dir, parts, read, **options)
