"""Batch shapes of one training epoch: lhotse's duration-bounded batches vs static shapes
(``data.pad_to_bucket``), per number of buckets (issue 17, item 3; docs/performance.md).

For each sampler this walks epoch 0 of the recipe's filtered training cuts (no features are read)
and reports batches, distinct ``(B, T)`` input shapes, padding efficiency (real ÷ padded feature
frames) and real audio per batch. ``T`` is what the collater gives the model: the longest
utterance's frames, or with static shapes the bucket edge's (``BucketShapes.padded_frames``).

    python benchmarks/batch_shapes.py --config dmao/configs/synthetic/small.yaml \\
        --buckets 10 30 [key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from lhotse import CutSet

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dmao.config import load_config  # noqa: E402
from dmao.data.dataset import build_sampler  # noqa: E402
from dmao.data.features import FRAME_SHIFT_S  # noqa: E402
from dmao.data.static_shapes import StaticShapeSampler, bucket_shapes  # noqa: E402
from dmao.training.data_setup import prepare_data  # noqa: E402
from dmao.training.distributed import DistributedContext  # noqa: E402


def epoch_stats(sampler, padded_frames) -> dict[str, float]:
    """Batches, distinct shapes, padding efficiency and mean real audio per batch of epoch 0."""
    sampler.set_epoch(0)
    shapes, real, padded, seconds = set(), 0, 0, []
    for batch in sampler:
        frames = [c.num_frames for c in batch]
        T = padded_frames(batch, max(frames))
        shapes.add((len(frames), T))
        real += sum(frames)
        padded += len(frames) * T
        seconds.append(sum(c.duration for c in batch))
    return {
        "batches": len(seconds),
        "shapes": len(shapes),
        "padding_efficiency": real / max(padded, 1),
        "audio_s_per_batch": statistics.fmean(seconds) if seconds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--buckets", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--run-dir", type=Path, default=Path("exp/batch_shapes"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    dist = DistributedContext.from_env("cpu")
    cuts = prepare_data(config, args.run_dir, dist).train
    cuts = CutSet.from_cuts(list(cuts))
    S, seed = config.data.max_batch_seconds, config.train.seed
    hours = sum(c.duration for c in cuts) / 3600
    print(f"{len(cuts)} training cuts, {hours:.2f} h; {S:g} s per batch")
    print(
        "| batches | buckets | batches/epoch | distinct (B, T) | padding efficiency "
        "| audio s/batch |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for k in args.buckets:
        dynamic = build_sampler(
            cuts, max_batch_seconds=S, shuffle=True, seed=seed, num_buckets=k, drop_last=True
        )
        shapes = bucket_shapes(cuts, num_buckets=k, max_batch_seconds=S, frame_shift=FRAME_SHIFT_S)
        static = StaticShapeSampler(cuts, shapes, shuffle=True, seed=seed)
        rows = (
            ("duration-bounded", epoch_stats(dynamic, lambda b, t: t)),
            (
                "static (pad_to_bucket)",
                epoch_stats(
                    static,
                    lambda b, t, s=shapes: s.padded_frames(max(c.duration for c in b), t),
                ),
            ),
        )
        for name, r in rows:
            print(
                f"| {name} | {k} | {r['batches']} | {r['shapes']} | "
                f"{r['padding_efficiency']:.3f} | {r['audio_s_per_batch']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
