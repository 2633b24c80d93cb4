"""Cost of preparing reverberated copies (``data.rir_dir``), measured in one process.

    python benchmarks/bench_reverb.py --config dmao/configs/synthetic/demo.yaml --utterances 200

Takes the first ``--utterances`` training cuts of the config's corpus and builds one reverberated
copy of each with features, through :func:`dmao.data.reverb.reverberate_parts`, twice per repeat
into fresh folders: with a folder of room impulse responses (synthetic rooms, T60 0.3–0.9 s, 16
kHz) and with a folder holding one unit impulse (the same reading, feature extraction and
writing, a trivial convolution). Prints the median seconds of each, per hour of audio, and their
ratio: what the convolution adds to the features' own cost. A one-time cost: the copies are
cached, training reads their features like any cut's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dmao.config import load_config
from dmao.data.pipeline import load_parts
from dmao.data.reverb import reverberate_parts

RATE = 16000


def _rooms(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i, t60 in enumerate((0.3, 0.5, 0.7, 0.9)):
        t = np.arange(int(t60 * RATE)) / RATE
        rir = rng.standard_normal(t.size) * np.exp(-t / (t60 / 7))
        rir[0] = 3.0
        sf.write(folder / f"room{i}.wav", (0.3 * rir).astype(np.float32), RATE)
    return folder


def _impulse(folder: Path) -> Path:
    folder.mkdir(parents=True)
    impulse = np.zeros(RATE // 10, dtype=np.float32)
    impulse[0] = 0.5
    sf.write(folder / "impulse.wav", impulse, RATE)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_config(args.config, args.overrides)
    cuts = load_parts(config.data, config.data.train_parts).subset(first=args.utterances)
    hours = sum(c.duration for c in cuts) / 3600
    times: dict[str, list[float]] = {"rooms": [], "impulse": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {"rooms": _rooms(tmp / "rooms"), "impulse": _impulse(tmp / "impulse")}
        for repeat in range(args.repeats):
            for name, folder in folders.items():
                start = time.perf_counter()
                reverberate_parts(tmp / f"m{repeat}_{name}", {"train": cuts}, folder, num_jobs=1)
                times[name].append(time.perf_counter() - start)
    rooms, impulse = (statistics.median(times[k]) for k in ("rooms", "impulse"))
    print(f"{len(cuts)} utterances, {hours * 60:.1f} min of audio; medians of {args.repeats}")
    print("| RIR folder | s | s per hour of audio |")
    print("|---|---:|---:|")
    print(f"| rooms (T60 0.3–0.9 s) | {rooms:.1f} | {rooms / hours:.0f} |")
    print(f"| unit impulse | {impulse:.1f} | {impulse / hours:.0f} |")
    print(f"ratio rooms / impulse: {rooms / impulse:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
