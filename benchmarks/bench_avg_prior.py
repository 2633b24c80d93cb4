"""Checkpoint averaging and the CTC prior on a trained run (BENCHMARKS.md).

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/bench_avg_prior.py --run exp/avg600 \\
        --lm exp/avg600-lm/word3.arpa --lexicon exp/avg600-lm/lexicon.txt

1. **Averaging**: greedy dev/test WER of the last checkpoint and of the averages of the newest
   N step checkpoints (``--avg``, :func:`dmao.training.averaging.averaged_checkpoint`; the run
   must keep enough of them, e.g. ``train.keep_last_checkpoints=10``), and of ``best.pt``.
2. **CTC prior**: with the model of ``--prior-checkpoint`` (default: the last), the prior of
   :func:`dmao.decoding.prior.ctc_prior_for_run` (stored in the run), and LM decoding (word
   n-gram + lexicon, ``dmao lm build``) for every prior scale: once with the fixed LM setting
   ``--lm-weight``/``--word-score``, and with the best ``lm_weight × word_score`` of a small dev
   grid (then run once on test). Greedy decoding with each scale is reported too.

Posteriors are computed once per model and split; everything is decoded from them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from dmao.decoding.decode_run import build_lm_decoder, decode_posteriors
from dmao.decoding.lm_decoder import token_symbols
from dmao.decoding.prior import ctc_prior_for_run
from dmao.decoding.run_loading import compute_posteriors, load_trained_model
from dmao.evaluation.wer import score_corpus
from dmao.training.averaging import averaged_checkpoint

SPLITS = ("dev", "test")


def _posteriors(run: Path, checkpoint: str) -> tuple[dict, tuple]:
    device = torch.device("cpu")
    model, config, tokenizer, path = load_trained_model(run, checkpoint, device)
    posts = {
        split: compute_posteriors(
            model, config, tokenizer, split, device=device, checkpoint=path.name, progress_bar=False
        )
        for split in SPLITS
    }
    return posts, (model, config, tokenizer, path)


def _score(posteriors, dec, tokenizer, lm_decoder=None, log_prior=None, scale=0.0) -> dict:
    decoded = decode_posteriors(
        posteriors, dec, tokenizer, lm_decoder, log_prior=log_prior, prior_scale=scale
    )
    score = score_corpus(posteriors.refs, decoded.hyps)
    return {"wer": score.wer, "cer": score.cer, "summary": score.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--avg", type=int, nargs="*", default=[2, 3, 5, 10])
    parser.add_argument("--lm", required=True, help="word n-gram (dmao lm build)")
    parser.add_argument("--lexicon", required=True)
    parser.add_argument("--prior-checkpoint", default="last")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    parser.add_argument("--lm-weight", type=float, default=1.5)
    parser.add_argument("--word-score", type=float, default=2.0)
    parser.add_argument("--lm-weights", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--word-scores", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--beam-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default RUN/...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    results: dict = {"averaging": [], "prior": []}

    # 1. Averaging, greedy.
    models = [("last", "last"), ("best.pt", "best")]
    for n in args.avg:
        models.append((f"avg {n}", str(averaged_checkpoint(args.run, n))))
    prior_inputs = None
    for label, checkpoint in models:
        posts, loaded = _posteriors(args.run, checkpoint)
        tokenizer, dec = loaded[2], replace(loaded[1].decode, method="greedy")
        row = {"model": label, "checkpoint": loaded[3].name}
        for split in SPLITS:
            row[split] = _score(posts[split], dec, tokenizer)
        results["averaging"].append(row)
        print(
            f"{label:>8} ({row['checkpoint']}): "
            + "  ".join(
                f"{s} WER {100 * row[s]['wer']:.2f} CER {100 * row[s]['cer']:.2f}" for s in SPLITS
            )
        )
        if checkpoint == args.prior_checkpoint:
            prior_inputs = (posts, loaded)
    if prior_inputs is None:
        prior_inputs = _posteriors(args.run, args.prior_checkpoint)

    # 2. CTC prior with the LM.
    posts, (model, config, tokenizer, path) = prior_inputs
    start = time.perf_counter()
    prior = ctc_prior_for_run(
        args.run, model, config, tokenizer, path, device=torch.device("cpu"), progress_bar=False
    )
    results["prior_estimate"] = {
        "checkpoint": prior.checkpoint,
        "num_utterances": prior.num_utterances,
        "num_frames": prior.num_frames,
        "seconds": time.perf_counter() - start,
        "prior": {
            sym: round(float(p), 5)
            for sym, p in zip(token_symbols(tokenizer), prior.log_prior.exp(), strict=True)
        },
    }
    print(
        f"prior from {prior.num_utterances} utterances, {prior.num_frames} frames "
        f"({results['prior_estimate']['seconds']:.1f} s)"
    )
    base = replace(
        config.decode,
        method="lm",
        lm_path=args.lm,
        lexicon_path=args.lexicon,
        beam_size=args.beam_size,
    )
    for scale in args.scales:
        row = {"scale": scale}
        kw = {"log_prior": prior.log_prior, "scale": scale}
        greedy = replace(base, method="greedy")
        row["greedy"] = {s: _score(posts[s], greedy, tokenizer, **kw) for s in SPLITS}
        fixed = replace(base, lm_weight=args.lm_weight, word_score=args.word_score)
        row["lm_fixed"] = {
            s: _score(posts[s], fixed, tokenizer, build_lm_decoder(fixed, tokenizer), **kw)
            for s in SPLITS
        }
        grid = []
        for weight, word_score in itertools.product(args.lm_weights, args.word_scores):
            trial = replace(base, lm_weight=weight, word_score=word_score)
            dev = _score(posts["dev"], trial, tokenizer, build_lm_decoder(trial, tokenizer), **kw)
            grid.append({"lm_weight": weight, "word_score": word_score, "dev_wer": dev["wer"]})
        best = min(grid, key=lambda r: r["dev_wer"])
        trial = replace(base, lm_weight=best["lm_weight"], word_score=best["word_score"])
        row["lm_tuned"] = {
            **best,
            "test": _score(
                posts["test"], trial, tokenizer, build_lm_decoder(trial, tokenizer), **kw
            ),
        }
        row["grid"] = grid
        results["prior"].append(row)
        print(
            f"S={scale}: greedy dev {100 * row['greedy']['dev']['wer']:.2f} test "
            f"{100 * row['greedy']['test']['wer']:.2f} | LM fixed dev "
            f"{100 * row['lm_fixed']['dev']['wer']:.2f} test "
            f"{100 * row['lm_fixed']['test']['wer']:.2f} | LM tuned (lm_weight "
            f"{best['lm_weight']}, word_score {best['word_score']}) dev "
            f"{100 * best['dev_wer']:.2f} test {100 * row['lm_tuned']['test']['wer']:.2f}"
        )
    out = args.out or args.run / "bench_avg_prior.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
