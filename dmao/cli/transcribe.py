"""``dmao transcribe --model DIR INPUT...`` — one line per file on stdout, errors on stderr.

INPUT is a file, a folder (its audio files), a Kaldi data directory (a folder with ``wav.scp`` and
optionally ``segments``: one result per utterance, named by its id), a NeMo manifest (``*.json``:
one result per line, named as ``dmao prepare nemo`` names it), ``@LIST`` (a file listing
``PATH`` or ``ID<TAB>PATH`` a line; see :mod:`dmao.export.inputs`) or ``-`` (standard input).
Output, one record per transcribed file: ``ID<TAB>text`` (default), a TSV table with a header
(``--tsv``: id, text, duration_s, rtf), JSON Lines (``--json``: id, path, text, duration_s, rtf,
with ``--timestamps`` also words with their start, end and confidence; failed files as id, path,
error) or sclite CTM (``--ctm``: one line per word, ``ID A START DURATION WORD CONFIDENCE``, like
``dmao decode``'s ``hyp.ctm``). An export with an n-gram LM (``dmao export --lm``) decodes with it
(``--method lm``; ``--lm FILE`` gives another). A file that fails is one line on stderr, the others
are still transcribed, a summary ends the output on stderr, and the exit code is 1 if any file
failed. Files share acoustic-model passes, sorted by length (``--batch-seconds``); results still
come out in input order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from dmao.cli.confidence_args import add_confidence_arguments, confidence_from_args
from dmao.cli.lm_args import add_lm_arguments, lm_search_settings, lm_settings_given
from dmao.config.schema import DECODE_METHODS

if TYPE_CHECKING:
    from dmao.export import ExportedModel, RawFormat
    from dmao.export.language_model import LanguageModel

__all__ = ["register"]

log = logging.getLogger(__name__)

# A bar for a handful of files would only flicker; from this many on, show one (on a terminal).
_PROGRESS_MIN_FILES = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files with an exported model")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio file (any format), folder (its audio files), Kaldi data directory (a folder "
        "with wav.scp [and segments]: its utterances), NeMo manifest (*.json, *.jsonl: its "
        "lines), @LIST (one path a line) or - (standard input: a WAV/FLAC/... stream, or "
        "headerless PCM with --raw-format)",
    )
    p.add_argument("--model", type=Path, required=True, help="folder written by `dmao export`")
    p.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),  # dmao.export.transcribe.BACKENDS
        default="torch",
        help="torch, onnx (model.onnx) or onnx-int8 (model.int8.onnx, from `dmao export --int8`)",
    )
    p.add_argument(
        "--method",
        choices=DECODE_METHODS,
        default=None,
        help="default: lm for an export with an n-gram LM or with --lm, else the run's",
    )
    p.add_argument(
        "--beam-size", type=int, default=None, help="default: the run's (lm: the export's)"
    )
    p.add_argument("--device", default="cpu", help="torch backend device (cpu, cuda, ...)")
    p.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        metavar="S",
        help="subtract S * log CTC prior before the search (needs an export made with "
        "--prior-scale; default: the export's scale with the export's default method, else "
        "none; 0: off)",
    )
    p.add_argument(
        "--batch-seconds",
        type=float,
        default=60.0,  # dmao.export.transcribe.DEFAULT_BATCH_SECONDS
        help="files, sorted by length, go through the model together, up to this much padded "
        "audio a pass (default 60; try more on a GPU); 0: one file at a time",
    )
    # Defaults: dmao.export.transcribe.DEFAULT_* (docs/export.md, "Long recordings").
    long = p.add_argument_group("long recordings (files longer than --long-file-seconds)")
    long.add_argument(
        "--long-file-seconds",
        type=float,
        default=30.0,
        help="longer files go through the model in chunks and are searched between pauses "
        "(default 30); shorter ones whole, as `dmao decode` does",
    )
    long.add_argument(
        "--chunk-seconds",
        type=float,
        default=6.0,
        help="chunk length (default 6); 0: every file whole, however long",
    )
    long.add_argument(
        "--context-seconds",
        type=float,
        default=2.0,
        help="audio each chunk's window also sees on either side (default 2)",
    )
    long.add_argument(
        "--pause-seconds",
        type=float,
        default=0.24,
        help="a pause this long ends a segment searched alone (default 0.24); 0: one search",
    )
    add_lm_arguments(
        p.add_argument_group(
            "n-gram LM (--method lm): the export's own unless --lm; settings not given are the "
            "export's"
        )
    )
    raw = p.add_argument_group("headerless PCM (.raw, .pcm files; standard input when given)")
    raw.add_argument(
        "--raw-format",
        default=None,
        metavar="FORMAT",
        help="sample format, as ffmpeg names it: s16le, s16be, s24le, s32le, f32le, f64le, u8, "
        "s8, mulaw, alaw, ...",
    )
    raw.add_argument("--raw-sample-rate", type=int, default=None, metavar="HZ")
    raw.add_argument("--raw-channels", type=int, default=None, metavar="N", help="default: 1")
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="JSON Lines: id, path, text, duration_s, rtf"
    )
    output.add_argument(
        "--tsv", action="store_true", help="TSV with a header: id, text, duration_s, rtf"
    )
    output.add_argument(
        "--ctm",
        action="store_true",
        help="word times as sclite CTM: ID A START DURATION WORD CONFIDENCE, one line per word "
        "(seconds; confidence in [0, 1]; whitespace in an ID becomes _); a Kaldi data "
        "directory's utterances in their recording's time, named by its reco2file_and_channel "
        "(else RECORDING A), as Kaldi's get_ctm.sh",
    )
    p.add_argument(
        "--timestamps",
        action="store_true",
        help="with --json: each word's start and end in seconds (40 ms resolution) and its "
        "confidence in [0, 1] (normalised entropy of the posteriors over the word's frames: "
        "min, mean after an LM search)",
    )
    add_confidence_arguments(p, calibration=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Transcribe every input; failed files are reported on stderr and make the exit code 1."""
    from dmao.export import Failure, Transcriber, expand_inputs, load_exported

    if args.timestamps and not args.json:
        raise ValueError("--timestamps adds word times to --json records (--ctm always has them)")
    raw = _raw_format(args)
    inputs = expand_inputs(args.inputs)
    exported = load_exported(args.model, device=args.device)
    method = args.method or ("lm" if args.lm_path is not None else exported.decode_method)
    transcriber = Transcriber(
        exported,
        backend=args.backend,
        method=method,
        beam_size=args.beam_size or exported.beam_size,
        language_model=_language_model(args, exported, method),
        raw=raw,
        timestamps=args.timestamps or args.ctm,
        long_file_seconds=args.long_file_seconds,
        chunk_seconds=args.chunk_seconds,
        context_seconds=args.context_seconds,
        pause_seconds=args.pause_seconds,
        batch_seconds=args.batch_seconds,
        prior_scale=args.prior_scale,
        confidence=confidence_from_args(args, method),
        calibrate=not args.raw_confidence,
    )
    if args.tsv:
        _out("id\ttext\tduration_s\trtf")
    failed = done = 0
    audio_seconds = processing_seconds = 0.0
    bar = tqdm(
        total=len(inputs),
        desc="transcribe",
        unit="file",
        file=sys.stderr,
        disable=True if len(inputs) < _PROGRESS_MIN_FILES else None,  # None: only on a TTY
        leave=False,
        dynamic_ncols=True,
    )
    with bar:
        for result in transcriber.transcribe_files(inputs):
            bar.update(1)
            if isinstance(result, Failure):
                failed += 1
                log.debug("%s failed", result.path, exc_info=result.error)
                tqdm.write(f"dmao transcribe: error: {result.message}", file=sys.stderr)
                if args.json:
                    record = {"id": result.id, "path": str(result.path), "error": result.message}
                    _out(json.dumps(record, ensure_ascii=False))
                continue
            done += 1
            audio_seconds += result.audio_seconds
            processing_seconds += result.processing_seconds
            if args.json:
                record = {
                    "id": result.id,
                    "path": str(result.path),
                    "text": result.text,
                    "duration_s": round(result.audio_seconds, 3),
                    "rtf": round(result.real_time_factor, 4),
                }
                if result.words is not None:
                    record["words"] = [
                        {"word": w.word, "start": round(w.start_s, 2),
                         "end": round(w.start_s + w.duration_s, 2),
                         "confidence": round(w.confidence, 3)}
                        for w in result.words
                    ]  # fmt: skip
                _out(json.dumps(record, ensure_ascii=False))
            elif args.ctm:
                for line in result.ctm_lines():
                    _out(line)
            elif args.tsv:
                row = (result.id, result.text, f"{result.audio_seconds:.3f}")
                _out("\t".join(row) + f"\t{result.real_time_factor:.4f}")
            else:
                _out(f"{result.id}\t{result.text}")
    print(_summary(done, failed, audio_seconds, processing_seconds), file=sys.stderr)
    return 1 if failed else 0


def _language_model(
    args: argparse.Namespace, exported: ExportedModel, method: str
) -> LanguageModel | None:
    """``--lm`` / ``--lexicon`` with the search settings given, over the export's settings (None:
    the export's own LM, or no LM for greedy and beam)."""
    from dmao.decoding.lm_decoder import LMDecoderOptions
    from dmao.export.language_model import LanguageModel, recorded_options

    if method != "lm":
        given = lm_settings_given(args)
        if given:
            raise ValueError(f"{', '.join(given)} apply to --method lm only")
        return None
    settings = lm_search_settings(args)
    if args.lm_path is None:
        if args.lexicon_path is not None:
            raise ValueError("--lexicon goes with --lm (the export's LM has its own lexicon)")
        own = exported.language_model()  # checked against the manifest; None: Transcriber says so
        return own.with_options(**settings) if own is not None else None
    lexicon = Path(args.lexicon_path) if args.lexicon_path is not None else None
    options = recorded_options(exported.manifest) or LMDecoderOptions()
    return LanguageModel(Path(args.lm_path), lexicon, options).with_options(**settings)


def _raw_format(args: argparse.Namespace) -> RawFormat | None:
    """The ``--raw-*`` options as a RawFormat; format and rate go together."""
    from dmao.export import RawFormat

    given = {
        "--raw-format": args.raw_format,
        "--raw-sample-rate": args.raw_sample_rate,
        "--raw-channels": args.raw_channels,
    }
    if all(value is None for value in given.values()):
        return None
    missing = [name for name in ("--raw-format", "--raw-sample-rate") if given[name] is None]
    if missing:
        raise ValueError(
            f"headerless PCM needs {' and '.join(missing)} as well "
            "(e.g. --raw-format s16le --raw-sample-rate 16000)"
        )
    return RawFormat(args.raw_format, args.raw_sample_rate, args.raw_channels or 1)


def _out(line: str) -> None:
    """One line on stdout, below a progress bar on stderr if there is one."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _summary(done: int, failed: int, audio_seconds: float, processing_seconds: float) -> str:
    total = done + failed
    line = f"dmao transcribe: {done} of {total} file(s) transcribed"
    if failed:
        line += f", {failed} failed (errors above)"
    if audio_seconds > 0:
        line += (
            f"; {audio_seconds:.1f} s of audio in {processing_seconds:.2f} s, real-time factor "
            f"{processing_seconds / audio_seconds:.3f}"
        )
    return line
