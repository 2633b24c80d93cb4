"""``dmao export RUN --out DIR [--checkpoint best|last|PATH] [--avg N] [--int8]
[--lm FILE [--lexicon FILE] | --lm-from RESULT] [--prior-scale S] [--confidence-from RESULT]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmao.cli.lm_args import add_lm_arguments, lm_search_settings, lm_settings_given
from dmao.cli.run_args import add_checkpoint_arguments, add_prior_utterances_argument

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trained model as a self-contained folder (safetensors + ONNX)"
    )
    p.add_argument("run", type=Path, help="run folder written by `dmao train`")
    p.add_argument("--out", type=Path, required=True, help="export folder to create")
    add_checkpoint_arguments(p)
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx: int8 weights (ONNX Runtime dynamic quantisation), "
        "~3.5x smaller and faster on CPU; `dmao transcribe --backend onnx-int8`",
    )
    p.add_argument(
        "--ema",
        action="store_true",
        help="export the checkpoint's running average of the weights (train.ema_decay)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing export at --out")
    lm = p.add_argument_group(
        "n-gram LM, stored in the export for `dmao transcribe --method lm` (docs/export.md); "
        "settings not given are the run's decode.* settings, as `dmao decode --method lm` uses"
    )
    lm.add_argument(
        "--lm-from",
        type=Path,
        default=None,
        metavar="RESULT",
        help="the LM, lexicon and settings of a `dmao decode --method lm` result (its "
        "result.json or folder), e.g. the dev decode whose weights you tuned",
    )
    add_lm_arguments(lm)
    lm.add_argument("--beam-size", type=int, default=None, help="LM beam search width")
    prior = p.add_argument_group(
        "CTC prior, stored in the export for `dmao transcribe` (as `dmao decode --prior-scale`)"
    )
    prior.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        metavar="S",
        help="store the checkpoint's CTC prior (estimated from the run's training data, or "
        "RUN/ctc_prior.pt) with default scale S; with --lm-from: default the result's scale",
    )
    add_prior_utterances_argument(prior)
    p.add_argument(
        "--confidence-from",
        type=Path,
        default=None,
        metavar="RESULT",
        help="calibrate `dmao transcribe`'s word confidences as fitted on a `dmao decode` "
        "result (its result.json or folder; a dev decode with the search you will use); "
        "default: --lm-from's, where it has one",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES
    from dmao.export import export_run, load_exported
    from dmao.export.confidence import calibration_from_decode
    from dmao.export.prior import prior_scale_from_decode

    if args.avg is not None and args.avg < 1:
        raise ValueError(f"--avg must be at least 1, got {args.avg}")
    if args.avg is not None and args.ema:
        raise ValueError("--ema and --avg both average weights: choose one")
    language_model = _language_model(args)  # first: it says what is wrong with --lm-from
    prior_scale = args.prior_scale
    if prior_scale is None and args.lm_from is not None:  # the scale the LM was tuned with
        prior_scale = prior_scale_from_decode(args.lm_from)
    if args.prior_utterances is not None and not prior_scale:
        raise ValueError("--prior-utterances applies with --prior-scale only")
    calibration = None
    if args.confidence_from is not None:
        calibration = calibration_from_decode(args.confidence_from)
        if calibration is None:
            raise ValueError(
                f"{args.confidence_from}: the result has no word-confidence calibration "
                "(decoded by an older dmao, or all its words right or all wrong): decode again"
            )
    elif args.lm_from is not None:
        calibration = calibration_from_decode(args.lm_from)
    start = time.perf_counter()
    checkpoint = args.checkpoint or "best"
    if args.avg is not None:  # as `dmao decode --avg`: ends at --checkpoint, by default the last
        from dmao.training.averaging import averaged_checkpoint

        checkpoint = str(averaged_checkpoint(args.run, args.avg, args.checkpoint or "last"))
    out = export_run(
        args.run,
        args.out,
        checkpoint=checkpoint,
        onnx=not args.no_onnx,
        int8=args.int8,
        language_model=language_model,
        prior_scale=prior_scale or 0.0,
        prior_utterances=args.prior_utterances or DEFAULT_PRIOR_UTTERANCES,
        confidence_calibration=calibration,
        ema=args.ema,
        overwrite=args.force,
        verbose=args.verbose,  # the ONNX exporter's own log lines only with `dmao -v export`
        progress_bar=True,
    )
    seconds = time.perf_counter() - start
    manifest = load_exported(out).manifest
    source = manifest["source"]
    print(
        f"exported {args.run} ({source['checkpoint']}, step {source['step']}) to {out} "
        f"in {seconds:.1f} s"
    )
    for name, entry in manifest["files"].items():
        print(f"  {name:<28} {entry['bytes']:>12,} bytes")
    for key, describe in _RECORD_LINES.items():
        if manifest.get(key) is not None:
            print(f"  {describe(manifest[key])}")
    return 0


def _language_model(args: argparse.Namespace):
    """The LM that ``--lm`` / ``--lm-from`` and the search settings describe, or None."""
    from dmao.config import load_run_config
    from dmao.decoding.decode_run import lm_decoder_options
    from dmao.export.language_model import LanguageModel, language_model_from_decode

    settings = lm_search_settings(args)
    if args.lm_from is not None:
        if args.lm_path is not None or args.lexicon_path is not None:
            raise ValueError("--lm-from gives the LM and lexicon files: drop --lm and --lexicon")
        return language_model_from_decode(args.lm_from).with_options(**settings)
    if args.lm_path is None:
        given = lm_settings_given(args) + (["--beam-size"] if "beam_size" in settings else [])
        if given:
            raise ValueError(f"{', '.join(given)} describe an LM: give it with --lm or --lm-from")
        return None
    # What `dmao decode RUN --method lm --lm FILE` would use.
    options = lm_decoder_options(load_run_config(args.run).decode)
    lexicon = Path(args.lexicon_path) if args.lexicon_path is not None else None
    return LanguageModel(Path(args.lm_path), lexicon, options).with_options(**settings)


# One line for each optional record of the manifest that an export has.
_RECORD_LINES = {
    "onnx": lambda onnx: f"ONNX vs PyTorch: max |Δ log-prob| {onnx['max_abs_diff']:.2e}",
    "onnx_int8": lambda int8: (
        f"int8 vs float32 ONNX: {int8['quantized_products']} matrix products in int8, max "
        f"|Δ log-prob| {int8['max_abs_diff']:.2e} on random input (the WER cost on real audio: "
        "benchmarks/bench_export.py)"
    ),
    "lm": lambda lm: (
        f"n-gram LM: {lm['source']['lm']} ("
        + (f"{lm['order']}-gram, " if lm["order"] else "")
        + f"{lm['mode']}); "
        + ", ".join(f"{key} {value}" for key, value in lm["options"].items())
        + "; `dmao transcribe` decodes with it unless --method greedy|beam"
    ),
    "prior": lambda prior: (
        f"CTC prior: scale {prior['scale']:g}, from {prior['num_utterances']:,} training "
        f"utterances ({prior['num_frames']:,} frames) of {prior['checkpoint']}; `dmao "
        "transcribe` subtracts it unless --prior-scale 0"
    ),
    "confidence": lambda fit: (
        f"word confidence: calibrated as fitted on {fit['split']} ({fit['source']}, "
        f"{fit['num_words']:,} words) for {fit['search']} search, {fit['measure']}; `dmao "
        "transcribe` applies it with that search and measure unless --raw-confidence"
    ),
}
