"""Throughput of a recipe's training data loader alone (issue 17, item 6).

The loader is the one training uses (:func:`dmao.training.data_setup.build_train_loader`: the
recipe's sampler, cached fbank features, SpecAugment, collation and targets), built afresh with
``data.num_workers`` set to the count under test and iterated without a model. The first batch
(worker start-up and the first collation) is timed apart as ``startup_s``; the next ``batches``
give cuts/s and audio s/s on the wall clock (epochs roll over as in training, their worker
restarts included). The ratio to the training step's audio s/s, measured in the same process just
before, says whether the loader keeps up: issue 17 asks for >= 3.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dmao.data.features import FRAME_SHIFT_S
from dmao.training.data_setup import build_train_loader
from dmao.training.recipe import TrainingRecipe

__all__ = ["LoaderResult", "loader_throughput"]


@dataclass(frozen=True)
class LoaderResult:
    """One loader measurement."""

    workers: int
    batches: int
    startup_s: float
    """Seconds to the first batch (workers started, first batch collated)."""
    cuts_per_s: float
    audio_s_per_s: float
    train_audio_s_per_s: float
    """The training step's audio s/s this is compared with."""

    @property
    def ratio_to_training(self) -> float:
        """Loader audio s/s ÷ training audio s/s (>= 3 keeps the step fed with margin)."""
        return self.audio_s_per_s / max(self.train_audio_s_per_s, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields and the ratio."""
        return {**dataclasses.asdict(self), "ratio_to_training": self.ratio_to_training}


def _endless(recipe: TrainingRecipe, workers: int) -> Iterator[dict[str, Any]]:
    """Training batches of the recipe's data with ``workers`` loader workers, epoch after
    epoch (a fresh sampler and loader: the recipe's own are left where they are)."""
    cfg = recipe.config
    config = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))
    sampler, loader = build_train_loader(
        config, recipe.train_cuts, recipe.tokenizer, recipe.dist, noise=recipe.noise,
        max_batch_seconds=recipe.micro_seconds,  # the micro-batches the step consumes
    )  # fmt: skip
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yielded = 0
        for batch in loader:
            yielded += 1
            yield batch
        if yielded == 0:
            raise ValueError("the training data yields no batch (see dmao train)")
        epoch += 1


def loader_throughput(
    recipe: TrainingRecipe, workers: int, batches: int, train_audio_s_per_s: float
) -> LoaderResult:
    """Time ``batches`` batches of the recipe's training loader with ``workers`` workers."""
    stream = _endless(recipe, workers)
    start = time.perf_counter()
    next(stream)
    startup = time.perf_counter() - start
    cuts = frames = 0
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
        cuts += len(batch["cut_ids"])
        frames += int(batch["feature_lens"].sum())
    seconds = max(time.perf_counter() - start, 1e-12)
    stream.close()  # stops the workers
    return LoaderResult(
        workers=workers,
        batches=batches,
        startup_s=startup,
        cuts_per_s=cuts / seconds,
        audio_s_per_s=frames * FRAME_SHIFT_S / seconds,
        train_audio_s_per_s=train_audio_s_per_s,
    )
