"""Static batch shapes (data.pad_to_bucket): fixed batch sizes per bucket, features padded to the
bucket's edge, exact resumption, and a training run whose compiled forward never recompiles per
length."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from lhotse import CutSet
from lhotse.utils import LOG_EPSILON

from dmao.data.dataset import AsrBatchDataset, build_dataloader, sampler_state_for_resume
from dmao.data.features import FRAME_SHIFT_S
from dmao.data.static_shapes import StaticShapeSampler, bucket_shapes

SECONDS = 6.0


def _sampler(cuts: CutSet, num_buckets: int = 3, seed: int = 7) -> StaticShapeSampler:
    shapes = bucket_shapes(
        cuts, num_buckets=num_buckets, max_batch_seconds=SECONDS, frame_shift=FRAME_SHIFT_S
    )
    return StaticShapeSampler(cuts, shapes, shuffle=True, seed=seed)


def test_buckets_cover_every_cut_and_hold_at_most_the_batch_seconds(train_cuts) -> None:
    shapes = _sampler(train_cuts).shapes
    durations = [c.duration for c in train_cuts]
    assert shapes.edges == sorted(shapes.edges) and len(shapes.edges) == 3
    assert shapes.edges[-1] == max(durations)
    for edge, size in zip(shapes.edges, shapes.batch_sizes, strict=True):
        assert size == max(1, math.floor(SECONDS / edge))
        assert size * edge <= SECONDS or size == 1  # padded audio per batch within the budget
    for d in durations:
        k = shapes.bucket_of(d)
        assert d <= shapes.edges[k] and (k == 0 or d > shapes.edges[k - 1])
    with pytest.raises(ValueError, match="longer than the last bucket edge"):
        shapes.bucket_of(max(durations) + 0.5)


def test_every_batch_has_its_bucket_shape(train_cuts, tiny_char_tokenizer) -> None:
    sampler = _sampler(train_cuts)
    shapes = sampler.shapes
    loader = build_dataloader(train_cuts, tiny_char_tokenizer, sampler=sampler, train=False)
    plain = AsrBatchDataset(tiny_char_tokenizer)
    by_id = {c.id: c for c in train_cuts}
    seen = set()
    batches = 0
    for batch in loader:
        cuts = CutSet.from_cuts(by_id[i] for i in batch["cut_ids"])
        k = shapes.bucket_of(max(c.duration for c in cuts))
        assert all(shapes.bucket_of(c.duration) == k for c in cuts)  # one bucket per batch
        features, lens = batch["features"], batch["feature_lens"]
        assert tuple(features.shape[:2]) == shapes.shapes()[k]
        # The valid frames are those of the unpadded collation; the rest is lhotse's padding.
        unpadded = plain[cuts]
        T = unpadded["features"].shape[1]
        assert torch.equal(features[:, :T], unpadded["features"])
        assert torch.equal(lens, unpadded["feature_lens"])
        assert bool((features[:, T:] == LOG_EPSILON).all())
        seen.update(batch["cut_ids"])
        batches += 1
    assert batches >= 3
    # Full batches only: what is left over in a bucket is fewer cuts than one batch.
    left = [c for c in train_cuts if c.id not in seen]
    for k, size in enumerate(shapes.batch_sizes):
        assert sum(shapes.bucket_of(c.duration) == k for c in left) < size


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_mid_epoch_gives_the_uninterrupted_batches(
    train_cuts, tiny_char_tokenizer, workers: int
) -> None:
    def ids(loader) -> list[list[str]]:
        return [b["cut_ids"] for b in loader]

    epoch, k = 1, 2
    sampler = _sampler(train_cuts)
    sampler.set_epoch(epoch)
    reference = ids(build_dataloader(train_cuts, tiny_char_tokenizer, sampler=sampler, train=True))
    assert len(reference) > k + 1

    sampler = _sampler(train_cuts)
    sampler.set_epoch(epoch)
    loader = build_dataloader(
        train_cuts, tiny_char_tokenizer, sampler=sampler, train=True, num_workers=workers
    )
    iterator = iter(loader)
    first = [next(iterator)["cut_ids"] for _ in range(k)]
    state = copy.deepcopy(sampler_state_for_resume(sampler, batches_consumed=k))
    del iterator, loader

    restored = _sampler(train_cuts)
    restored.load_state_dict(copy.deepcopy(state))
    restored.set_epoch(epoch)
    rest = ids(build_dataloader(train_cuts, tiny_char_tokenizer, sampler=restored, train=True))
    assert first + rest == reference

    # Other buckets (here: other cuts) than the checkpoint's are refused, not silently replayed.
    other = _sampler(train_cuts, num_buckets=2)
    with pytest.raises(ValueError, match="bucket shapes"):
        other.load_state_dict(copy.deepcopy(state))


def test_static_compile_needs_static_shapes() -> None:
    from dmao.training.compilation import check_compile_config

    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match=re.escape("data.pad_to_bucket=true")):
        check_compile_config("static", pad_to_bucket=False, device=cpu)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_compile_config("cudagraphs", pad_to_bucket=True, device=cpu)
    with pytest.raises(ValueError, match=re.escape("train.compile must be one of")):
        check_compile_config("fast", pad_to_bucket=True, device=cpu)
    check_compile_config("static", pad_to_bucket=True, device=cpu)
    check_compile_config("dynamic", pad_to_bucket=False, device=cpu)


def test_a_checkpoint_from_before_the_setting_resumes_with_its_default() -> None:
    from dmao.config import ExperimentConfig, config_from_dict, config_to_dict
    from dmao.training.checkpoint import CheckpointError
    from dmao.training.data_setup import check_resume_compatible

    old = config_to_dict(ExperimentConfig())
    del old["data"]["pad_to_bucket"]  # written by a version without static shapes
    # What load_state compares: the checkpoint's config read through the dataclasses.
    saved = config_to_dict(config_from_dict(old, source="ckpt.pt"))
    check_resume_compatible(saved, config_to_dict(ExperimentConfig()), "ckpt.pt")
    current = ExperimentConfig()
    current.data.pad_to_bucket = True
    with pytest.raises(CheckpointError, match=re.escape("data.pad_to_bucket: checkpoint False")):
        check_resume_compatible(saved, config_to_dict(current), "ckpt.pt")
