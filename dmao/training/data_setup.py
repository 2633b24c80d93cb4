"""The data side of a training run: corpus, tokeniser, filtering, sharded loaders, resume checks.

Under ``torchrun`` the steps that write files (synthesising the built-in corpus, manifests and
features, training the tokeniser, ``data_report.json``) run on rank 0 while the other ranks wait,
then every rank reads the same files; the run folder and data must therefore be on a file system
all ranks see (docs/distributed.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

from lhotse import CutSet
from torch.utils.data import DataLoader

from dmao.config import ExperimentConfig
from dmao.data.bad_audio import audio_error_message
from dmao.data.dataset import build_dataloader, build_sampler, spec_augment_from
from dmao.data.features import FRAME_SHIFT_S
from dmao.data.filtering import FilterReport, filter_cuts
from dmao.data.manifests import cut_transcript
from dmao.data.noise import NoiseMixer, check_noise_config, noise_mixer, noise_part
from dmao.data.pipeline import join_parts, load_parts, prepare_parts
from dmao.data.reverb import check_reverb_config, reverberated
from dmao.data.speed_perturb import check_speed_factors, speed_perturbed
from dmao.data.static_shapes import StaticShapeSampler, bucket_shapes
from dmao.data.tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from dmao.models.frontend import subsampled_length
from dmao.training.checkpoint import CheckpointError
from dmao.training.distributed import DistributedContext

__all__ = [
    "RESUME_MUST_MATCH",
    "PreparedData",
    "build_train_loader",
    "check_resume_compatible",
    "prepare_data",
    "shard_cuts",
]

log = logging.getLogger(__name__)

RESUME_MUST_MATCH = (
    "model",
    "tokenizer",
    "data.train_parts",
    "data.speed_perturb",
    "data.noise_dir",
    "data.rir_dir",
    "data.max_batch_seconds",
    "data.num_buckets",
    "data.pad_to_bucket",
    "data.auto_batch",
    "train.seed",
    "train.max_steps",
    "train.accum_grad_steps",
    "dmao",
)
"""Settings that must not change when a run is resumed: they define the model or the data order
(the number of ranks too, checked separately: see :func:`check_resume_compatible`)."""

NOISE_MUST_MATCH = ("data.noise_prob", "data.noise_snr", "data.on_the_fly_features")
"""Compared too where the checkpoint or the config mixes noise (``data.noise_dir``): checkpoints
from before noise mixing lack them. Noise is mixed into the fbank energies of cached features but
into the audio of features computed on the fly, so that setting changes the mix too; without
noise it changes features only by the cache's lossy compression, and a run may switch."""

REVERB_MUST_MATCH = ("data.reverb_copies",)
"""Compared too where the checkpoint or the config reverberates (``data.rir_dir``)."""


class PreparedData(NamedTuple):
    """What :func:`prepare_data` gives a run."""

    tokenizer: Tokenizer
    train: CutSet
    """The filtered training cuts (speed-perturbed and reverberated copies included)."""
    dev: CutSet
    """The fixed dev subset, sorted by duration."""
    noise: NoiseMixer | None
    """The noise windows mixed into training batches (``data.noise_dir``), loaded once."""


def prepare_data(config: ExperimentConfig, run_dir: Path, dist: DistributedContext) -> PreparedData:
    """Tokeniser, filtered training cuts, the fixed dev subset and the noise to mix.

    Rank 0 prepares corpus, manifests and tokeniser (reusing ``run_dir/tokenizer`` if present)
    and writes ``run_dir/data_report.json``; the other ranks then load the same files.
    """
    cfg = config.data
    check_speed_factors(cfg.speed_perturb)  # before hours of corpus preparation, not after
    spec_augment_from(cfg)  # the same for the SpecAugment policy
    check_noise_config(cfg)
    check_reverb_config(cfg)

    def load() -> tuple[CutSet, CutSet, CutSet, CutSet, NoiseMixer | None]:
        train = prepare_parts(cfg, cfg.train_parts)  # the copies are made from the same cuts
        return (
            join_parts(train, cfg.train_parts),
            speed_perturbed(cfg, train),
            reverberated(cfg, train),
            load_parts(cfg, cfg.dev_parts),
            noise_mixer(cfg),  # the noise windows, prepared once for every rank's loader
        )

    loaded = dist.run_on_main(load)
    train_cuts, perturbed, reverberant, dev_cuts, noise = loaded if loaded is not None else load()
    tok_dir = run_dir / "tokenizer"
    # The tokeniser sees each transcript once: speed-perturbed copies repeat the originals'.
    tokenizer = dist.run_on_main(lambda: _setup_tokenizer(config, train_cuts, tok_dir))
    if tokenizer is None:
        tokenizer = load_tokenizer(tok_dir)
    if cfg.speed_perturb:
        train_cuts = train_cuts + perturbed
    if cfg.rir_dir:
        train_cuts = train_cuts + reverberant

    report: dict[str, Any] = {}
    kept = []
    for name, cuts, limits in (
        ("train", train_cuts, (cfg.min_duration_s, cfg.max_duration_s)),
        ("dev", dev_cuts, (0.0, math.inf)),
    ):
        good, rep = filter_cuts(
            cuts,
            tokenizer,
            subsampled_length=subsampled_length,
            min_duration_s=limits[0],
            max_duration_s=limits[1],
        )
        report[name] = json.loads(rep.to_json())
        if rep.num_kept == 0:
            raise ValueError(_nothing_left(name, rep, getattr(cfg, f"{name}_parts")))
        if rep.num_kept < rep.num_input and dist.is_main:
            log.warning("%s: %s", name, rep.summary())
        kept.append(good.to_eager())
    if noise is not None:
        report["noise"] = {
            "dir": str(cfg.noise_dir),
            "part": noise_part(cfg.noise_dir),
            "windows": len(noise.noise),
            "hours": sum(cut.duration for cut in noise.noise) / 3600,
            "prob": noise.prob,
            "snr_db": list(noise.snr),
        }
    if cfg.rir_dir:
        report["reverb"] = {
            "rir_dir": str(cfg.rir_dir),
            "copies": cfg.reverb_copies,
            "utterances": len(reverberant),
            "hours": sum(cut.duration for cut in reverberant) / 3600,
        }
    if dist.is_main:
        with open(run_dir / "data_report.json", "w") as f:
            json.dump(report, f, indent=1)
    n_dev = config.train.max_valid_utterances
    dev = kept[1].subset(first=min(n_dev, len(kept[1]))) if n_dev > 0 else kept[1]
    if cfg.on_the_fly_features:
        dev = _loadable_dev(dev, cfg.bad_audio)
    return PreparedData(tokenizer, kept[0], dev.sort_by_duration(), noise)


def _nothing_left(name: str, report: FilterReport, parts: list[str]) -> str:
    """The error of a split that filtering left empty: why, with an example of each reason."""
    if report.num_input == 0:
        return f"{name}: data.{name}_parts={parts} hold no utterances"
    examples = report.examples(1)
    reasons = "; ".join(
        f"{count} {reason}, e.g. {examples[reason][0].cut_id}: {examples[reason][0].detail}"
        for reason, count in report.counts.items() if count
    )  # fmt: skip
    hint = " and data.min_duration_s / data.max_duration_s" if name == "train" else ""
    return (
        f"{name}: all {report.num_input} utterances were filtered out ({reasons}); check "
        f"data.{name}_parts={parts}{hint}"
    )


def _loadable_dev(dev: CutSet, bad_audio: str) -> CutSet:
    """The dev cuts whose audio loads, read once before training so that a bad file is found now
    and not at the first validation (features on the fly; cached ones were checked when they were
    computed): strict lists every bad one in a :class:`ValueError`, skip leaves them out."""
    bad: dict[str, str] = {}
    for cut in dev:
        try:
            cut.load_audio()
        except Exception as err:  # any reader error makes the cut unusable
            bad[cut.id] = f"{cut.id}: {audio_error_message(err)}"
    if not bad:
        return dev
    if bad_audio == "strict":
        raise ValueError(
            f"dev audio not loadable (data.on_the_fly_features; data.bad_audio=skip leaves it "
            f"out): {'; '.join(bad.values())}"
        )
    log.warning("dev: left out, audio not loadable: %s", "; ".join(bad.values()))
    return dev.filter(lambda cut: cut.id not in bad).to_eager()


def _setup_tokenizer(config: ExperimentConfig, train_cuts: CutSet, tok_dir: Path) -> Tokenizer:
    if (tok_dir / "tokenizer.json").is_file():
        return load_tokenizer(tok_dir)
    texts = [cut_transcript(c) for c in train_cuts]
    texts = [t for t in texts if t]
    cfg = config.tokenizer
    vocab_size = None if cfg.kind == "char" else cfg.vocab_size
    return train_tokenizer(cfg.kind, texts, tok_dir, vocab_size=vocab_size)


def build_train_loader(
    config: ExperimentConfig,
    cuts: CutSet,
    tokenizer: Tokenizer,
    dist: DistributedContext,
    *,
    noise: NoiseMixer | None,
    max_batch_seconds: float | None = None,
) -> tuple[Any, DataLoader]:
    """This rank's shard of the training batches: the sampler (``state_dict`` for resume) and
    the DataLoader over it (pinned memory on CUDA). With ``data.pad_to_bucket`` the sampler is a
    :class:`~dmao.data.static_shapes.StaticShapeSampler` (``sampler.shapes``: the batch shapes).
    ``noise``: :attr:`PreparedData.noise` (required, so that no loader forgets the run's noise);
    ``max_batch_seconds``: the micro-batch (default ``data.max_batch_seconds``)."""
    seconds = config.data.max_batch_seconds if max_batch_seconds is None else max_batch_seconds
    if config.data.pad_to_bucket:
        shapes = bucket_shapes(
            cuts,
            num_buckets=config.data.num_buckets,
            max_batch_seconds=seconds,
            frame_shift=FRAME_SHIFT_S,
        )
        log.info(
            "static batch shapes (data.pad_to_bucket): %s",
            ", ".join(f"{b}x{t}" for b, t in shapes.shapes()),
        )
        sampler = StaticShapeSampler(
            cuts,
            shapes,
            shuffle=True,
            seed=config.train.seed,
            world_size=dist.world_size,
            rank=dist.rank,
        )
    else:
        sampler = build_sampler(
            cuts,
            max_batch_seconds=seconds,
            shuffle=True,
            seed=config.train.seed,
            num_buckets=config.data.num_buckets,
            drop_last=True,
            world_size=dist.world_size,
            rank=dist.rank,
        )
    loader = build_dataloader(
        cuts,
        tokenizer,
        sampler=sampler,
        train=config.data.spec_augment,
        spec_augment=spec_augment_from(config.data),  # checked even when off: a typo is named
        num_workers=config.data.num_workers,
        pin_memory=dist.device.type == "cuda",
        noise=noise,
        skip_unloadable=True,  # a bad file (features on the fly) must not stop training
    )
    return sampler, loader


def shard_cuts(cuts: CutSet, dist: DistributedContext) -> CutSet:
    """Every ``world_size``-th cut starting at this rank's index, order kept (validation shards:
    interleaved, so a duration-sorted dev set gives every rank a similar amount of audio)."""
    if not dist.distributed:
        return cuts
    return CutSet.from_cuts(list(cuts)[dist.rank :: dist.world_size])


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else None
    return d


def check_resume_compatible(
    saved: dict[str, Any],
    current: dict[str, Any],
    path: Path,
    *,
    saved_world_size: int = 1,
    world_size: int = 1,
    ignore: Collection[str] = (),
) -> None:
    """Raise :class:`CheckpointError` naming every setting that differs from the checkpoint's.

    The number of data-parallel ranks is compared too: the sampler shards batches by rank, so a
    different world size would replay a different stream. ``ignore``: dotted settings inside
    the compared sections that may differ (DMAO's event-time settings before the first event,
    :func:`dmao.method.prefix.event_time_differences`).
    """
    diffs = []
    keys = list(RESUME_MUST_MATCH)
    if _lookup(saved, "data.noise_dir") or _lookup(current, "data.noise_dir"):
        keys += NOISE_MUST_MATCH
    if _lookup(saved, "data.rir_dir") or _lookup(current, "data.rir_dir"):
        keys += REVERB_MUST_MATCH
    for key in keys:
        a, b = _lookup(saved, key), _lookup(current, key)
        skipped = {i.removeprefix(key + ".") for i in ignore if i.startswith(key + ".")}
        if skipped and isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k not in skipped}
            b = {k: v for k, v in b.items() if k not in skipped}
        # Both empty: a key the checkpoint predates (read as {}) against its off default.
        if a != b and (a or b):
            diffs.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    if saved_world_size != world_size:
        diffs.append(
            f"world size (torchrun processes): checkpoint {saved_world_size} vs this run "
            f"{world_size}"
        )
    if diffs:
        raise CheckpointError(
            f"cannot resume from {path}: settings differ from the checkpoint:\n  "
            + "\n  ".join(diffs)
        )
