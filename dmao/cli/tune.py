"""``dmao tune RUN --split dev --lm-weight 0.5 1 1.5 --word-score -1 0 1 [--test test]`` —
choose decode settings on dev from one forward pass, then decode test once with them."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dmao.cli.run_args import (
    add_align_argument,
    add_checkpoint_arguments,
    add_prior_utterances_argument,
)
from dmao.config.schema import DECODE_METHODS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="choose LM weight, word score, prior scale... on a dev split (one forward pass), "
        "then decode test with the best",
    )
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--split", default=None, help="split to tune on (default: the first dev part)")
    p.add_argument(
        "--test",
        nargs="+",
        default=None,
        metavar="SPLIT",
        help="then decode these splits once with the best setting (as `dmao decode` does; the "
        "tuned split is decoded with it too)",
    )
    p.add_argument("--method", choices=DECODE_METHODS, default=None)
    p.add_argument("--beam-size", type=int, default=None)
    grid = p.add_argument_group(
        "the grid (every combination of the values; docs/decoding.md, 'Tuning on dev')"
    )
    grid.add_argument("--lm-weight", type=float, nargs="+", default=None, metavar="W")
    grid.add_argument(
        "--word-score", type=float, nargs="+", default=None, metavar="S", help="lexicon only"
    )
    grid.add_argument("--sil-score", type=float, nargs="+", default=None, metavar="S")
    grid.add_argument(
        "--prior-scale",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="CTC prior scales (any method; 0: no prior)",
    )
    lm = p.add_argument_group("LM search (--method lm), fixed for every point")
    lm.add_argument("--lm", dest="lm_path", default=None, help="n-gram LM (ARPA or KenLM binary)")
    lm.add_argument("--lexicon", dest="lexicon_path", default=None, help="lexicon file")
    lm.add_argument("--beam-threshold", type=float, default=None)
    lm.add_argument("--beam-size-token", type=int, default=None)
    add_checkpoint_arguments(p)
    p.add_argument("--ema", action="store_true", help="the running average of the weights")
    add_prior_utterances_argument(p)
    add_align_argument(p)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="default RUN/tune/SPLIT-METHOD (grid.csv, best.json)",
    )
    p.add_argument("--show", type=int, default=10, help="rows of the table printed (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.config import load_run_config
    from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES
    from dmao.decoding.tune import FIXED_LM_SETTINGS, TUNABLE, TuneResult, tune_split
    from dmao.evaluation.wer import format_results_table

    config = load_run_config(args.run)
    split = args.split or config.data.dev_parts[0]
    if args.avg is not None and args.avg < 1:
        raise ValueError(f"--avg must be at least 1, got {args.avg}")
    grid = {key: getattr(args, key) for key in TUNABLE if getattr(args, key) is not None}
    fixed = {k: getattr(args, k) for k in FIXED_LM_SETTINGS if getattr(args, k) is not None}
    if fixed and (args.method or config.decode.method) != "lm":
        raise ValueError(f"{sorted(fixed)} apply to --method lm only")
    prior_utterances = args.prior_utterances or DEFAULT_PRIOR_UTTERANCES
    points = math.prod(len(values) for values in grid.values())
    sizes = " × ".join(f"{key} {len(values)}" for key, values in grid.items())
    print(f"tuning on {split}: {points} points ({sizes})")

    def show_grid(result: TuneResult) -> None:
        out_dir = args.out_dir or args.run / "tune" / f"{split}-{result.method}"
        result.write(out_dir)
        print(f"\n{split} ({result.method}, {result.checkpoint}), best first:\n")
        print(result.table(args.show))
        flags = " ".join(result.decode_flags())
        wer = 100 * result.best.wer
        print(f"\nbest on {split}: {flags} (WER {wer:.2f} %); grid: {out_dir / 'grid.csv'}")

    result = tune_split(
        args.run,
        split,
        grid,
        method=args.method,
        beam_size=args.beam_size,
        checkpoint=args.checkpoint,
        device=args.device,
        decode_overrides=fixed,
        avg=args.avg,
        ema=args.ema,
        prior_utterances=prior_utterances,
        align=args.align,
        decode_best=True,
        test=args.test or (),
        on_grid=show_grid,
    )
    flags = " ".join(result.decode_flags())
    # The tuned split was decoded with the best setting, as `dmao decode` would: its result.json
    # is what `dmao export --lm-from / --confidence-from` take.
    rows = []
    for decoded in result.decodes:
        print(f"{decoded.split} ({decoded.method}, {flags}): {decoded.score.summary()}")
        print(f"  decode: {decoded.hypotheses_path.parent}")
        label = f"{args.run.name} ({decoded.method}, {flags})"
        rows.append(decoded.score.table_row(label, decoded.split))
    dev_decode = result.decodes[0].hypotheses_path.parent
    if not args.test:
        print(f"test with it: dmao decode {args.run} --split TEST {flags} (and the same LM)")
    if result.fixed["method"] == "lm":
        print(f"an export with it: dmao export {args.run} --out EXPORT --lm-from {dev_decode}")
    print()
    print(format_results_table(rows))
    return 0
