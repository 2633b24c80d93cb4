"""Word confidence measures compared on a trained run (BENCHMARKS.md, "Word confidence").

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_confidence.py \\
        --run exp/prior2100/run --lm exp/prior2100/lm/word3.arpa \\
        --lexicon exp/prior2100/lm/lexicon.txt \\
        --prior-scale 0.7 --lm-weight 1.5 --word-score 0 \\
        --out benchmarks/results/confidence/confidence.json

The run's posteriors of dev and test are computed once; each is decoded greedily and, with
``--lm``, by the LM beam search (the CTC prior divided out for the search only). Then every
frame measure (:mod:`dmao.decoding.confidence`: Tsallis entropy for several α, Gibbs entropy,
max-prob) and every word aggregation (min, mean, prod) scores the same words, computed by
:func:`dmao.decoding.timing.word_timings` from the search's frame path, against the reference:
AUC-ROC and NCE (:mod:`dmao.evaluation.confidence`). The measure with the best dev AUC-ROC is
named per search; its test numbers are the ones to quote. Each measure is also calibrated
(Platt scaling fitted on the dev words, :func:`dmao.evaluation.confidence.fit_calibration`) and
its test NCE after calibration given. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from dmao.decoding.confidence import AGGREGATIONS, ConfidenceMeasure, frame_confidence
from dmao.decoding.decode_run import build_lm_decoder, decode_posteriors
from dmao.decoding.lm_decoder import token_symbols, word_boundary_symbol
from dmao.decoding.prior import ctc_prior_for_run
from dmao.decoding.run_loading import compute_posteriors, load_trained_model
from dmao.decoding.timing import word_timings
from dmao.evaluation.confidence import fit_calibration, labelled_words, nce, quality_of
from dmao.evaluation.wer import score_corpus

SPLITS = ("dev", "test")
FRAME_MEASURES = [
    ConfidenceMeasure(alpha=0.25),
    ConfidenceMeasure(alpha=0.33),
    ConfidenceMeasure(alpha=0.5),
    ConfidenceMeasure(alpha=1.0),
    ConfidenceMeasure(measure="max_prob"),
]


def measures() -> list[ConfidenceMeasure]:
    """Every frame measure with every aggregation."""
    return [replace(m, aggregation=a) for m in FRAME_MEASURES for a in AGGREGATIONS]


def score_measures(
    posteriors, decoded, tokenizer, refs: list[str]
) -> tuple[list[dict], dict[str, tuple[list[float], list[bool]]]]:
    """AUC-ROC and NCE of every measure on the words of ``decoded`` (same words for all), and
    per measure every word's confidence and whether it is right."""
    symbols = token_symbols(tokenizer)
    boundary = word_boundary_symbol(tokenizer)
    rows = []
    labelled = {}
    for measure in measures():
        words = []
        for log_probs, path in zip(posteriors.log_probs, decoded.paths, strict=True):
            conf = frame_confidence(log_probs, measure).tolist()
            words.append(
                word_timings(
                    path,
                    symbols,
                    tokenizer.blank_id,
                    boundary,
                    frame_confidence=conf,
                    aggregation=measure.aggregation,
                )
            )
        labelled[measure.label] = labelled_words(
            refs,
            [[w.word for w in ws] for ws in words],
            [[w.confidence for w in ws] for ws in words],
        )
        rows.append({"measure": measure.label, **quality_of(*labelled[measure.label]).as_dict()})
    return rows, labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--lm", default=None, help="word n-gram (dmao lm build); none: greedy only")
    parser.add_argument("--lexicon", default=None)
    parser.add_argument("--prior-scale", type=float, default=0.0)
    parser.add_argument("--lm-weight", type=float, default=1.5)
    parser.add_argument("--word-score", type=float, default=0.0)
    parser.add_argument("--beam-size", type=int, default=50)
    parser.add_argument("--utterances", type=int, default=None, help="first N of each split")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    device = torch.device("cpu")
    model, config, tokenizer, path = load_trained_model(args.run, args.checkpoint, device)
    log_prior = None
    if args.prior_scale:
        prior = ctc_prior_for_run(
            args.run, model, config, tokenizer, path, device=device, progress_bar=False
        )
        log_prior = prior.log_prior
    searches = {"greedy": replace(config.decode, method="greedy")}
    lm_decoder = None
    if args.lm:
        searches["lm"] = replace(
            config.decode,
            method="lm",
            lm_path=args.lm,
            lexicon_path=args.lexicon,
            lm_weight=args.lm_weight,
            word_score=args.word_score,
            beam_size=args.beam_size,
        )
        lm_decoder = build_lm_decoder(searches["lm"], tokenizer)

    settings = {k: str(v) for k, v in vars(args).items()}
    results: dict = {"run": str(args.run), "checkpoint": path.name, "settings": settings}
    labelled: dict[str, dict] = {}
    for split in SPLITS:
        start = time.perf_counter()
        posteriors = compute_posteriors(
            model, config, tokenizer, split, device=device, checkpoint=path.name,
            progress_bar=False,
        )  # fmt: skip
        if args.utterances:
            n = args.utterances
            posteriors = replace(
                posteriors,
                log_probs=posteriors.log_probs[:n],
                refs=posteriors.refs[:n],
                ids=posteriors.ids[:n],
            )
        for name, dec in searches.items():
            scale = args.prior_scale if name == "lm" else 0.0
            decoded = decode_posteriors(
                posteriors,
                dec,
                tokenizer,
                lm_decoder if name == "lm" else None,
                log_prior=log_prior if scale else None,
                prior_scale=scale,
            )
            score = score_corpus(posteriors.refs, decoded.hyps)
            refs = [u.ref for u in score.utterances]
            rows, labelled[f"{split}/{name}"] = score_measures(posteriors, decoded, tokenizer, refs)
            results[f"{split}/{name}"] = {
                "wer": score.wer,
                "summary": score.summary(),
                "measures": rows,
            }
        print(f"{split}: {time.perf_counter() - start:.0f} s", flush=True)

    for name in searches:  # Platt scaling fitted on dev, NCE on test
        for row in results[f"test/{name}"]["measures"]:
            row["calibration"] = row["nce_calibrated"] = None
            try:
                calibration = fit_calibration(*labelled[f"dev/{name}"][row["measure"]])
            except ValueError:  # dev words all right or all wrong
                continue
            confidences, correct = labelled[f"test/{name}"][row["measure"]]
            row["calibration"] = {"a": calibration.a, "b": calibration.b}
            calibrated = nce([calibration(c) for c in confidences], correct)
            row["nce_calibrated"] = None if math.isnan(calibrated) else calibrated
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results, list(searches)))


def table(results: dict, searches: list[str]) -> str:
    """Markdown: one row per search and measure, dev and test AUC-ROC / NCE; the measure with
    the best dev AUC-ROC per search marked."""
    lines = [
        "| search | measure | dev AUC-ROC | dev NCE | test AUC-ROC | test NCE |"
        " test NCE, calibrated on dev | test mean conf. correct / wrong |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in searches:
        dev = results[f"dev/{name}"]["measures"]
        test = {row["measure"]: row for row in results[f"test/{name}"]["measures"]}
        best = max(dev, key=lambda row: row["auc_roc"] or 0.0)["measure"]
        for row in dev:
            t = test[row["measure"]]
            mark = " **(best on dev)**" if row["measure"] == best else ""
            lines.append(
                f"| {name} | {row['measure']}{mark} | {_f(row['auc_roc'])} | {_f(row['nce'])} | "
                f"{_f(t['auc_roc'])} | {_f(t['nce'])} | {_f(t['nce_calibrated'])} | "
                f"{_f(t['mean_correct'])} / {_f(t['mean_wrong'])} |"
            )
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
