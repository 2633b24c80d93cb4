"""Static batch shapes: a fixed number of utterances per duration bucket, padded to the bucket's
upper edge (``data.pad_to_bucket``; NeMo's "2-D bucketing").

With lhotse's duration-bounded batches nearly every step has its own ``(B, T)``: 83 distinct shapes
in the 216 batches of one epoch of the small recipe (docs/performance.md). ``torch.compile`` then
recompiles or falls back to dynamic shapes, and CUDA graphs record one graph per shape. Here
bucket ``k`` (durations in ``(edge[k-1], edge[k]]``) always yields batches of
``batch_sizes[k] = max(1, ⌊S / edge[k]⌋)`` utterances (lhotse's
:class:`FixedBucketBatchSizeConstraint`), and the collater pads their features to
``frames(edge[k])`` frames: an epoch has one shape per bucket, and every batch holds at most ``S``
seconds of padded audio, so memory and compute per step are the same in every bucket. The price is
padding: real ÷ padded frames 0.910 with 10 buckets and 0.970 with 30 on the built-in corpus,
against 0.934 and 0.975 for duration-bounded batches (docs/performance.md).

Decisions:
- The edges are lhotse's duration-bucket estimate (equal amounts of audio per bucket) with the
  longest training utterance as the last edge, computed from the training cuts each time: the
  same cuts give the same edges, so a resumed run gets the same shapes (``data.num_buckets`` and
  ``data.max_batch_seconds`` are in ``RESUME_MUST_MATCH``).
- Only full batches: training drops an epoch's incomplete last batch of each bucket anyway.
- Batch order is not the duration-bounded sampler's (other batch sizes), so a run with static
  shapes is not step-for-step comparable with one without; both are deterministic per seed.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.dataset.sampling.dynamic_bucketing import (
    FixedBucketBatchSizeConstraint,
    estimate_duration_buckets,
)
from lhotse.utils import compute_num_frames

__all__ = [
    "BucketShapes",
    "StaticShapeSampler",
    "bucket_shapes",
]


class BucketShapes:
    """The static shapes of an epoch: per bucket, its upper edge, batch size and padded frames.

    Args:
        edges: upper duration edge of each bucket, seconds, ascending; the last one is the
            longest utterance.
        batch_sizes: utterances per batch of each bucket.
        frame_shift: seconds per feature frame.
        sampling_rate: of the audio (lhotse's frame count rounds with it).
    """

    def __init__(
        self, edges: list[float], batch_sizes: list[int], frame_shift: float, sampling_rate: int
    ) -> None:
        if len(edges) != len(batch_sizes) or not edges:
            raise ValueError(f"{len(edges)} bucket edges but {len(batch_sizes)} batch sizes")
        if list(edges) != sorted(edges):
            raise ValueError(f"bucket edges must ascend, got {edges}")
        self.edges = [float(e) for e in edges]
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.frames = [compute_num_frames(e, frame_shift, sampling_rate) for e in self.edges]

    def bucket_of(self, duration: float) -> int:
        """Index of the bucket holding an utterance of ``duration`` seconds (lhotse's rule:
        the first bucket whose edge is not shorter)."""
        k = bisect.bisect_left(self.edges, duration)
        if k == len(self.edges):
            raise ValueError(
                f"an utterance of {duration:.3f} s is longer than the last bucket edge "
                f"{self.edges[-1]:.3f} s (the longest training utterance)"
            )
        return k

    def padded_frames(self, max_duration: float, max_frames: int) -> int:
        """Frames a batch whose longest utterance lasts ``max_duration`` s and has
        ``max_frames`` feature frames is padded to: its bucket's edge (never fewer than it has)."""
        return max(self.frames[self.bucket_of(max_duration)], max_frames)

    def shapes(self) -> list[tuple[int, int]]:
        """``(B, T)`` of every bucket."""
        return list(zip(self.batch_sizes, self.frames, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "batch_sizes": self.batch_sizes, "frames": self.frames}


def bucket_shapes(
    cuts: CutSet,
    *,
    num_buckets: int,
    max_batch_seconds: float,
    frame_shift: float,
) -> BucketShapes:
    """The buckets of ``cuts`` (training cuts, filtered): lhotse's duration-bucket estimate
    (equal audio per bucket) closed by the longest utterance, each holding
    ``max(1, ⌊max_batch_seconds / edge⌋)`` utterances.

    Raises:
        ValueError: no cuts, or fewer than one bucket.
    """
    if num_buckets < 1:
        raise ValueError(f"data.num_buckets must be >= 1, got {num_buckets}")
    durations = [c.duration for c in cuts]
    if not durations:
        raise ValueError("bucket_shapes: no training cuts")
    inner = (
        list(estimate_duration_buckets(cuts, num_buckets=num_buckets)) if num_buckets > 1 else []
    )
    longest = max(durations)
    edges = sorted({float(e) for e in inner if e < longest} | {longest})
    batch_sizes = [max(1, math.floor(max_batch_seconds / e)) for e in edges]
    return BucketShapes(edges, batch_sizes, frame_shift, cuts[0].sampling_rate)


class StaticShapeSampler(DynamicBucketingSampler):
    """lhotse's bucketing sampler with a fixed batch size per bucket (full batches only).

    lhotse refuses ``state_dict()`` for a sampler with a custom constraint, because it cannot save
    the constraint. This one saves the buckets beside the usual state and checks them on restore;
    lhotse's restore replays the epoch's batches with the constraint the sampler was built with, so
    exact resumption works as for :func:`~dmao.data.dataset.build_sampler`'s samplers (tested).

    Args:
        cuts: training cuts (filtered).
        shapes: from :func:`bucket_shapes` on the same cuts.
        shuffle, seed, world_size, rank: as for ``DynamicBucketingSampler``.
    """

    def __init__(
        self,
        cuts: CutSet,
        shapes: BucketShapes,
        *,
        shuffle: bool,
        seed: int,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        from dmao.data.dataset import _eager_cutsets_on_purpose  # (it imports this module)

        self.shapes = shapes
        constraint = FixedBucketBatchSizeConstraint(
            max_seq_len_buckets=list(shapes.edges), batch_sizes=list(shapes.batch_sizes)
        )
        with _eager_cutsets_on_purpose():
            super().__init__(
                cuts,
                constraint=constraint,
                duration_bins=list(shapes.edges),
                shuffle=shuffle,
                drop_last=True,
                seed=seed,
                world_size=world_size,
                rank=rank,
            )

    def state_dict(self) -> dict[str, Any]:
        constraint, self.constraint = self.constraint, None
        try:
            state = super().state_dict()
        finally:
            self.constraint = constraint
        state["static_shapes"] = self.shapes.to_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.pop("static_shapes", None)
        if saved is not None and saved != self.shapes.to_dict():
            raise ValueError(
                f"the saved sampler state has bucket shapes {saved}, this sampler "
                f"{self.shapes.to_dict()}: the training cuts or data settings changed"
            )
        super().load_state_dict(state)  # replays the epoch's batches with this constraint
