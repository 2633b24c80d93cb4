"""Starting a run from another run's weights (``train.init_from``): fine-tuning, or a new schedule.

ESPnet's ``--init_param`` and NeMo's ``init_from_*`` in one setting: the new run copies the
weights (parameters and buffers, e.g. the feature normalisation) of a checkpoint, then trains with
its own data, optimizer, LR schedule and, if enabled, DMAO events, from step 0. Nothing else of
the old run is restored — that is ``--resume``, and a resumed run ignores ``init_from``.

- **Architecture.** A DMAO run ends with different widths in every layer; unless
  ``model.architecture`` names one, the new model is built with the checkpoint's per-layer
  architecture, so every weight has its place.
- **Output units.** The output layer only fits the tokeniser it was trained with: when
  ``init_from`` comes from a run folder (or that folder's ``checkpoints/``) and the new run has no
  tokeniser yet, the old run's is copied into it. With ``train.init_exclude: [output]`` the
  output layer starts fresh and the new run trains its own tokeniser (a new vocabulary).
- **Exclusions.** ``train.init_exclude`` lists name prefixes (``output``, ``encoder.blocks.11``,
  ``encoder.feature_norm``) whose weights keep their fresh initialisation.
- **Checks.** Every weight not excluded must exist in both models with the same shape; otherwise
  one :class:`~dmao.training.checkpoint.CheckpointError` lists all that do not.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from dmao.models.architecture import EncoderArchitecture
from dmao.models.attention import fuse_legacy_qkv, legacy_qkv_modules
from dmao.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

__all__ = ["InitSource", "load_initial_weights", "open_init_source"]

log = logging.getLogger(__name__)

OUTPUT_WEIGHT = "output.weight"
"""The output layer's weight in every model's state dict (``EncoderCTCModel.output``)."""


def _excluded(name: str, exclude: list[str]) -> bool:
    """Whether weight ``name`` lies under a prefix of ``exclude``, matched by whole name
    components (``encoder.blocks.1`` covers ``encoder.blocks.1.ff1.…``, not
    ``encoder.blocks.10``)."""
    return any(name == p or name.startswith(p.rstrip(".") + ".") for p in exclude)


@dataclass(frozen=True)
class InitSource:
    """A checkpoint to start from, and the run folder that wrote it (if it is known)."""

    checkpoint: Path
    run_dir: Path | None
    state: dict[str, Any]

    @property
    def architecture(self) -> EncoderArchitecture:
        """The per-layer widths the checkpoint's model had."""
        return EncoderArchitecture.from_dict(self.state["architecture"])

    def adopt_tokenizer(self, run_dir: Path, exclude: list[str]) -> bool:
        """Copy the source run's tokeniser to ``run_dir/tokenizer`` when ``run_dir`` has none and
        the output layer is copied too (not under an ``exclude`` prefix); returns whether it
        did. Without a source run folder there is nothing to copy."""
        target = run_dir / "tokenizer"
        source = self.run_dir / "tokenizer" if self.run_dir is not None else None
        if _excluded(OUTPUT_WEIGHT, exclude):
            return False  # a fresh output layer: the run trains its own tokeniser
        if target.exists() or source is None or not source.is_dir():
            return False
        shutil.copytree(source, target)
        log.info("init_from: using the tokenizer of %s (its output layer fits it)", self.run_dir)
        return True


def open_init_source(spec: str | Path) -> InitSource:
    """Load ``train.init_from``: a checkpoint file, or a run folder (its ``checkpoints/best.pt``,
    else its newest step checkpoint)."""
    path = Path(spec)
    run_dir: Path | None = None
    if path.is_dir():
        run_dir = path
        best = path / "checkpoints" / "best.pt"
        checkpoint = best if best.is_file() else latest_checkpoint(path / "checkpoints")
        if checkpoint is None:
            raise FileNotFoundError(
                f"train.init_from: {path} holds no checkpoint (checkpoints/best.pt or "
                "checkpoints/step-*.pt)"
            )
    elif path.is_file():
        checkpoint = path
        if path.parent.name == "checkpoints":
            run_dir = path.parent.parent
    else:
        raise FileNotFoundError(
            f"train.init_from: {path} is neither a checkpoint file nor a run folder"
        )
    state = load_checkpoint(checkpoint)
    if "model" not in state or "architecture" not in state:
        raise CheckpointError(
            f"train.init_from: {checkpoint} is not a dmao training checkpoint (expected 'model' "
            "and 'architecture' entries)"
        )
    return InitSource(checkpoint, run_dir, state)


def load_initial_weights(model: nn.Module, source: InitSource, exclude: list[str]) -> list[str]:
    """Copy ``source``'s weights into ``model``, except names under an ``exclude`` prefix.

    A prefix matches whole name components (see :func:`_excluded`). Returns the names copied.

    Raises:
        CheckpointError: some weight that is not excluded is missing on one side or has
            another shape; the message lists all of them.
    """
    saved = dict(source.state["model"])
    for prefix in legacy_qkv_modules(saved):  # written before the fused attention projection
        fuse_legacy_qkv(saved, prefix)

    own = model.state_dict()
    problems = []
    for name in sorted(set(own) | set(saved)):
        if _excluded(name, exclude):
            continue
        if name not in saved:
            problems.append(f"{name}: not in the checkpoint")
        elif name not in own:
            problems.append(f"{name}: not in the model")
        elif saved[name].shape != own[name].shape:
            problems.append(
                f"{name}: checkpoint {tuple(saved[name].shape)} vs model {tuple(own[name].shape)}"
            )
    if problems:
        raise CheckpointError(
            f"train.init_from: {source.checkpoint} does not fit the model ({len(problems)} "
            "weights; exclude them with train.init_exclude, or build the model with the "
            "checkpoint's architecture by leaving model.architecture unset):\n  "
            + "\n  ".join(problems)
        )
    copied = [name for name in own if not _excluded(name, exclude)]
    model.load_state_dict({**own, **{name: saved[name] for name in copied}})
    log.info(
        "init_from: %d of %d weights from %s%s",
        len(copied),
        len(own),
        source.checkpoint,
        f" (kept fresh: {', '.join(exclude)})" if exclude else "",
    )
    return copied
