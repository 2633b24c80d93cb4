"""Batches for CTC training and evaluation, the lhotse way.

The sampler (:class:`lhotse.dataset.DynamicBucketingSampler`) is the only owner of data order and
of its randomness; it yields a ``CutSet`` per batch and has ``state_dict()`` for exact mid-epoch
resumption. :class:`AsrBatchDataset` is stateless: it turns such a ``CutSet`` into tensors
(features, targets) and applies SpecAugment when it was given one (training only). The
``DataLoader`` runs with ``batch_size=None`` and the sampler as its ``sampler``, so batches are
formed by the sampler and collated in the workers.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import (
    DynamicBucketingSampler,
    DynamicCutSampler,
    OnTheFlyFeatures,
    SpecAugment,
)
from lhotse.dataset.collation import collate_features
from lhotse.dataset.dataloading import make_worker_init_fn
from lhotse.utils import LOG_EPSILON
from torch.utils.data import DataLoader

from dmao.config.schema import DataConfig
from dmao.data.features import fbank_extractor
from dmao.data.manifests import cut_transcript
from dmao.data.noise import NoiseMixer
from dmao.data.static_shapes import BucketShapes
from dmao.data.tokenizer import Tokenizer

__all__ = [
    "AsrBatchDataset",
    "build_dataloader",
    "build_sampler",
    "default_spec_augment",
    "sampler_state_for_resume",
    "spec_augment_from",
]

log = logging.getLogger(__name__)


def spec_augment_from(config: DataConfig) -> SpecAugment:
    """lhotse's :class:`~lhotse.dataset.SpecAugment` with the ``data.spec_augment_*`` policy.

    The defaults are icefall's LibriSpeech settings without time warping:

    - 2 frequency masks of up to 27 bins each (Park et al. 2019, LibriSpeech policies: F=27, mF=2);
    - up to 10 time masks of up to 100 frames, their total capped at 15 % of the utterance (lhotse
      defaults, as in icefall's LibriSpeech recipes; the cap keeps short utterances readable);
    - applied to 90 % of the utterances (lhotse's default ``p``);
    - time warping OFF: the reference experiments (RETURNN/i6 setups, METHOD.md §6) mask only;
      Park et al. found warping the least useful of the three parts, and it is the only costly one
      (an interpolation per utterance in the data workers).

    Raises:
        ValueError: naming the setting, for a negative count or width, or a share outside [0, 1].
    """
    # lhotse's SpecAugment always masks in time (no time mask divides by zero there): turning
    # masking off is data.spec_augment=false.
    for name, least in (("freq_masks", 0), ("freq_width", 1), ("time_masks", 1),
                        ("time_width", 1), ("time_warp", 0)):  # fmt: skip
        value = getattr(config, f"spec_augment_{name}")
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(
                f"data.spec_augment_{name}: expected a whole number >= {least}, got {value!r}"
                + (" (data.spec_augment=false turns SpecAugment off)" if least else "")
            )
    for name, zero_allowed in (("max_time_fraction", False), ("prob", True)):
        value = getattr(config, f"spec_augment_{name}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not (0 <= value <= 1 if zero_allowed else 0 < value <= 1):
            bounds = "[0, 1]" if zero_allowed else "(0, 1]"
            message = f"expected a share in {bounds}, got {value!r}"
            raise ValueError(f"data.spec_augment_{name}: {message}")
    return SpecAugment(
        time_warp_factor=config.spec_augment_time_warp or None,
        num_feature_masks=config.spec_augment_freq_masks,
        features_mask_size=config.spec_augment_freq_width,
        num_frame_masks=config.spec_augment_time_masks,
        frames_mask_size=config.spec_augment_time_width,
        max_frames_mask_fraction=config.spec_augment_max_time_fraction,
        p=config.spec_augment_prob,
    )


def default_spec_augment() -> SpecAugment:
    """:func:`spec_augment_from` the default ``data`` settings."""
    return spec_augment_from(DataConfig())


class AsrBatchDataset(torch.utils.data.Dataset):
    """Turns a sampled ``CutSet`` into a CTC batch. Stateless, so it can live in any worker.

    Features are read from the cuts' cached features when all cuts have them, and computed with
    :func:`~dmao.data.features.fbank_extractor` (lhotse's ``OnTheFlyFeatures``, fault tolerant)
    when none has them (``data.on_the_fly_features``, or decoding audio without a cache); a cut
    whose audio then fails to load is left out of a training batch with a warning naming it
    (``skip_unloadable``), and is an error elsewhere. Batch items
    keep the sampler's order (not re-sorted by length): ``cut_ids[i]`` is the ``i``-th cut the
    sampler yielded, which keeps batches reproducible and easy to trace.
    Padding frames hold lhotse's silence value log(1e-10); use ``feature_lens`` to mask them.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        spec_augment: SpecAugment | None = None,
        with_targets: bool = True,
        augment_seed: int = 0,
        pad_shapes: BucketShapes | None = None,
        noise: NoiseMixer | None = None,
        skip_unloadable: bool = False,
    ) -> None:
        """
        Args:
            tokenizer: maps each cut's normalised transcript to target ids.
            spec_augment: applied to every utterance when given; pass one for training only
                (e.g. :func:`default_spec_augment`) and None for evaluation.
            augment_seed: with the batch's cut ids, seeds SpecAugment's random draws, so the
                masks of a batch are the same whichever process collates it (0 or N loader
                workers, an uninterrupted or a resumed run) and augmentation never consumes the
                training process's own random stream (dropout).
            with_targets: produce ``targets``/``target_lens``. Decoding passes False, so a test
                set is scored in full even where a reference holds characters the tokenizer
                never saw (those are then honest recognition errors, not a crash).
            pad_shapes: pad each batch's features to its duration bucket's edge
                (``data.pad_to_bucket``, :mod:`dmao.data.static_shapes`); None: to its longest
                utterance.
            noise: mixes noise into the batch's cuts before their features are read (training
                only; ``data.noise_dir``), seeded like SpecAugment by ``augment_seed`` and the
                cut ids.
            skip_unloadable: features computed on the fly: leave a cut whose audio fails to
                load out of its batch with a warning (training); False: raise a
                :class:`ValueError` naming it (evaluation, where every utterance must be scored).
        """
        self.tokenizer = tokenizer
        self.skip_unloadable = skip_unloadable
        self.pad_shapes = pad_shapes
        self.spec_augment = spec_augment
        self.with_targets = with_targets
        self.augment_seed = augment_seed
        self.noise = noise
        self._on_the_fly: dict[int, OnTheFlyFeatures] = {}

    def __getitem__(self, cuts: CutSet) -> dict[str, Any]:
        """Collate one sampled batch of ``B`` cuts.

        Returns:
            A dict with

            - ``features``: ``(B, T, 80)`` float32 log-mel fbank, right-padded;
            - ``feature_lens``: ``(B,)`` int64 valid frames per utterance;
            - ``targets``: ``(B, U)`` int64 label ids, right-padded with 0 (the blank);
            - ``target_lens``: ``(B,)`` int64 labels per utterance;
            - ``cut_ids``: ``list[str]`` of length ``B``;
            - ``texts``: ``list[str]``, the normalised reference transcripts.

        Raises:
            ValueError: the batch is empty, mixes cuts with and without features, or has a
                transcript the tokenizer cannot encode (run ``filter_cuts`` on training data).
        """
        if len(cuts) == 0:
            raise ValueError("AsrBatchDataset got an empty batch of cuts")
        seed = _batch_seed(self.augment_seed, cuts)  # of the batch as sampled
        if self.noise is not None:
            cuts = self.noise(cuts, seed)
        features, feature_lens, cuts = self._features(cuts)
        feature_lens = feature_lens.to(torch.int64)
        if self.spec_augment is not None:
            # Per utterance and on its valid frames only: mask sizes are then relative to the
            # utterance's own length and the mask value is its own mean, not padding's.
            with _seeded_random_state(seed):
                for i, num_frames in enumerate(feature_lens.tolist()):
                    one = features[i : i + 1, :num_frames]
                    features[i, :num_frames] = self.spec_augment(one)[0]

        if self.pad_shapes is not None:
            frames = self.pad_shapes.padded_frames(
                max(cut.duration for cut in cuts), features.shape[1]
            )
            if frames > features.shape[1]:
                pad = features.new_full(
                    (features.shape[0], frames - features.shape[1], features.shape[2]),
                    LOG_EPSILON,
                )
                features = torch.cat([features, pad], dim=1)  # (B, T_bucket, 80)

        texts = [cut_transcript(cut) for cut in cuts]
        batch = {
            "features": features.to(torch.float32),
            "feature_lens": feature_lens,
            "cut_ids": [cut.id for cut in cuts],
            "texts": texts,
        }
        if not self.with_targets:
            return batch
        labels = []
        for cut, text in zip(cuts, texts, strict=True):
            if not self.tokenizer.can_encode(text):
                raise ValueError(
                    f"cut {cut.id}: transcript {text!r} cannot be encoded by the tokenizer; "
                    "exclude such cuts with dmao.data.filtering.filter_cuts"
                )
            labels.append(self.tokenizer.encode(text))
        target_lens = torch.tensor([len(ids) for ids in labels], dtype=torch.int64)
        targets = torch.full(
            (len(labels), int(target_lens.max())), self.tokenizer.blank_id, dtype=torch.int64
        )
        for i, ids in enumerate(labels):
            targets[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        batch["targets"] = targets
        batch["target_lens"] = target_lens
        return batch

    def _features(self, cuts: CutSet) -> tuple[torch.Tensor, torch.Tensor, CutSet]:
        """Features ``(B, T, F)``, their lengths ``(B,)`` and the cuts they are of: all of
        ``cuts`` when cached; computed from the audio, those whose audio loaded (a cut whose
        audio fails leaves the batch with a warning naming it)."""
        with_features = [cut.has_features for cut in cuts]
        if all(with_features):
            return (*collate_features(cuts), cuts)
        if any(with_features):
            raise ValueError(
                "a batch mixes cuts with and without cached features "
                f"(e.g. {next(c.id for c in cuts if not c.has_features)} has none); "
                "prepare all parts the same way"
            )
        sampling_rate = cuts[0].sampling_rate
        if sampling_rate not in self._on_the_fly:
            # One utterance at a time: lhotse's batched extraction zero-pads the waveforms, which
            # changes the last frames (Kaldi mirrors the signal at the edges instead), so only
            # per-utterance extraction equals the cached features and decode-time extraction.
            self._on_the_fly[sampling_rate] = OnTheFlyFeatures(
                fbank_extractor(sampling_rate), use_batch_extract=False, fault_tolerant=True
            )
        features, lens, loaded = self._on_the_fly[sampling_rate](cuts)
        if len(loaded) < len(cuts):
            lost = sorted(set(cuts.ids) - set(loaded.ids))
            if not self.skip_unloadable or len(loaded) == 0:
                raise ValueError(
                    f"audio not loadable: {', '.join(lost)} (features on the fly); check the "
                    f"corpus with dmao validate"
                )
            log.warning(
                "left out of the batch, audio not loadable: %s (run dmao validate on the corpus)",
                ", ".join(lost),
            )
        return features, lens, loaded


@contextlib.contextmanager
def _eager_cutsets_on_purpose() -> Iterator[None]:
    """Silence lhotse's advice to use lazy CutSets with its dynamic samplers: an eager one is a
    deliberate choice here (small corpora, and filter_cuts has read every cut already); unsilenced
    the warning repeats at every validation."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using Dynamic.*Sampler with an")
        yield


def build_sampler(
    cuts: CutSet,
    *,
    max_batch_seconds: float,
    shuffle: bool,
    seed: int,
    num_buckets: int,
    drop_last: bool,
    world_size: int | None = None,
    rank: int | None = None,
) -> DynamicBucketingSampler | DynamicCutSampler:
    """The training/evaluation sampler: lhotse's duration-bucketing sampler.

    Each batch holds up to ``max_batch_seconds`` of audio, all from one of ``num_buckets``
    duration buckets (similar lengths, so little padding). The order depends only on
    ``(cuts, seed, epoch, world_size, rank)``: call ``sampler.set_epoch(epoch)`` before each epoch
    for a new shuffle.

    Resuming mid-epoch: save ``sampler.state_dict()`` (or, with DataLoader workers,
    :func:`sampler_state_for_resume`), build a fresh sampler with the same arguments, call
    ``load_state_dict(copy.deepcopy(state))`` (lhotse empties the dict it is given) BEFORE
    iterating, then iterate a new DataLoader: it yields exactly the batches the interrupted run had
    not consumed. lhotse restores by replaying the epoch's batches up to the saved count (cheap:
    no features are read); ``set_epoch`` with the saved epoch keeps that position, a different
    epoch starts afresh. The state holds Python ints as dict keys, so store it with
    ``torch.save``, not JSON.

    Filter the CutSet first (``filter_cuts``) rather than with ``sampler.filter(...)``: lhotse
    1.33 counts each cut that filter rejects as a discarded batch, and a plain ``state_dict()``
    then replays too many batches on restore (measured; :func:`sampler_state_for_resume` is not
    affected).

    Args:
        cuts: the cuts to sample from (filtered already, for training).
        max_batch_seconds: total audio duration per batch, in seconds.
        shuffle: shuffle within lhotse's buffer (training) or keep order (evaluation).
        seed: shuffling seed, identical on all ranks.
        num_buckets: number of duration buckets; 1 means no bucketing (lhotse's
            ``DynamicCutSampler``: batches of consecutive shuffled cuts, more padding).
        drop_last: drop the last incomplete batch (and, with several ranks, keep rank batch counts
            equal by dropping rather than duplicating cuts).
        world_size: number of data-parallel ranks (None: from torch.distributed or 1). All ranks
            walk the same seeded stream of batches and rank ``r`` keeps every ``world_size``-th
            one starting at ``r`` (lhotse's sharding), so ranks never share an utterance. With
            more than one bucket lhotse draws ``world_size`` consecutive batches from one bucket
            (equal lengths, so no rank waits for another); with ``num_buckets=1`` the stream does
            not depend on ``world_size`` at all.
        rank: this process's rank (None: from torch.distributed or 0).
    """
    if num_buckets < 1:
        raise ValueError(f"data.num_buckets must be >= 1, got {num_buckets}")
    with _eager_cutsets_on_purpose():
        if num_buckets == 1:
            return DynamicCutSampler(
                cuts,
                max_duration=max_batch_seconds,
                shuffle=shuffle,
                drop_last=drop_last,
                seed=seed,
                world_size=world_size,
                rank=rank,
            )
        return DynamicBucketingSampler(
            cuts,
            max_duration=max_batch_seconds,
            num_buckets=num_buckets,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            world_size=world_size,
            rank=rank,
        )


def build_eval_sampler(cuts: CutSet, *, max_batch_seconds: float) -> DynamicCutSampler:
    """A deterministic, unshuffled sampler for validation and decoding.

    Pass cuts sorted by duration (``cuts.sort_by_duration()``) to keep padding small; every cut is
    yielded exactly once, in order, ``max_batch_seconds`` of audio per batch at most.
    """
    with _eager_cutsets_on_purpose():
        return DynamicCutSampler(
            cuts,
            max_duration=max_batch_seconds,
            shuffle=False,
            drop_last=False,
            world_size=1,
            rank=0,
        )


def sampler_state_for_resume(
    sampler: DynamicBucketingSampler, *, batches_consumed: int
) -> dict[str, Any]:
    """``sampler.state_dict()`` as of when the training loop had used ``batches_consumed`` batches.

    With ``num_workers > 0`` the DataLoader draws batches from the sampler ahead of the training
    loop (``prefetch_factor × num_workers`` of them), so ``sampler.state_dict()`` counts batches
    the loop never saw and a restore would skip them. This rewrites the state's batch count for
    the current epoch to ``batches_consumed`` (lhotse's restore replays exactly that many
    ``next()`` calls) and zeroes its discarded-batch count (see :func:`build_sampler` on
    ``sampler.filter``). With ``num_workers=0`` and no discards it equals
    ``sampler.state_dict()``. The per-epoch cut counts are diagnostics only and are left as is.

    Args:
        sampler: the sampler the DataLoader is iterating.
        batches_consumed: batches of the current epoch the training loop has received.

    Raises:
        ValueError: ``batches_consumed`` is negative or more than the sampler has yielded.
    """
    state = copy.deepcopy(sampler.state_dict())
    diagnostics = state["diagnostics"]
    stats = diagnostics["stats_per_epoch"][diagnostics["current_epoch"]]
    if not 0 <= batches_consumed <= stats["kept_batches"]:
        raise ValueError(
            f"batches_consumed={batches_consumed} is outside [0, {stats['kept_batches']}], the "
            f"batches the sampler has yielded in epoch {diagnostics['current_epoch']}"
        )
    # lhotse replays kept + discarded batches on restore, but it counts every cut rejected by
    # sampler.filter as a discarded batch; zeroing the discards makes the replay count exact.
    stats["kept_batches"] = batches_consumed
    stats["discarded_batches"] = 0
    return state


def _batch_seed(seed: int, cuts: CutSet) -> int:
    """A 63-bit seed from ``seed`` and the batch's cut ids (in sampler order)."""
    key = "\n".join([str(seed), *(cut.id for cut in cuts)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


@contextlib.contextmanager
def _seeded_random_state(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU, Python's and numpy's global generators seeded by ``seed``
    (lhotse's SpecAugment draws from all three), and put the previous states back afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def build_dataloader(
    cuts: CutSet,
    tokenizer: Tokenizer,
    *,
    sampler: DynamicBucketingSampler | DynamicCutSampler,
    train: bool,
    num_workers: int = 0,
    with_targets: bool = True,
    pin_memory: bool = False,
    noise: NoiseMixer | None = None,
    skip_unloadable: bool = False,
    spec_augment: SpecAugment | None = None,
) -> DataLoader:
    """A DataLoader over ``sampler``'s batches of ``cuts`` (lhotse's map-style pattern).

    ``batch_size=None`` because the sampler yields whole batches. SpecAugment's masks are seeded
    per batch (sampler seed + cut ids, see :class:`AsrBatchDataset`), so they do not depend on the
    number of workers; lhotse's ``make_worker_init_fn`` still seeds each worker (and rank) for
    anything else random there. Workers are not persistent: each epoch starts them afresh.

    Args:
        cuts: the cuts ``sampler`` was built on (checked, to catch a sampler/cuts mix-up).
        tokenizer: produces the targets.
        sampler: from :func:`build_sampler`; it owns order, epochs and resumption.
        train: apply SpecAugment (``spec_augment``, default :func:`default_spec_augment`) or
            nothing (False).
        num_workers: DataLoader worker processes (0: collate in this process).
        with_targets: see :class:`AsrBatchDataset` (False for decoding).
        pin_memory: collate into page-locked memory, so that ``.to(cuda, non_blocking=True)``
            overlaps the copy with computation (CUDA training only).
        noise: additive noise for training batches (:func:`dmao.data.noise.noise_mixer`).
        skip_unloadable: leave cuts whose audio fails to load out of their batches (training
            with features on the fly; see :class:`AsrBatchDataset`).
        spec_augment: the policy for ``train`` (:func:`spec_augment_from` a run's config).
    """
    if not sampler.cuts or sampler.cuts[0] is not cuts:
        raise ValueError(
            "build_dataloader: sampler was not built on these cuts; pass the CutSet given to "
            "build_sampler"
        )
    dataset = AsrBatchDataset(
        tokenizer,
        spec_augment=(spec_augment or default_spec_augment()) if train else None,
        with_targets=with_targets,
        augment_seed=sampler.seed if isinstance(sampler.seed, int) else 0,
        pad_shapes=getattr(sampler, "shapes", None),  # a StaticShapeSampler's buckets
        noise=noise,
        skip_unloadable=skip_unloadable,
    )
    worker_init_fn = None
    if num_workers > 0:
        seed = sampler.seed if isinstance(sampler.seed, int) else 42
        worker_init_fn = make_worker_init_fn(
            rank=sampler.rank, world_size=sampler.world_size, seed=seed
        )
    # Each DataLoader iterator draws a base seed from its generator; with the default (global)
    # generator that draw shifts torch's global RNG whenever an iterator is created, so a resumed
    # run (new iterator mid-epoch) would diverge from an uninterrupted one (measured: the loss of
    # the first resumed step differed). A private generator leaves the global stream alone.
    generator = torch.Generator()
    generator.manual_seed(sampler.seed if isinstance(sampler.seed, int) else 0)
    return DataLoader(
        dataset,
        sampler=sampler,
        generator=generator,
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
