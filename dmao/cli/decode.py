"""``dmao decode RUN --split test [--method greedy|beam|lm] [--lm FILE --lexicon FILE]
[--avg N] [--prior-scale S] [--align kaldialign|sclite]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmao.cli.confidence_args import add_confidence_arguments, confidence_from_args
from dmao.cli.run_args import (
    add_align_argument,
    add_checkpoint_arguments,
    add_prior_utterances_argument,
)
from dmao.config.schema import DECODE_METHODS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode a corpus split with a trained run and score it")
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--split", nargs="+", default=None, help="corpus parts (default: test parts)")
    p.add_argument("--method", choices=DECODE_METHODS, default=None)
    p.add_argument("--beam-size", type=int, default=None)
    p.add_argument(
        "--nbest",
        type=int,
        default=0,
        metavar="N",
        help="also write each utterance's N best hypotheses (nbest.txt; beam and lm) and their "
        "oracle WER",
    )
    lm = p.add_argument_group("LM decoding (--method lm; docs/decoding.md)")
    lm.add_argument("--lm", dest="lm_path", default=None, help="n-gram LM (ARPA or KenLM binary)")
    lm.add_argument("--lexicon", dest="lexicon_path", default=None, help="lexicon file")
    lm.add_argument("--lm-weight", type=float, default=None)
    lm.add_argument("--word-score", type=float, default=None, help="per-word score (lexicon)")
    lm.add_argument("--sil-score", type=float, default=None, help="per word-boundary frame")
    lm.add_argument("--beam-threshold", type=float, default=None)
    lm.add_argument("--beam-size-token", type=int, default=None)
    p.add_argument(
        "--out-dir", type=Path, default=None, help="write here (default RUN/decode/SPLIT-METHOD)"
    )
    add_checkpoint_arguments(p)
    p.add_argument(
        "--prior-scale",
        type=float,
        default=0.0,
        metavar="S",
        help="subtract S * log CTC prior (from training posteriors, kept in RUN/ctc_prior.pt)",
    )
    add_prior_utterances_argument(p)
    add_align_argument(p)
    p.add_argument(
        "--ema",
        action="store_true",
        help="decode the checkpoint's running average of the weights (train.ema_decay)",
    )
    p.add_argument("--device", default="auto")
    add_confidence_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.config import load_run_config
    from dmao.decoding.decode_run import decode_split
    from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES
    from dmao.evaluation.wer import format_results_table

    config = load_run_config(args.run)
    lm_keys = (
        "lm_path",
        "lexicon_path",
        "lm_weight",
        "word_score",
        "sil_score",
        "beam_threshold",
        "beam_size_token",
    )
    overrides = {key: getattr(args, key) for key in lm_keys if getattr(args, key) is not None}
    if overrides and (args.method or config.decode.method) != "lm":
        raise ValueError(f"{sorted(overrides)} apply to --method lm only")
    splits = args.split or config.data.test_parts
    if args.out_dir is not None and len(splits) > 1:
        raise ValueError("--out-dir takes one split at a time")
    if args.avg is not None and args.avg < 1:
        raise ValueError(f"--avg must be at least 1, got {args.avg}")
    if args.nbest < 0:
        raise ValueError(f"--nbest must be >= 0, got {args.nbest}")
    if args.prior_utterances is not None and not args.prior_scale:
        raise ValueError("--prior-utterances applies with --prior-scale only")
    confidence = confidence_from_args(args, args.method or config.decode.method)
    rows = []
    for split in splits:
        result = decode_split(
            args.run,
            split,
            method=args.method,
            beam_size=args.beam_size,
            checkpoint=args.checkpoint,
            device=args.device,
            decode_overrides=overrides,
            out_dir=args.out_dir,
            align=args.align,
            avg=args.avg,
            prior_scale=args.prior_scale,
            prior_utterances=args.prior_utterances or DEFAULT_PRIOR_UTTERANCES,
            ema=args.ema,
            confidence=confidence,
            nbest=args.nbest,
        )
        print(f"{split} ({result.method}, {result.checkpoint}): {result.score.summary()}")
        print(f"  hypotheses: {result.hypotheses_path}  RTF {result.real_time_factor:.4f}")
        quality = result.confidence
        if quality is not None and quality.num_wrong and quality.num_wrong < quality.num_words:
            print(
                f"  word confidence ({result.confidence_measure}, in hyp.ctm): AUC-ROC "
                f"{quality.auc_roc:.3f}, NCE {quality.nce:.3f} ({quality.num_wrong} of "
                f"{quality.num_words} words wrong)"
            )
        if result.oracle is not None:
            oracle = result.oracle
            print(
                f"  {args.nbest}-best (nbest.txt, {oracle.mean_length:.1f} a list): oracle WER "
                f"{100 * oracle.wer:.2f} %"
            )
        if args.align == "sclite":
            print("  errors counted with sclite's alignment (substitution 4, insertion/deletion 3)")
        out = result.hypotheses_path.parent
        sclite_files = [p.name for p in (out / "ref.trn", out / "hyp.trn", out / "hyp.ctm")]
        print(
            f"  sclite files in {out}: {' '.join(n for n in sclite_files if (out / n).is_file())}"
        )
        rows.append(result.score.table_row(f"{args.run.name} ({result.method})", split))
    print()
    print(format_results_table(rows))
    return 0
