"""A trained model as a self-contained folder: ``dmao export`` writes it, :func:`load_exported`
reads it back without the run folder, the training config or the corpus.

Layout of an export folder::

    model.safetensors   every parameter and buffer (incl. the global mean/variance feature
                        normalisation, which lives in the model as buffers)
    model.json          registered model name, constructor settings, per-layer architecture
                        (the possibly non-uniform widths DMAO reached), vocabulary size
    features.json       sampling rate and the lhotse fbank settings the model was trained on
    tokenizer/          a copy of the run's tokenizer files (``dmao.data.tokenizer``)
    model.onnx          the acoustic model for ONNX Runtime (optional; see ``onnx_export``)
    model.int8.onnx     the same with int8 weights (optional, ``--int8``; see ``quantize``)
    lm/                 an n-gram LM, its lexicon (optional, ``--lm``; see ``language_model``)
    ctc_prior.json      the CTC label prior to divide out (optional, ``--prior-scale``; ``prior``)
    manifest.json       format version, package versions, source run (its folder name and the
                        SHA-256 of its config and checkpoint: no absolute paths), default
                        decoding settings, the word-confidence calibration (optional,
                        ``--confidence-from``; ``confidence``), and the size and SHA-256 of
                        every file above

Files and folders get the modes a plain ``open``/``mkdir`` gives under the caller's umask (0644 and
0755 with the usual 022), whatever the libraries that write them would choose (safetensors writes
0600, ``tempfile.mkdtemp`` makes 0700 folders): an export is meant to be shared.

The model is rebuilt through the model registry (:func:`build_model_from_config`), so every
registered encoder family exports and loads the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import logging
import os
import platform
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dmao import __version__
from dmao.config import config_from_dict
from dmao.config.schema import ModelConfig
from dmao.data.features import fbank_extractor
from dmao.data.tokenizer import Tokenizer, load_tokenizer
from dmao.decoding.prior import DEFAULT_PRIOR_UTTERANCES
from dmao.export.confidence import ExportedCalibration, bundled_calibration
from dmao.export.features import FeatureSettings
from dmao.export.files import (
    default_modes,
    file_table,
    read_json,
    sha256_file,
    verify_files,
    write_json,
)
from dmao.export.language_model import (
    LanguageModel,
    bundle_language_model,
    bundled_language_model,
)
from dmao.export.prior import ExportedPrior, bundle_prior, bundled_prior
from dmao.models.architecture import EncoderArchitecture
from dmao.models.normalization import GlobalFeatureNorm
from dmao.training.model_setup import build_model_from_config

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "ExportedModel",
    "FeatureSettings",
    "build_from_spec",
    "export_run",
    "load_exported",
    "model_spec",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "dmao-export"
EXPORT_FORMAT_VERSION = 2
"""Bumped whenever the layout or the meaning of a file in an export changes incompatibly. An
export is written with the lowest version that holds it: 2 only with a CTC prior (which an older
reader would ignore, giving other transcripts), else 1, which every dmao since the first reads."""
READ_FORMAT_VERSIONS = (1, 2)

WEIGHTS_FILE = "model.safetensors"
MODEL_FILE = "model.json"
FEATURES_FILE = "features.json"
TOKENIZER_DIR = "tokenizer"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
MANIFEST_FILE = "manifest.json"

_VERSIONED_PACKAGES = (
    "torch",
    "safetensors",
    "lhotse",
    "numpy",
    "sentencepiece",
    "onnx",
    "onnxscript",
    "onnxruntime",
)


@dataclass
class ExportedModel:
    """An export loaded back: the model (eval mode), its tokenizer and feature settings."""

    directory: Path
    model: nn.Module
    tokenizer: Tokenizer
    features: FeatureSettings
    manifest: dict[str, Any]
    prior: ExportedPrior | None = None
    """The CTC prior and its default scale (``dmao export --prior-scale``), or None."""
    calibration: ExportedCalibration | None = None
    """The word-confidence calibration (``dmao export --confidence-from``), or None."""

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX acoustic model of this export, or None when it was exported without one."""
        path = self.directory / ONNX_FILE
        return path if path.is_file() else None

    @property
    def onnx_int8_path(self) -> Path | None:
        """The int8 ONNX acoustic model, or None when it was exported without ``--int8``."""
        path = self.directory / ONNX_INT8_FILE
        return path if path.is_file() else None

    def checked_onnx(self, *, int8: bool = False) -> Path:
        """The ONNX file (``int8``: its int8 copy), checked against the manifest (size and
        SHA-256; :func:`load_exported` leaves the ONNX files to the backend that uses them).

        Raises:
            FileNotFoundError: the export has no such file.
            ValueError: the file differs from the one the manifest records.
        """
        name = ONNX_INT8_FILE if int8 else ONNX_FILE
        path = self.onnx_int8_path if int8 else self.onnx_path
        if path is None:
            how = "export again with --int8" if int8 else "export again without --no-onnx"
            raise FileNotFoundError(
                f"export {self.directory} has no {name}; {how} or use --backend torch"
            )
        record = self.manifest.get("files", {}).get(name)
        if record is not None:
            verify_files(self.directory, {name: record}, set(), MANIFEST_FILE)
        return path

    @property
    def decode_method(self) -> str:
        """The default decoding method: ``lm`` for an export with an LM (``dmao export --lm``),
        else the run's, ``greedy`` or ``beam`` (``beam`` for a run decoded with an LM that the
        export does not hold)."""
        if self.manifest.get("lm") is not None:
            return "lm"
        method = str(self.manifest.get("decode", {}).get("method", "greedy"))
        return method if method in ("greedy", "beam") else "beam"

    def language_model(self) -> LanguageModel | None:
        """The export's n-gram LM and search settings, after checking its files against the
        manifest (size and SHA-256; :func:`load_exported` leaves them out, an LM can be large);
        None when it has none."""
        return bundled_language_model(self.directory, self.manifest, MANIFEST_FILE)

    @property
    def beam_size(self) -> int:
        """The run's default beam size."""
        return int(self.manifest.get("decode", {}).get("beam_size", 8))


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "best",
    onnx: bool = True,
    int8: bool = False,
    language_model: LanguageModel | None = None,
    prior_scale: float = 0.0,
    prior_utterances: int = DEFAULT_PRIOR_UTTERANCES,
    confidence_calibration: Mapping[str, Any] | None = None,
    ema: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
    progress_bar: bool = False,
) -> Path:
    """Write the model of ``run_dir`` at ``checkpoint`` as an export folder ``out_dir``.

    The folder is assembled under a temporary name next to ``out_dir`` and renamed when complete,
    so an interrupted export never leaves a folder that looks finished.

    Args:
        run_dir: a run folder written by ``dmao train``.
        out_dir: the export folder to create.
        checkpoint: ``best`` (lowest dev WER, else the newest), ``last`` or a checkpoint file.
        onnx: also export ``model.onnx`` (checked against PyTorch with ONNX Runtime).
        int8: also write ``model.int8.onnx``, its int8 dynamically quantised copy (needs
            ``onnx``; checked against ``model.onnx``, :func:`dmao.export.quantize.quantize_onnx`).
        language_model: an n-gram LM, its lexicon and search settings to copy into ``lm/``, for
            ``dmao transcribe --method lm`` (loaded once with the run's tokenizer first, so an
            LM that does not fit fails here; :mod:`dmao.export.language_model`).
        prior_scale: > 0: also store the checkpoint's CTC prior (estimated from
            ``prior_utterances`` training utterances, or ``RUN/ctc_prior.pt`` when that is for
            this checkpoint) with this default scale, for ``dmao transcribe``
            (:mod:`dmao.export.prior`); needs the run's training data.
        confidence_calibration: the word-confidence calibration record of a dev decode
            (:func:`dmao.export.confidence.calibration_from_decode`), for ``dmao transcribe``.
        ema: export the checkpoint's running average of the weights (``train.ema_decay``,
            :mod:`dmao.training.ema`) instead of its live weights.
        overwrite: replace an existing export at ``out_dir`` (only a folder that holds a
            ``manifest.json`` is ever replaced).
        verbose: let the ONNX exporter log its passes (~70 INFO lines for the tiny model).
        progress_bar: show a progress bar while the CTC prior is estimated.

    Returns:
        ``out_dir``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is off, or it is not an export.
        CheckpointError: the checkpoint is missing or unreadable.
        ValueError: ``int8`` without ``onnx``; a ``language_model`` that does not fit the
            model's tokens; a negative ``prior_scale`` or one with ``ema``.
    """
    from dmao.decoding.prior import ctc_prior_for_run
    from dmao.decoding.run_loading import load_trained_model  # the run-side view of a model
    from dmao.training.checkpoint import load_checkpoint

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if int8 and not onnx:
        raise ValueError("an int8 export quantises model.onnx: int8 needs onnx (drop --no-onnx)")
    if not prior_scale >= 0:
        raise ValueError(f"--prior-scale must be >= 0, got {prior_scale}")
    if prior_scale and ema:
        raise ValueError(
            "a CTC prior is estimated for a checkpoint's live weights, not --ema (--prior-scale 0: "
            "export without one)"
        )
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a dmao run folder (no config.yaml)")
    _check_target(out_dir, overwrite)
    model, config, _, ckpt_path = load_trained_model(
        run_dir, checkpoint, torch.device("cpu"), ema=ema
    )
    step = load_checkpoint(ckpt_path).get("step")
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    vocab_size = tokenizer.vocab_size
    prior = None
    if prior_scale:  # before the folder exists: it reads the training data, which may be gone
        prior = ctc_prior_for_run(
            run_dir,
            model,
            config,
            tokenizer,
            ckpt_path,
            device=torch.device("cpu"),
            num_utterances=prior_utterances,
            progress_bar=progress_bar,
        )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its folders are 0700, and this one becomes the export.
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        write_json(tmp / MODEL_FILE, model_spec(model, config.model, vocab_size))
        sampling_rate = config.data.sampling_rate  # features were computed at this rate
        features = FeatureSettings(
            sampling_rate=sampling_rate,
            fbank=fbank_extractor(sampling_rate).config.to_dict(),
            normalisation_buffers=_normalisation_buffers(model),
        )
        write_json(tmp / FEATURES_FILE, features.to_dict())
        shutil.copytree(run_dir / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
        lm_info = None
        if language_model is not None:
            lm_info = bundle_language_model(language_model, tmp, tokenizer)
        prior_info = None if prior is None else bundle_prior(prior, prior_scale, tmp)
        onnx_info = None
        if onnx:
            from dmao.export.onnx_export import export_onnx

            onnx_info = export_onnx(
                model, tmp / ONNX_FILE, num_features=features.num_features, verbose=verbose
            )
        int8_info = None
        if int8:
            from dmao.export.quantize import quantize_onnx

            int8_info = quantize_onnx(
                tmp / ONNX_FILE, tmp / ONNX_INT8_FILE, num_features=features.num_features
            )
        manifest = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION if prior is not None else 1,
            "readme": (
                "A dmao CTC speech recogniser. Load with dmao.export.load_exported(DIR) or run "
                "`dmao transcribe --model DIR FILE...`. model.onnx maps raw log-mel fbank "
                "features (B, T, F) float32 and feature_lens (B,) int64 to log_probs "
                "(B, T', V) float32 and out_lens (B,) int64, blank = 0 (model.int8.onnx, where "
                "present, is the same graph with int8 weights); features.json says how to "
                "compute the features, tokenizer/ maps label ids to text; lm/, where present, "
                "holds an n-gram LM for beam search (the 'lm' record); ctc_prior.json, where "
                "present, the log label prior to subtract, scaled, before the search (the "
                "'prior' record)."
            ),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "versions": {"dmao": __version__, "python": platform.python_version()}
            | _package_versions(),
            # Names and content hashes identify the source; paths would only describe the
            # machine the export was made on.
            "source": {
                "run": run_dir.resolve().name,
                "config_sha256": sha256_file(run_dir / "config.yaml"),
                "checkpoint": ckpt_path.name,
                "checkpoint_sha256": sha256_file(ckpt_path),
                "step": step,
                "weights": "ema" if ema else "live",
            },
            "decode": {"method": config.decode.method, "beam_size": config.decode.beam_size},
            "onnx": onnx_info,
            "onnx_int8": int8_info,
            "lm": lm_info,
            "prior": prior_info,
            "confidence": None if confidence_calibration is None else dict(confidence_calibration),
            "files": file_table(tmp),
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        default_modes(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)  # _check_target allowed it: an export, with overwrite
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s (%s) to %s", run_dir, ckpt_path.name, out_dir)
    return out_dir


def load_exported(
    directory: str | Path, device: str | torch.device = "cpu", *, verify: bool = True
) -> ExportedModel:
    """Load an export folder written by :func:`export_run` (no run folder or config needed).

    Args:
        directory: the export folder.
        device: where to put the model.
        verify: check every file's size and SHA-256 against ``manifest.json`` first.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: a file is not what the manifest records, has the wrong format or version,
            or the weights do not fit the described model.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a dmao export (no {MANIFEST_FILE}); create one with "
            "`dmao export RUN --out DIR`"
        )
    manifest = read_json(manifest_path)
    if manifest.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{manifest_path}: format is {manifest.get('format')!r}, not a dmao export"
        )
    if manifest.get("format_version") not in READ_FORMAT_VERSIONS:
        raise ValueError(
            f"{manifest_path}: export format version {manifest.get('format_version')!r}; this "
            f"dmao {__version__} reads versions {', '.join(map(str, READ_FORMAT_VERSIONS))}"
        )
    if verify:
        lm = manifest.get("lm") or {}
        lm_files = {str(lm[key]) for key in ("file", "lexicon") if lm.get(key)}
        used_later = {ONNX_FILE, ONNX_INT8_FILE} | lm_files
        verify_files(directory, manifest.get("files", {}), used_later, MANIFEST_FILE)

    spec = read_json(directory / MODEL_FILE)
    model = build_from_spec(spec, source=str(directory / MODEL_FILE))
    vocab_size = int(spec["vocab_size"])
    try:
        state = load_file(directory / WEIGHTS_FILE)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{directory / WEIGHTS_FILE}: not readable safetensors: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{directory / WEIGHTS_FILE} does not fit the model described in "
            f"{directory / MODEL_FILE}: {err}"
        ) from err
    tokenizer = load_tokenizer(directory / TOKENIZER_DIR)
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"{directory / TOKENIZER_DIR} has {tokenizer.vocab_size} units but "
            f"{directory / MODEL_FILE} says vocab_size={vocab_size}"
        )
    features = FeatureSettings.from_dict(
        read_json(directory / FEATURES_FILE), str(directory / FEATURES_FILE)
    )
    return ExportedModel(
        directory=directory,
        model=model.to(device).eval(),
        tokenizer=tokenizer,
        features=features,
        manifest=manifest,
        prior=bundled_prior(directory, manifest, MANIFEST_FILE, vocab_size),
        calibration=bundled_calibration(manifest, str(directory / MANIFEST_FILE)),
    )


def model_spec(model: nn.Module, config: ModelConfig, vocab_size: int) -> dict[str, Any]:
    """What ``model.json`` holds: enough to rebuild ``model`` (without weights) through the
    registry: name, constructor settings, the per-layer widths it has now, vocabulary size."""
    model_config = dataclasses.asdict(config)
    model_config["architecture"] = None  # the widths are stored below, not as a path
    return {
        "name": config.name,
        "vocab_size": vocab_size,
        "model_config": model_config,
        "architecture": model.architecture.to_dict(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def build_from_spec(spec: dict[str, Any], source: str = "model.json") -> nn.Module:
    """The model described by :func:`model_spec`, freshly initialised (load weights next).

    Raises:
        ValueError: a field is missing or invalid (the message names ``source``).
    """
    try:
        model_config = config_from_dict({"model": spec["model_config"]}, source=source).model
        architecture = EncoderArchitecture.from_dict(spec["architecture"])
        vocab_size = int(spec["vocab_size"])
    except KeyError as err:
        raise ValueError(f"{source}: missing field {err}") from err
    return build_model_from_config(model_config, vocab_size, architecture=architecture)


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"export target {out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        out_dir.rmdir()  # an empty folder is as good as none
        return
    if not (out_dir / MANIFEST_FILE).is_file():
        raise FileExistsError(
            f"export target {out_dir} exists and is not a dmao export; choose another --out"
        )
    if not overwrite:
        raise FileExistsError(f"export {out_dir} exists; pass --force to replace it")


def _normalisation_buffers(model: nn.Module) -> tuple[str, ...]:
    return tuple(
        f"{name}.{buffer}"
        for name, module in model.named_modules()
        if isinstance(module, GlobalFeatureNorm)
        for buffer, _ in module.named_buffers(recurse=False)
    )


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
