"""Throughput of the pipeline pieces on this machine, measured in one process.

    python benchmarks/bench_pipeline.py --config dmao/configs/synthetic/demo.yaml [--run exp/demo]

Prints (medians over repeats):
- fbank extraction speed: seconds of audio per wall second (× real time), lhotse Fbank 80-dim;
- training throughput: utterances/s and audio seconds/s of full optimizer steps (forward, CTC,
  backward, clip, AdamW) on real batches of the config's training data;
- decoding real-time factor of greedy and prefix beam search (model forward included) on the test
  split, with the trained model of ``--run`` when given (a random model otherwise: beam search then
  sees flat posteriors and is slower than with a trained model).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dmao.config import load_config
from dmao.data.dataset import build_dataloader, build_eval_sampler, build_sampler
from dmao.data.features import fbank_extractor
from dmao.data.filtering import filter_cuts
from dmao.data.manifests import cut_transcript
from dmao.data.pipeline import load_parts
from dmao.data.tokenizer import train_tokenizer
from dmao.decoding.ctc import beam_search_batch, greedy_decode
from dmao.models.frontend import subsampled_length
from dmao.training.model_setup import build_model_from_config


def bench_fbank(cuts, repeats: int) -> float:
    extractor = fbank_extractor(16000)
    audio = [c.load_audio()[0] for c in cuts]
    seconds = sum(len(a) for a in audio) / 16000
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for a in audio:
            extractor.extract(a, 16000)
        speeds.append(seconds / (time.perf_counter() - start))
    return statistics.median(speeds)


def bench_training(config, cuts, tokenizer, steps: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = build_model_from_config(config.model, tokenizer.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sampler = build_sampler(
        cuts,
        max_batch_seconds=config.data.max_batch_seconds,
        shuffle=True,
        seed=0,
        num_buckets=config.data.num_buckets,
        drop_last=True,
    )
    loader = build_dataloader(cuts, tokenizer, sampler=sampler, train=True)
    step_times, utts, audio = [], [], []
    for i, batch in enumerate(loader):
        if i > steps:
            break
        start = time.perf_counter()
        log_probs, out_lens = model(batch["features"], batch["feature_lens"])
        loss = (
            F.ctc_loss(
                log_probs.transpose(0, 1),
                batch["targets"],
                out_lens,
                batch["target_lens"],
                reduction="sum",
            )
            / batch["target_lens"].sum()
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if i == 0:
            continue  # warm-up step (allocator, thread pools)
        step_times.append(time.perf_counter() - start)
        utts.append(len(batch["cut_ids"]) / step_times[-1])
        audio.append(float(batch["feature_lens"].sum()) * 0.01 / step_times[-1])
    return statistics.median(step_times), statistics.median(utts), statistics.median(audio)


@torch.no_grad()
def bench_decoding(model, cuts, tokenizer, beam_size: int, repeats: int) -> dict[str, float]:
    model.eval()
    cuts = cuts.sort_by_duration()
    sampler = build_eval_sampler(cuts, max_batch_seconds=300)
    batches = list(
        build_dataloader(cuts, tokenizer, sampler=sampler, train=False, with_targets=False)
    )
    audio_s = sum(float(b["feature_lens"].sum()) * 0.01 for b in batches)
    result = {}
    for name in ("greedy", f"beam{beam_size}"):
        rtfs = []
        for _ in range(repeats):
            start = time.perf_counter()
            for b in batches:
                log_probs, lens = model(b["features"], b["feature_lens"])
                if name == "greedy":
                    greedy_decode(log_probs, lens)
                else:
                    beam_search_batch(log_probs, lens, beam_size)
            rtfs.append((time.perf_counter() - start) / audio_s)
        result[name] = statistics.median(rtfs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("dmao/configs/synthetic/demo.yaml"))
    parser.add_argument("--run", type=Path, default=None, help="trained run for decoding")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--fbank-utterances", type=int, default=100)
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    config = load_config(args.config, args.overrides)

    test = load_parts(config.data, config.data.test_parts).to_eager()
    fb = bench_fbank(test.subset(first=min(args.fbank_utterances, len(test))), args.repeats)
    print(
        f"fbank extraction: {fb:.0f} x real time (median of {args.repeats}, "
        f"{torch.get_num_threads()} threads)"
    )

    train = load_parts(config.data, config.data.train_parts).to_eager()
    if args.run is not None:
        from dmao.decoding.run_loading import load_trained_model

        model, _, tokenizer, _ = load_trained_model(args.run, "last", torch.device("cpu"))
    else:
        texts = [cut_transcript(c) for c in train]
        vocab_size = config.tokenizer.vocab_size if config.tokenizer.kind == "bpe" else None
        tokenizer = train_tokenizer(
            config.tokenizer.kind, texts, Path("/tmp/dmao_bench_tokenizer"), vocab_size=vocab_size
        )
        model = None

    train, _ = filter_cuts(train, tokenizer, subsampled_length=subsampled_length)
    step, utts, audio = bench_training(config, train.to_eager(), tokenizer, args.train_steps)
    print(
        f"training: {step:.2f} s/step, {utts:.1f} utterances/s, {audio:.1f} s audio/s "
        f"(median of {args.train_steps} steps, max_batch_seconds={config.data.max_batch_seconds})"
    )

    if model is None:
        model = build_model_from_config(config.model, tokenizer.vocab_size)
    rtf = bench_decoding(model, test, tokenizer, args.beam_size, args.repeats)
    for name, value in rtf.items():
        print(f"decoding {name}: RTF {value:.4f} ({1 / value:.0f} x real time)")


if __name__ == "__main__":
    main()
