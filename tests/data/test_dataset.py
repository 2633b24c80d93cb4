from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.utils import LOG_EPSILON

from dmao.data.dataset import (
    AsrBatchDataset,
    build_dataloader,
    build_sampler,
    default_spec_augment,
    sampler_state_for_resume,
)
from dmao.data.features import fbank_extractor
from dmao.data.manifests import cut_transcript


def _sampler(cuts: CutSet, **overrides):
    args = dict(max_batch_seconds=6.0, shuffle=True, seed=7, num_buckets=2, drop_last=False)
    args.update(overrides)
    return build_sampler(cuts, **args)


def _batch_ids(loader) -> list[list[str]]:
    return [batch["cut_ids"] for batch in loader]


# --- batch contents ------------------------------------------------------------------------------


def test_eval_batches_hold_features_targets_and_texts(train_cuts, tiny_char_tokenizer) -> None:
    sampler = _sampler(train_cuts, shuffle=False)
    loader = build_dataloader(train_cuts, tiny_char_tokenizer, sampler=sampler, train=False)
    seen = []
    for batch in loader:
        features, feature_lens = batch["features"], batch["feature_lens"]
        targets, target_lens = batch["targets"], batch["target_lens"]
        B = len(batch["cut_ids"])
        assert features.dtype == torch.float32 and features.shape[0] == B
        assert features.shape[2] == 80
        assert feature_lens.dtype == torch.int64 and feature_lens.shape == (B,)
        assert targets.dtype == torch.int64 and target_lens.dtype == torch.int64
        assert features.shape[1] == int(feature_lens.max())
        assert targets.shape == (B, int(target_lens.max()))
        for i, cut_id in enumerate(batch["cut_ids"]):
            cut = train_cuts[cut_id]
            n, u = int(feature_lens[i]), int(target_lens[i])
            assert n == cut.num_frames
            # Eval: the features are exactly the cached ones; padding is lhotse's silence value.
            np.testing.assert_array_equal(features[i, :n].numpy(), cut.load_features())
            assert torch.all(features[i, n:] == LOG_EPSILON)
            assert batch["texts"][i] == cut_transcript(cut) == cut.supervisions[0].text
            assert tiny_char_tokenizer.decode(targets[i, :u].tolist()) == batch["texts"][i]
            assert torch.all(targets[i, u:] == 0)
        seen += batch["cut_ids"]
    assert sorted(seen) == sorted(train_cuts.ids)


def test_on_the_fly_features_match_cached_ones(train_cuts, tiny_char_tokenizer) -> None:
    cuts = CutSet.from_cuts(list(train_cuts)[:4])
    dataset = AsrBatchDataset(tiny_char_tokenizer)
    cached = dataset[cuts]
    fresh = dataset[cuts.drop_features()]
    assert torch.equal(fresh["feature_lens"], cached["feature_lens"])
    assert fresh["features"].shape == cached["features"].shape
    for i, n in enumerate(cached["feature_lens"].tolist()):
        # Equal up to the lilcom compression of the cache.
        torch.testing.assert_close(
            fresh["features"][i, :n], cached["features"][i, :n], atol=0.02, rtol=0
        )
    assert torch.equal(fresh["targets"], cached["targets"])
    # ...and exactly what decoding-time extraction of the same audio gives.
    extractor = fbank_extractor(16000)
    for i, cut in enumerate(cuts):
        n = cut.num_frames
        expected = extractor.extract(cut.load_audio()[0], 16000)
        np.testing.assert_array_equal(fresh["features"][i, :n].numpy(), expected)


def test_spec_augment_only_when_training(train_cuts, tiny_char_tokenizer) -> None:
    cuts = CutSet.from_cuts(list(train_cuts)[:6])
    plain = AsrBatchDataset(tiny_char_tokenizer)[cuts]
    augmented = AsrBatchDataset(
        tiny_char_tokenizer, spec_augment=default_spec_augment(), augment_seed=3
    )[cuts]
    assert augmented["features"].shape == plain["features"].shape
    assert torch.equal(augmented["targets"], plain["targets"])
    changed = 0
    for i, n in enumerate(plain["feature_lens"].tolist()):
        changed += int(not torch.equal(augmented["features"][i, :n], plain["features"][i, :n]))
        # Masks stay inside the utterance: the padding is untouched.
        assert torch.equal(augmented["features"][i, n:], plain["features"][i, n:])
    assert changed >= 3  # p=0.9 per utterance; 6 utterances


def test_spec_augment_masks_depend_on_seed_and_batch_only(train_cuts, tiny_char_tokenizer):
    """Masks are a function of (augment_seed, cut ids): the same in any process or worker,
    whatever the global random state, which they leave untouched (dropout draws from it)."""
    cuts = CutSet.from_cuts(list(train_cuts)[:6])

    def augment(seed: int, batch: CutSet = cuts) -> torch.Tensor:
        dataset = AsrBatchDataset(
            tiny_char_tokenizer, spec_augment=default_spec_augment(), augment_seed=seed
        )
        return dataset[batch]["features"]

    torch.manual_seed(0)
    random.seed(0)
    first = augment(3)
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert torch.equal(augment(3), first)
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert not torch.equal(augment(4), first)  # another seed, other masks
    other_order = CutSet.from_cuts(list(cuts)[::-1])
    assert not torch.equal(augment(3, other_order).flip(0), first)  # another batch, other masks


def test_default_spec_augment_settings() -> None:
    spec = default_spec_augment()
    assert spec.time_warp_factor is None
    assert (spec.num_feature_masks, spec.features_mask_size) == (2, 27)
    assert (spec.num_frame_masks, spec.frames_mask_size) == (10, 100)
    assert spec.max_frames_mask_fraction == 0.15


def test_dataset_errors(tiny_corpus, tiny_cuts, tiny_char_tokenizer) -> None:
    dataset = AsrBatchDataset(tiny_char_tokenizer)
    unknown = CutSet.from_cuts([tiny_cuts["dev"][tiny_corpus.unknown_char_id]])
    with pytest.raises(ValueError, match=rf"{tiny_corpus.unknown_char_id}.*filter_cuts"):
        dataset[unknown]
    cuts = list(tiny_cuts["test"])[:2]
    mixed = CutSet.from_cuts([cuts[0], cuts[1].drop_features()])
    with pytest.raises(ValueError, match="mixes cuts with and without cached features"):
        dataset[mixed]
    with pytest.raises(ValueError, match="empty batch"):
        dataset[CutSet.from_cuts([])]


def test_build_dataloader_checks_the_sampler_matches(train_cuts, tiny_cuts, tiny_char_tokenizer):
    sampler = _sampler(train_cuts)
    with pytest.raises(ValueError, match="sampler was not built on these cuts"):
        build_dataloader(tiny_cuts["train"], tiny_char_tokenizer, sampler=sampler, train=True)


# --- sampler: order, epochs, ranks ---------------------------------------------------------------


def test_sampler_covers_every_cut_once_per_epoch(train_cuts) -> None:
    sampler = _sampler(train_cuts)
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = [list(b.ids) for b in sampler]
        flat = [cid for b in batches for cid in b]
        assert sorted(flat) == sorted(train_cuts.ids)
        for b in batches:
            assert len(b) == 1 or sum(train_cuts[c].duration for c in b) <= 6.0
        orders.append(flat)
    assert orders[0] != orders[1]  # a new shuffle each epoch
    again = _sampler(train_cuts)
    again.set_epoch(1)
    assert [cid for b in again for cid in b.ids] == orders[1]  # ...determined by seed and epoch


def test_sampler_splits_batches_across_ranks(train_cuts) -> None:
    per_rank = []
    for rank in range(2):
        sampler = _sampler(train_cuts, world_size=2, rank=rank, drop_last=True)
        per_rank.append([list(b.ids) for b in sampler])
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    ids0 = {c for b in per_rank[0] for c in b}
    ids1 = {c for b in per_rank[1] for c in b}
    assert not ids0 & ids1


# --- sampler: exact mid-epoch resumption ---------------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 1])
@pytest.mark.parametrize("k", [1, 4])
def test_resume_mid_epoch_gives_the_uninterrupted_batches(
    train_cuts, tiny_char_tokenizer, epoch: int, k: int
) -> None:
    sampler = _sampler(train_cuts)
    sampler.set_epoch(epoch)
    reference = _batch_ids(
        build_dataloader(train_cuts, tiny_char_tokenizer, sampler=sampler, train=True)
    )
    assert len(reference) > k + 1

    sampler = _sampler(train_cuts)
    sampler.set_epoch(epoch)
    loader = build_dataloader(train_cuts, tiny_char_tokenizer, sampler=sampler, train=True)
    first = []
    for batch in loader:
        first.append(batch["cut_ids"])
        if len(first) == k:
            break
    state = copy.deepcopy(sampler.state_dict())  # what a checkpoint would hold

    restored = _sampler(train_cuts)
    restored.load_state_dict(copy.deepcopy(state))
    restored.set_epoch(epoch)  # a training loop re-entering the saved epoch keeps the position
    rest = _batch_ids(
        build_dataloader(train_cuts, tiny_char_tokenizer, sampler=restored, train=True)
    )
    assert first + rest == reference

    # The restored sampler goes on into the next epoch like the uninterrupted one.
    restored.set_epoch(epoch + 1)
    sampler = _sampler(train_cuts)
    sampler.set_epoch(epoch + 1)
    assert [list(b.ids) for b in restored] == [list(b.ids) for b in sampler]


def test_resume_with_workers_needs_the_consumed_count(train_cuts, tiny_char_tokenizer) -> None:
    k = 2
    reference = _batch_ids(
        build_dataloader(train_cuts, tiny_char_tokenizer, sampler=_sampler(train_cuts), train=False)
    )
    sampler = _sampler(train_cuts)
    loader = build_dataloader(
        train_cuts, tiny_char_tokenizer, sampler=sampler, train=False, num_workers=1
    )
    first = []
    iterator = iter(loader)
    for _ in range(k):
        first.append(next(iterator)["cut_ids"])
    # The worker prefetched: the sampler itself is ahead of the training loop.
    plain = sampler.state_dict()
    assert plain["diagnostics"]["stats_per_epoch"][0]["kept_batches"] > k
    state = sampler_state_for_resume(sampler, batches_consumed=k)
    del iterator, loader

    restored = _sampler(train_cuts)
    restored.load_state_dict(state)
    rest = _batch_ids(
        build_dataloader(
            train_cuts, tiny_char_tokenizer, sampler=restored, train=False, num_workers=1
        )
    )
    assert first + rest == reference


def test_resume_on_one_rank_of_two(train_cuts) -> None:
    def rank1():
        return _sampler(train_cuts, world_size=2, rank=1)

    reference = [list(b.ids) for b in rank1()]
    sampler = rank1()
    iterator = iter(sampler)
    first = [list(next(iterator).ids) for _ in range(2)]
    restored = rank1()
    restored.load_state_dict(sampler.state_dict())
    assert first + [list(b.ids) for b in restored] == reference


def test_sampler_state_for_resume_checks_the_count(train_cuts) -> None:
    sampler = _sampler(train_cuts)
    iterator = iter(sampler)
    next(iterator)
    next(iterator)
    assert sampler_state_for_resume(sampler, batches_consumed=2) == sampler.state_dict()
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
            sampler_state_for_resume(sampler, batches_consumed=bad)


def test_single_bucket_stream_does_not_depend_on_world_size(train_cuts) -> None:
    """With one bucket, rank r of N gets batches r, r+N, ... of the one-process stream, so N
    processes and one process accumulating N micro-batches see the same global batches (what
    the distributed equivalence test relies on); with several buckets lhotse keeps ranks on one
    bucket per step and the streams differ."""
    for epoch in (0, 1):
        single = _sampler(train_cuts, num_buckets=1, drop_last=True, max_batch_seconds=4.0)
        single.set_epoch(epoch)
        stream = [list(b.ids) for b in single]
        shards = []
        for rank in range(2):
            sampler = _sampler(
                train_cuts,
                num_buckets=1,
                drop_last=True,
                max_batch_seconds=4.0,
                world_size=2,
                rank=rank,
            )
            sampler.set_epoch(epoch)
            shards.append([list(b.ids) for b in sampler])
        assert len(shards[0]) == len(shards[1]) == len(stream) // 2 > 2
        interleaved = [b for pair in zip(*shards, strict=True) for b in pair]
        assert interleaved == stream[: len(interleaved)]


# --- the SpecAugment policy of a run (data.spec_augment_*) -------------------------------------


def _first_batch(train_cuts, tokenizer, *overrides: str) -> torch.Tensor:
    from conftest import tiny_train_overrides

    from dmao.config import load_config
    from dmao.training.data_setup import build_train_loader
    from dmao.training.distributed import DistributedContext

    config = load_config(None, [*tiny_train_overrides("unused", "unused"), *overrides])
    _, loader = build_train_loader(config, train_cuts, tokenizer,
                                   DistributedContext.from_env("cpu"), noise=None)  # fmt: skip
    return next(iter(loader))["features"]


def test_a_run_trains_with_its_configured_spec_augment(train_cuts, tiny_char_tokenizer):
    from dmao.config import load_config
    from dmao.data.dataset import spec_augment_from

    plain = _first_batch(train_cuts, tiny_char_tokenizer, "data.spec_augment=false")
    default = _first_batch(train_cuts, tiny_char_tokenizer)
    assert not torch.equal(default, plain)
    # the default policy is the one the project always trained with
    policy = default_spec_augment()
    assert (policy.num_feature_masks, policy.features_mask_size, policy.num_frame_masks,
            policy.frames_mask_size, policy.max_frames_mask_fraction, policy.p,
            policy.time_warp_factor) == (2, 27, 10, 100, 0.15, 0.9, None)  # fmt: skip
    # every setting reaches lhotse's SpecAugment
    names = ("freq_masks=3", "freq_width=15", "time_masks=4", "time_width=40",
             "max_time_fraction=0.2", "time_warp=80", "prob=1.0")  # fmt: skip
    config = load_config(None, [f"data.spec_augment_{n}" for n in names])
    policy = spec_augment_from(config.data)
    assert (policy.num_feature_masks, policy.features_mask_size, policy.num_frame_masks,
            policy.frames_mask_size, policy.max_frames_mask_fraction, policy.time_warp_factor,
            policy.p) == (3, 15, 4, 40, 0.2, 80, 1.0)  # fmt: skip
    # applied to no utterance: the features as they are
    assert torch.equal(_first_batch(train_cuts, tiny_char_tokenizer, "data.spec_augment_prob=0"),
                       plain)  # fmt: skip

    def masked_bins(features: torch.Tensor) -> int:  # (B, T, F): bins constant over all frames
        return int((features.std(dim=1) == 0).sum())

    # more and wider frequency masks hide more of the spectrum
    wide = _first_batch(train_cuts, tiny_char_tokenizer, "data.spec_augment_freq_masks=4",
                        "data.spec_augment_freq_width=40", "data.spec_augment_prob=1")  # fmt: skip
    narrow = _first_batch(train_cuts, tiny_char_tokenizer, "data.spec_augment_freq_masks=0",
                          "data.spec_augment_prob=1")  # fmt: skip
    assert masked_bins(wide) > masked_bins(default) > masked_bins(narrow) == masked_bins(plain) == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.spec_augment_prob=1.5", r"data.spec_augment_prob: expected a share in \[0, 1\]"),
        ("data.spec_augment_prob=-0.5", r"data.spec_augment_prob: expected a share in \[0, 1\]"),
        ("data.spec_augment_max_time_fraction=0", r"fraction: expected a share in \(0, 1\]"),
        ("data.spec_augment_freq_masks=-1", r"data.spec_augment_freq_masks: expected a whole"),
        ("data.spec_augment_time_masks=0", r"masks: expected a whole number >= 1, got 0 \(data"),
        ("data.spec_augment_time_warp=2.5", r"'data.spec_augment_time_warp' must be an integer"),
    ],
)
def test_a_bad_spec_augment_setting_is_named(train_cuts, tiny_char_tokenizer, override, message):
    with pytest.raises(ValueError, match=message):
        _first_batch(train_cuts, tiny_char_tokenizer, "data.spec_augment=false", override)


def test_a_bad_spec_augment_setting_is_named_before_the_corpus_is_prepared(tmp_path):
    from conftest import tiny_train_overrides

    from dmao.config import load_config
    from dmao.training.data_setup import prepare_data
    from dmao.training.distributed import DistributedContext

    missing = tmp_path / "no_corpus"  # preparing it would fail with another message
    overrides = [*tiny_train_overrides(missing, tmp_path / "m"), "data.spec_augment_prob=2"]
    with pytest.raises(ValueError, match=r"data.spec_augment_prob: expected a share"):
        prepare_data(load_config(None, overrides), tmp_path / "run",
                     DistributedContext.from_env("cpu"))  # fmt: skip
