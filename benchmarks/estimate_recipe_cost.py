"""Estimate GPU training time and memory of the paper recipes from CPU measurements.

No GPU was available when the recipes were written, so docs/corpora.md gives ESTIMATES. This
script measures, on CPU, for the Conformer-CTC of each shipped recipe (d = 256 / 384 / 512,
12 layers) on a batch of ``--utterances`` utterances of ``--seconds`` seconds:

- parameters (exact) and optimizer-state bytes (AdamW fp32: weights + grads + 2 moments);
- FLOPs of one forward + backward pass (``torch.utils.flop_counter`` with SDPA on its math
  backend so attention is counted: matmuls and convolutions, which dominate; elementwise work is
  not counted);
- bytes of the tensors autograd saves for backward (``saved_tensors_hooks``), the bulk of the
  activation memory, per second of audio in the batch;
- CPU seconds per step (for reference only).

From these it derives, per recipe, GPU seconds per step and hours for the whole run assuming a
sustained ``--gpu-tflops`` on the counted FLOPs (default 30: ~45 % of an H100's 67 TFLOP/s FP32
peak, the recipes' default precision; BF16 autocast would allow 2-4x more), and, as an upper
bound, twice that (the uncounted memory-bound work — norms, activations, softmax, SpecAugment —
and data loading); peak memory = optimizer state + saved activations of ``max_batch_seconds`` of
audio, × ``--overhead`` (allocator fragmentation, workspaces, padding within batches).

Usage: python benchmarks/estimate_recipe_cost.py [--out benchmarks/results/recipe_cost.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dmao.config import load_config
from dmao.training.model_setup import build_model_from_config

RECIPES = Path(__file__).resolve().parent.parent / "dmao" / "configs"
SIZES = (256, 384, 512)
CORPUS_HOURS = {"librispeech": 960.0, "tedlium2": 207.0, "switchboard": 260.0}
"""Training hours as prepared (LibriSpeech 960 h; TED-LIUM 2 train 207 h; Switchboard: an
ASSUMED ~260 h of transcribed segments after the dev hold-out and without silence/noise-only
segments — not measured, no copy was at hand; correct ``train.max_steps`` once prepared)."""
EPOCHS = {"librispeech": 30, "tedlium2": 50, "switchboard": 50}


@functools.cache
def measure(d_model: int, vocab_size: int, utterances: int, seconds: float) -> dict:
    config = load_config(RECIPES / "librispeech" / f"conformer_{d_model}.yaml")
    torch.manual_seed(0)
    model = build_model_from_config(config.model, vocab_size=vocab_size + 1)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    frames = round(seconds * 100)  # 10 ms frames
    features = torch.randn(utterances, frames, 80)
    feature_lens = torch.full((utterances,), frames, dtype=torch.int64)
    targets = torch.randint(1, vocab_size + 1, (utterances, round(seconds * 4)))
    target_lens = torch.full((utterances,), targets.shape[1], dtype=torch.int64)

    def step() -> None:
        log_probs, out_lens = model(features, feature_lens)
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, out_lens, target_lens, zero_infinity=True
        )
        loss.backward()

    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    model.zero_grad(set_to_none=True)
    # On CPU the fused SDPA kernel has no FLOP formula (attention would count 0, see
    # bench_flops.py): count with the math backend, whose matmuls are counted.
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        step()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    step()
    cpu_s = time.perf_counter() - start
    audio_s = utterances * seconds
    return {
        "d_model": d_model,
        "params": params,
        "optimizer_state_bytes": params * 4 * 4,
        "flops_per_audio_second": counter.get_total_flops() / audio_s,
        "saved_bytes_per_audio_second": sum(saved.values()) / audio_s,
        "cpu_seconds_per_audio_second": cpu_s / audio_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0, help="LibriSpeech mean: 12.3 s")
    parser.add_argument("--gpu-tflops", type=float, default=30.0)
    parser.add_argument("--overhead", type=float, default=1.3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for corpus, hours in CORPUS_HOURS.items():
        for d_model in SIZES:
            config = load_config(RECIPES / corpus / f"conformer_{d_model}.yaml")
            m = measure(d_model, config.tokenizer.vocab_size, args.utterances, args.seconds)
            batch_s = config.data.max_batch_seconds
            # The bucketing sampler fills batches to ~90 % of max_batch_seconds (BENCHMARKS.md,
            # pipeline throughput: 94.9 s of audio/s at 0.47 s/step = 44.6 s per 50 s batch), and
            # 8 kHz features have the same 100 frames/s, so FLOPs per audio second do not depend
            # on the sampling rate.
            audio_per_step = 0.9 * batch_s
            step_s = m["flops_per_audio_second"] * audio_per_step / (args.gpu_tflops * 1e12)
            total_h = hours * 3600 * EPOCHS[corpus] / audio_per_step * step_s / 3600
            memory = m["optimizer_state_bytes"] + m["saved_bytes_per_audio_second"] * batch_s
            rows.append(
                {
                    "corpus": corpus,
                    **m,
                    "max_batch_seconds": batch_s,
                    "max_steps": config.train.max_steps,
                    "epochs": EPOCHS[corpus],
                    "est_gpu_seconds_per_step": step_s,
                    "est_gpu_hours": total_h,
                    "est_gpu_hours_upper": 2 * total_h,
                    "est_peak_memory_gib": memory * args.overhead / 2**30,
                }
            )
            r = rows[-1]
            print(
                f"{corpus:12s} d={d_model} params={r['params'] / 1e6:5.1f}M "
                f"GFLOP/audio-s={r['flops_per_audio_second'] / 1e9:6.1f} "
                f"act MiB/audio-s={r['saved_bytes_per_audio_second'] / 2**20:6.1f} "
                f"step~{step_s:5.2f}s run~{total_h:5.1f}-{2 * total_h:5.1f}h "
                f"mem~{r['est_peak_memory_gib']:5.1f}GiB "
                f"(cpu {r['cpu_seconds_per_audio_second']:.2f} s/audio-s)",
                flush=True,
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
