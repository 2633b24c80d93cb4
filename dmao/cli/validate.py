"""``dmao validate CORPUS_DIR`` — list every problem of a corpus before training."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a LibriSpeech-layout corpus (audio, transcripts, CTC feasibility)",
        description="Lists every problem of a LibriSpeech-layout corpus, and of folders of noise "
        "or room impulse responses (--audio-dir), before training. Nothing is modified.",
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
    p.add_argument("--parts", nargs="+", default=None, help="default: every sub-folder")
    p.add_argument("--sampling-rate", type=int, default=16000, help="expected rate in Hz")
    p.add_argument("--tokenizer", type=Path, default=None, help="a run's tokenizer folder")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.set_defaults(func=run)


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
        parts = args.parts or sorted(p.name for p in args.corpus_dir.iterdir() if p.is_dir())
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        reports.append(
            validate_corpus(
                args.corpus_dir,
                parts,
                sampling_rate=args.sampling_rate,
                tokenizer=tokenizer,
                subsampled_length=subsampled_length,
            )
        )
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
