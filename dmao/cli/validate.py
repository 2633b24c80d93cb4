"""``dmao validate CORPUS_DIR [--kaldi|--lhotse|--nemo|--parquet]`` — list every problem of a
corpus before training."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a corpus (audio, transcripts, CTC feasibility) before training",
        description="Lists every problem of a LibriSpeech-layout corpus (or, with --kaldi, of "
        "Kaldi data directories, with --lhotse, of a lhotse recipe's manifests, with --nemo, of "
        "NeMo manifests, with --parquet, of a Hugging Face dataset's Parquet files), and of "
        "folders "
        "of noise or room impulse responses (--audio-dir), before training. Nothing is modified.",
    )
    p.add_argument(
        "corpus_dir", type=Path, nargs="?", default=None, help="folder holding the parts"
    )
    p.add_argument(
        "--audio-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also decode every audio file below DIR (data.noise_dir, data.rir_dir: their "
        "preparation reads headers only); repeatable",
    )
    layout = p.add_mutually_exclusive_group()
    layout.add_argument(
        "--kaldi",
        action="store_true",
        help="corpus_dir holds Kaldi data directories (wav.scp, text, [segments]; data.corpus="
        "kaldi): commands in wav.scp are run, any sampling rate is fine",
    )
    layout.add_argument(
        "--lhotse",
        action="store_true",
        help="corpus_dir holds a lhotse recipe's manifests (data.corpus=lhotse); any sampling "
        "rate is fine",
    )
    layout.add_argument(
        "--nemo",
        action="store_true",
        help="corpus_dir holds NeMo manifests, <part>.json (data.corpus=nemo); any sampling "
        "rate is fine",
    )
    layout.add_argument(
        "--parquet",
        action="store_true",
        help="corpus_dir holds a Hugging Face dataset's Parquet files (data.corpus=parquet); "
        "any sampling rate is fine",
    )
    p.add_argument(
        "--text-column",
        default=None,
        help="--parquet: the transcript column (default: text, sentence, transcription, ...)",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=None,
        help="default: every sub-folder (--kaldi: every one with a wav.scp; --lhotse, --nemo, "
        "--parquet: every part found)",
    )
    p.add_argument(
        "--sampling-rate",
        type=int,
        default=16000,
        help="expected rate in Hz (LibriSpeech layout only)",
    )
    p.add_argument("--tokenizer", type=Path, default=None, help="a run's tokenizer folder")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.set_defaults(func=run)


def _layout(args: argparse.Namespace) -> tuple[list[str], str, Callable[..., Any]] | None:
    """``(parts found, what a part is, its validator)`` of a generic layout flag, else None."""
    from dmao.data import validation_formats as formats

    if args.kaldi:
        from dmao.data.corpora.kaldi import kaldi_parts

        found = kaldi_parts(args.corpus_dir)
        return found, "Kaldi data directory (*/wav.scp)", formats.validate_kaldi
    if args.lhotse:
        from dmao.data.corpora.lhotse_manifests import lhotse_parts

        return lhotse_parts(args.corpus_dir), "lhotse manifest", formats.validate_lhotse
    if args.nemo:
        from dmao.data.corpora.nemo import nemo_parts

        layout = "NeMo manifest (<part>.json, or <part>/tarred_audio_manifest.json)"
        return nemo_parts(args.corpus_dir), layout, formats.validate_nemo
    if args.parquet:
        from dmao.data.corpora.parquet import parquet_parts

        validate = partial(formats.validate_parquet, text_column=args.text_column)
        return parquet_parts(args.corpus_dir), "Parquet file", validate
    return None


def run(args: argparse.Namespace) -> int:
    from dmao.data.tokenizer import load_tokenizer
    from dmao.data.validation import ValidationReport, validate_audio_folder, validate_corpus
    from dmao.models.frontend import subsampled_length

    if args.corpus_dir is None and not args.audio_dir:
        raise ValueError("nothing to check: give a corpus folder, --audio-dir DIR, or both")
    reports = []
    if args.corpus_dir is not None:
        if not args.corpus_dir.is_dir():
            raise FileNotFoundError(f"corpus directory {args.corpus_dir} does not exist")
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        layout = _layout(args)
        if layout is not None:
            found, what, validate = layout
            parts = args.parts or found
            if not parts:
                raise FileNotFoundError(f"no {what} in {args.corpus_dir}")
            report = validate(
                args.corpus_dir, parts, tokenizer=tokenizer, subsampled_length=subsampled_length
            )
        else:
            parts = args.parts or sorted(p.name for p in args.corpus_dir.iterdir() if p.is_dir())
            report = validate_corpus(
                args.corpus_dir,
                parts,
                sampling_rate=args.sampling_rate,
                tokenizer=tokenizer,
                subsampled_length=subsampled_length,
            )
        reports.append(report)
    reports += [validate_audio_folder(folder) for folder in args.audio_dir]
    report = ValidationReport(
        num_utterances=sum(r.num_utterances for r in reports),
        audio_seconds=sum(r.audio_seconds for r in reports),
        problems=[p for r in reports for p in r.problems],
    )
    print(report.summary())
    if args.json is not None:
        args.json.write_text(report.to_json())
    return 1 if args.strict and not report.ok else 0
