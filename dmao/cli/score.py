"""``dmao score REF HYP`` — WER and CER of a transcript file against references (``compute-wer``).

For transcripts made outside ``dmao decode``: ``dmao transcribe data/test > hyp.txt`` on a Kaldi
data directory, or another toolkit's output. With ``--out DIR`` it writes what ``dmao decode``
writes for a scored split, so ``dmao significance`` and ``dmao results`` take it like a decode.
Formats and conventions: :mod:`dmao.evaluation.transcripts`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="WER/CER of a transcript file against references (Kaldi text, trn, NeMo manifest, "
        "transcribe output)",
        description="Scores hypotheses against references as Kaldi's compute-wer, with dmao's "
        "normalisation and aligners. Each side is a Kaldi data directory (its text), a Kaldi "
        "text file or `dmao transcribe` output (ID<TAB>TEXT, --tsv or --json), an sclite "
        "*.trn file, or a NeMo manifest (references: its text; hypotheses: its pred_text). A "
        "reference without a hypothesis counts as all deletions (a warning says how many; "
        "--missing error refuses); a hypothesis id that is not a reference is an error.",
    )
    p.add_argument("ref", type=Path, metavar="REF", help="references: Kaldi data dir or file")
    p.add_argument("hyp", type=Path, metavar="HYP", help="hypotheses: a transcript file")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write hypotheses.txt, ref.trn, hyp.trn and result.json here (as dmao decode)",
    )
    p.add_argument("--split", default=None, help="the set's name in result.json (default: REF's)")
    p.add_argument(
        "--aligner",
        choices=("kaldialign", "sclite"),
        default="kaldialign",
        help="minimum edit distance (kaldialign, as compute-wer) or sclite's weighted alignment",
    )
    p.add_argument(
        "--missing",
        choices=("empty", "error"),  # dmao.evaluation.transcripts.MISSING_MODES
        default="empty",
        help="a reference without a hypothesis: scored as empty (default) or an error",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.evaluation.transcripts import score_files

    scored = score_files(
        args.ref,
        args.hyp,
        out_dir=args.out,
        aligner=args.aligner,
        missing=args.missing,
        split=args.split,
    )
    print(scored.score.summary())
    notes = []
    if scored.missing:
        notes.append(f"{len(scored.missing)} without a hypothesis, scored as empty")
    if scored.empty_references:
        notes.append(f"{scored.empty_references} empty references not scored")
    print(f"{len(scored.ids)} utterances" + (f" ({'; '.join(notes)})" if notes else ""))
    if args.out is not None:
        print(f"written: {args.out}/hypotheses.txt ref.trn hyp.trn result.json")
    return 0
