"""Cost of additive noise (``data.noise_dir``) and of features computed on the fly
(``data.on_the_fly_features``) in the data loader, measured in one process.

    python benchmarks/bench_loader.py --config dmao/configs/synthetic/demo.yaml --batches 20

Generates a noise folder (white and brown noise, 2 minutes each, 16 kHz; prepared both with
cached features and without), then collates the same training batches of the config's corpus
four ways, interleaved, ``--repeats`` times: cached features, cached features + noise (mixed into
the fbank energies), features on the fly, on the fly + noise (mixed into the audio); noise with
probability 1, SNR 10–20 dB; SpecAugment in all. Prints the median milliseconds per batch of
each, the ratios to the cached clean collation, and the audio seconds per batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet

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
        otf = dataclasses.replace(config.data, on_the_fly_features=True)
        mixers = {
            on_the_fly: NoiseMixer(prepare_noise(data, num_jobs=1), prob=1.0, snr=(10.0, 20.0))
            for on_the_fly, data in ((False, config.data), (True, otf))
        }
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
        featureless = [CutSet.from_cuts(c.drop_features() for c in b) for b in batches]
        spec = default_spec_augment
        ways = {  # name: (dataset, its batches)
            "cached features": (AsrBatchDataset(tokenizer, spec_augment=spec()), batches),
            "cached + noise (fbank energies)": (
                AsrBatchDataset(tokenizer, spec_augment=spec(), noise=mixers[False]),
                batches,
            ),
            "on the fly": (AsrBatchDataset(tokenizer, spec_augment=spec()), featureless),
            "on the fly + noise (audio)": (
                AsrBatchDataset(tokenizer, spec_augment=spec(), noise=mixers[True]),
                featureless,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, (dataset, sampled) in ways.items():
                start = time.perf_counter()
                for batch in sampled:
                    dataset[batch]
                times[name].append(1000 * (time.perf_counter() - start) / len(sampled))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["cached features"]
    seconds = statistics.mean(sum(c.duration for c in batch) for batch in batches)
    print(f"{len(batches)} training batches of {seconds:.0f} s of audio on average, 1 thread")
    print("| loader | ms per batch (median of repeats) | × cached |")
    print("|---|---:|---:|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
