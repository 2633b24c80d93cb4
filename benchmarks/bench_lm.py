"""N-gram LM beam search on a trained run: tune on dev, report test.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/bench_lm.py --run exp/bench \\
        --work-dir exp/bench-lm

1. LMs from the run's training transcripts (``dmao lm build``'s code): a word 3-gram with its
   lexicon, and a character n-gram (``--char-order``) over the model's symbols.
2. The model's log-probabilities for dev and test, computed once (``--work-dir`` caches them).
3. Greedy decoding of both splits (the baseline).
4. A small grid on **dev**: lexicon decoding over ``lm_weight × word_score``, lexicon-free
   decoding over ``lm_weight × sil_score``; the best dev setting of each is then run once on
   **test**. The run folder is only read; everything is written under ``--work-dir``.

RTF = (model forward + search) wall time / audio duration, one thread.
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
from dmao.decoding.lexicon import build_lexicon, write_lexicon
from dmao.decoding.run_loading import SplitPosteriors, compute_posteriors, load_trained_model
from dmao.evaluation.wer import score_corpus
from dmao.lm.ngram import NgramCounts, estimate_kneser_ney, write_arpa
from dmao.lm.text import run_training_sentences, token_sentences


def _posteriors(model, config, tokenizer, split: str, cache: Path, ckpt: str) -> SplitPosteriors:
    if cache.is_file():
        return SplitPosteriors(**torch.load(cache, weights_only=False))
    posteriors = compute_posteriors(
        model,
        config,
        tokenizer,
        split,
        device=torch.device("cpu"),
        checkpoint=ckpt,
        progress_bar=False,
    )
    torch.save(vars(posteriors), cache)
    return posteriors


def _run(posteriors: SplitPosteriors, dec, tokenizer) -> dict:
    lm_decoder = build_lm_decoder(dec, tokenizer) if dec.method == "lm" else None
    decoded = decode_posteriors(posteriors, dec, tokenizer, lm_decoder)
    score = score_corpus(posteriors.refs, decoded.hyps)
    seconds = posteriors.forward_seconds + decoded.decode_seconds
    return {
        "wer": score.wer,
        "cer": score.cer,
        "rtf": seconds / posteriors.audio_seconds,
        "search_rtf": decoded.decode_seconds / posteriors.audio_seconds,
        "summary": score.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("exp/bench"))
    parser.add_argument("--work-dir", type=Path, default=Path("exp/bench-lm"))
    parser.add_argument("--order", type=int, default=3, help="word LM order")
    parser.add_argument("--char-order", type=int, default=6, help="character LM order")
    parser.add_argument("--beam-size", type=int, default=50, help="LM beam search")
    parser.add_argument("--prefix-beam-size", type=int, default=8, help="beam without LM")
    parser.add_argument("--beam-threshold", type=float, default=25.0)
    parser.add_argument(
        "--lm-weights", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
    )
    parser.add_argument("--word-scores", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--sil-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)

    model, config, tokenizer, ckpt = load_trained_model(args.run, "best", torch.device("cpu"))
    sentences = run_training_sentences(args.run)
    word_lm, char_lm, lexicon_path = (
        work / f"word{args.order}.arpa",
        work / f"char{args.char_order}.arpa",
        work / "lexicon.txt",
    )
    start = time.perf_counter()
    write_arpa(
        estimate_kneser_ney(NgramCounts.from_sentences([s.split() for s in sentences], args.order)),
        word_lm,
    )
    lm_seconds = time.perf_counter() - start
    write_lexicon(build_lexicon((w for s in sentences for w in s.split()), tokenizer), lexicon_path)
    write_arpa(
        estimate_kneser_ney(
            NgramCounts.from_sentences(token_sentences(sentences, tokenizer), args.char_order)
        ),
        char_lm,
    )
    print(
        f"LMs from {len(sentences)} training sentences (word {args.order}-gram in "
        f"{lm_seconds:.1f} s)"
    )

    posteriors = {
        split: _posteriors(model, config, tokenizer, split, work / f"{split}.pt", ckpt.name)
        for split in ("dev", "test")
    }
    base = replace(config.decode, beam_size=args.beam_size, beam_threshold=args.beam_threshold)
    results: dict = {"greedy": {}, "beam": {}, "grid": {"lexicon": [], "lexfree": []}, "test": {}}
    prefix_beam = replace(base, method="beam", beam_size=args.prefix_beam_size)
    for split, post in posteriors.items():
        results["greedy"][split] = _run(post, replace(base, method="greedy"), tokenizer)
        results["beam"][split] = _run(post, prefix_beam, tokenizer)
        for name in ("greedy", "beam"):
            print(f"{name} {split}: {results[name][split]['summary']}")

    systems = {
        "lexicon": (
            replace(base, method="lm", lm_path=str(word_lm), lexicon_path=str(lexicon_path)),
            "word_score",
            args.word_scores,
        ),
        "lexfree": (
            replace(base, method="lm", lm_path=str(char_lm), lexicon_path=None),
            "sil_score",
            args.sil_scores,
        ),
    }
    for name, (dec, knob, values) in systems.items():
        for weight, value in itertools.product(args.lm_weights, values):
            trial = replace(dec, lm_weight=weight, **{knob: value})
            row = {"lm_weight": weight, knob: value, **_run(posteriors["dev"], trial, tokenizer)}
            results["grid"][name].append(row)
            print(f"dev {name} lm_weight={weight} {knob}={value}: WER {100 * row['wer']:.2f} %")
        best = min(results["grid"][name], key=lambda r: r["wer"])
        trial = replace(dec, lm_weight=best["lm_weight"], **{knob: best[knob]})
        results["test"][name] = {
            "lm_weight": best["lm_weight"],
            knob: best[knob],
            "dev_wer": best["wer"],
            **_run(posteriors["test"], trial, tokenizer),
        }
        print(
            f"test {name} (best dev {knob}={best[knob]}, lm_weight={best['lm_weight']}): "
            f"{results['test'][name]['summary']}"
        )

    (work / "bench_lm.json").write_text(json.dumps(results, indent=1) + "\n")
    print()
    test = posteriors["test"]
    print(f"forward pass RTF (test): {test.forward_seconds / test.audio_seconds:.4f}")
    print("| decoder | LM | dev WER | test WER | test CER | RTF (forward + search) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label in (("greedy", "greedy"), ("beam", f"prefix beam {args.prefix_beam_size}")):
        g = results[name]
        print(
            f"| {label} | – | {100 * g['dev']['wer']:.2f} | {100 * g['test']['wer']:.2f} | "
            f"{100 * g['test']['cer']:.2f} | {g['test']['rtf']:.4f} |"
        )
    labels = {
        "lexicon": f"word {args.order}-gram + lexicon",
        "lexfree": f"char {args.char_order}-gram, lexicon-free",
    }
    for name, row in results["test"].items():
        knob = "word_score" if name == "lexicon" else "sil_score"
        print(
            f"| beam {args.beam_size}, lm_weight {row['lm_weight']}, {knob} {row[knob]} | "
            f"{labels[name]} | {100 * row['dev_wer']:.2f} | {100 * row['wer']:.2f} | "
            f"{100 * row['cer']:.2f} | {row['rtf']:.4f} |"
        )


if __name__ == "__main__":
    main()
