"""Cost of additive noise (``data.noise_dir``) in the data loader, measured in one process.

    python benchmarks/bench_noise.py --config dmao/configs/synthetic/demo.yaml --batches 20

Generates a noise folder (white and brown noise, 2 minutes each, 16 kHz; its features are cached
like any noise folder's), then collates the same training batches of the config's corpus with and
without noise (probability 1, SNR 10–20 dB), interleaved, ``--repeats`` times. Prints the median
milliseconds per batch of each, their ratio, and the audio seconds per batch.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dmao.config import load_config
from dmao.data.dataset import AsrBatchDataset, build_sampler, default_spec_augment
from dmao.data.manifests import cut_transcript
from dmao.data.noise import NoiseMixer, prepare_noise
from dmao.data.pipeline import load_parts
from dmao.data.tokenizer import train_tokenizer

RATE = 16000


def _noise_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    white = 0.05 * rng.standard_normal(120 * RATE)
    brown = np.cumsum(rng.standard_normal(120 * RATE))
    brown = 0.05 * (brown - brown.mean()) / brown.std()
    folder = root / "noise"
    folder.mkdir(parents=True)
    sf.write(folder / "white.wav", white.astype(np.float32), RATE)
    sf.write(folder / "brown.wav", brown.astype(np.float32), RATE)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_config(args.config, args.overrides)
    cuts = load_parts(config.data, config.data.train_parts).to_eager()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config.data.noise_dir = str(_noise_folder(tmp))
        config.data.manifest_dir = str(tmp / "manifests")
        noise = prepare_noise(config.data, num_jobs=1)
        mixer = NoiseMixer(noise, prob=1.0, snr=(10.0, 20.0))
        tokenizer = train_tokenizer("char", [cut_transcript(c) for c in cuts], tmp / "tok")
        sampler = build_sampler(
            cuts,
            max_batch_seconds=config.data.max_batch_seconds,
            shuffle=True,
            seed=0,
            num_buckets=config.data.num_buckets,
            drop_last=True,
        )
        batches = list(itertools.islice(iter(sampler), args.batches))
        datasets = {
            "clean": AsrBatchDataset(tokenizer, spec_augment=default_spec_augment()),
            "noise": AsrBatchDataset(tokenizer, spec_augment=default_spec_augment(), noise=mixer),
        }
        times: dict[str, list[float]] = {name: [] for name in datasets}
        for _ in range(args.repeats):
            for name, dataset in datasets.items():
                start = time.perf_counter()
                for batch in batches:
                    dataset[batch]
                times[name].append(1000 * (time.perf_counter() - start) / len(batches))
    clean, noisy = statistics.median(times["clean"]), statistics.median(times["noise"])
    seconds = statistics.mean(sum(c.duration for c in batch) for batch in batches)
    print(f"{len(batches)} training batches of {seconds:.0f} s of audio on average, 1 thread")
    print("| loader | ms per batch (median of repeats) |")
    print("|---|---:|")
    print(f"| clean (SpecAugment) | {clean:.1f} |")
    print(f"| + noise (p = 1, 10–20 dB) | {noisy:.1f} |")
    print(f"\nnoise / clean: {noisy / clean:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
