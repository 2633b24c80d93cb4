"""``dmao significance A B`` — is decode B better than decode A, or is the gap test-set noise?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "significance",
        help="paired bootstrap test of two decodes of the same split (WER and CER)",
        description="Compares two decodes of the same utterances (folders written by `dmao "
        "decode`, or kept by `dmao compare --archive`: their hypotheses.txt; or sclite's ref.trn "
        "and hyp.trn) with the paired bootstrap of Bisani & Ney "
        "(2004), as Kaldi's compute-wer-bootci: each rate with its interval, the difference B − A "
        "with its interval, and the share of resamples on which B is better. It measures "
        "test-set noise only; a claim about a training method needs seeds (dmao compare).",
    )
    p.add_argument("a", type=Path, metavar="A", help="decode folder of system A (the reference)")
    p.add_argument("b", type=Path, metavar="B", help="decode folder of system B")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    p.add_argument(
        "--aligner",
        choices=("kaldialign", "sclite"),
        default=None,
        help="how utterances are aligned (default: the aligner A was scored with)",
    )
    p.set_defaults(func=run)


def _aligner_of(folder: Path) -> str:
    result = folder / "result.json"
    if result.is_file():
        return json.loads(result.read_text()).get("aligner", "kaldialign")
    return "kaldialign"


def run(args: argparse.Namespace) -> int:
    from dmao.evaluation.significance import (
        compare_decodes,
        format_comparison,
        read_paired_decodes,
    )

    if args.resamples < 100:
        raise ValueError(f"--resamples: expected at least 100, got {args.resamples}")
    if not 0.5 <= args.confidence < 1:
        raise ValueError(f"--confidence: expected a level in [0.5, 1), got {args.confidence}")
    aligner = args.aligner or _aligner_of(args.a)
    decodes = read_paired_decodes(args.a, args.b, aligner=aligner)
    results = compare_decodes(
        decodes, resamples=args.resamples, confidence=args.confidence, seed=args.seed
    )
    print(format_comparison(results, str(args.a), str(args.b)))
    return 0
