"""The acoustic model as ONNX: ``(features, feature_lens) → (log_probs, out_lens)``.

Exported with PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``,
the default since PyTorch 2.9; the TorchScript exporter is deprecated). The batch and time axes are
dynamic: the graph is captured with symbolic sizes, so the valid-length masks, the 4× time
subsampling and attention work for any batch size and any ``T >= 4`` frames (the model's own
minimum). Every export is checked against PyTorch with ONNX Runtime on two input shapes other than
the one it was traced with before it is accepted.

Inputs and outputs of the graph (blank = 0 in the vocabulary):

- ``features``: ``(B, T, F)`` float32 raw log-mel fbank (normalisation is inside the graph);
- ``feature_lens``: ``(B,)`` int64 valid frames per utterance;
- ``log_probs``: ``(B, T', V)`` float32 CTC log-probabilities, ``T' = (T // 2) // 2``;
- ``out_lens``: ``(B,)`` int64 valid output frames per utterance.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "ONNX_OPSET",
    "OnnxAcousticModel",
    "export_onnx",
    "max_log_prob_difference",
    "quiet_loggers",
]

ONNX_OPSET = 18
"""ONNX opset of the export: the torch.export-based exporter's native opset (PyTorch 2.13)."""

INPUT_NAMES = ("features", "feature_lens")
OUTPUT_NAMES = ("log_probs", "out_lens")

# The exported graph computes in float32 like PyTorch but may fuse or reorder operations
# (ONNX Runtime's graph optimisations): measured max |Δ log-prob| ~1e-6 on the tiny test model.
# Anything near this bound means a wrong graph, not rounding.
_CHECK_TOLERANCE = 1e-3
# The model's minimum input length (its frontend subsamples time by 4).
_MIN_FRAMES = 4
# The loggers of torch.onnx.export (dynamo=True) and the onnxscript/onnx_ir passes it runs.
_EXPORTER_LOGGERS = ("torch", "onnxscript", "onnx_ir", "onnx")
_STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"
# ONNX protobuf files cannot exceed 2 GiB; larger models keep their weights in a side file.
_MAX_INLINE_BYTES = 1_800_000_000


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    num_features: int,
    check: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Export a CTC acoustic model (``model(features, feature_lens) -> (log_probs, out_lens)``).

    The model is copied to CPU in eval mode first; ``model`` itself is left as it was.

    Args:
        model: the acoustic model.
        path: the ``.onnx`` file to write.
        num_features: feature bins F of the input.
        check: run the export with ONNX Runtime on two fresh shapes and compare with PyTorch.
        verbose: let the exporter print and log its progress (torch, onnxscript and onnx_ir log
            an INFO line per optimisation pass: ~70 for the tiny test model, ~190 for the
            benchmark model); otherwise only their errors are shown.

    Returns:
        A description for the export manifest: opset, exporter, input/output specs and, when
        checked, ``max_abs_diff`` of the log-probabilities against PyTorch.

    Raises:
        RuntimeError: the ONNX Runtime check differs from PyTorch by more than
            ``_CHECK_TOLERANCE``.
    """
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval()
    generator = torch.Generator().manual_seed(0)
    # Traced with two utterances of different lengths, so the graph is the padded-batch graph.
    features = torch.randn(2, 64, num_features, generator=generator)
    feature_lens = torch.tensor([64, 41], dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1)
    time = torch.export.Dim("time", min=_MIN_FRAMES)
    inline = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with contextlib.ExitStack() as quiet:
        if not verbose:
            # The exporter prints progress lines, logs every optimisation pass at INFO and warns
            # about its own internals (e.g. that torchvision's operators are not registered).
            quiet.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
            quiet.enter_context(quiet_loggers(*_EXPORTER_LOGGERS))
        program = torch.onnx.export(
            model,
            (features, feature_lens),
            None,  # saved below, after the source paths are taken out
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch, 1: time}, {0: batch}),
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,  # with `verbose`, the loggers above are left at their levels
        )
        _drop_stack_traces(program.model)
        program.save(str(path), external_data=inline > _MAX_INLINE_BYTES)
    info: dict[str, Any] = {
        "file": path.name,
        "opset": ONNX_OPSET,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "inputs": {
            "features": ["batch", "time", num_features],
            "feature_lens": ["batch"],
        },
        "outputs": {"log_probs": ["batch", "time_out", "vocab"], "out_lens": ["batch"]},
        "min_frames": _MIN_FRAMES,
    }
    if check:
        info["max_abs_diff"] = _check_against_torch(model, path, num_features, generator)
    return info


class OnnxAcousticModel:
    """An exported acoustic model run by ONNX Runtime, called like the PyTorch model.

    Args:
        path: the ``.onnx`` file.
        num_threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
    """

    def __init__(self, path: str | Path, *, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load it: {err}") from err
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ValueError(f"{path}: expected inputs {INPUT_NAMES}, the graph has {names}")
        self.path = path

    def __call__(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``features (B, T, F)`` float32, ``feature_lens (B,)`` int64 →
        ``log_probs (B, T', V)`` float32, ``out_lens (B,)`` int64 (CPU tensors)."""
        if features.shape[1] < _MIN_FRAMES:
            raise ValueError(
                f"the model needs at least {_MIN_FRAMES} feature frames, got T={features.shape[1]}"
            )
        log_probs, out_lens = self.session.run(
            list(OUTPUT_NAMES),
            {
                "features": features.detach().cpu().to(torch.float32).numpy(),
                "feature_lens": feature_lens.detach().cpu().to(torch.int64).numpy(),
            },
        )
        return torch.from_numpy(log_probs), torch.from_numpy(out_lens)


@contextlib.contextmanager
def quiet_loggers(*logger_names: str) -> Iterator[None]:
    """Only errors from the named loggers (and their children; ``""`` is the root) inside the
    block."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _drop_stack_traces(model: Any) -> None:
    """Remove the Python stack trace the exporter records on every node (``pkg.torch.onnx.
    stack_trace``: absolute paths of the source files on the exporting machine, ~200 per model).
    The module path of each node (``namespace``, ``pkg.torch.onnx.name_scopes``) stays."""
    import onnx_ir

    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in onnx_ir.traversal.RecursiveGraphIterator(graph):
            node.metadata_props.pop(_STACK_TRACE_KEY, None)


@torch.no_grad()
def _check_against_torch(
    model: nn.Module, path: Path, num_features: int, generator: torch.Generator
) -> float:
    """Max |Δ log-prob| between ONNX Runtime and PyTorch over valid frames of two new shapes."""
    worst = max_log_prob_difference(
        model, OnnxAcousticModel(path), num_features, generator, what=f"ONNX export {path}"
    )
    if worst > _CHECK_TOLERANCE:
        raise RuntimeError(
            f"ONNX export {path}: log-probabilities differ from PyTorch by up to {worst:.3g} "
            f"(tolerance {_CHECK_TOLERANCE}); the graph is wrong"
        )
    return worst


def max_log_prob_difference(
    reference: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    candidate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    num_features: int,
    generator: torch.Generator,
    *,
    what: str,
) -> float:
    """Max |Δ log-prob| of ``candidate`` against ``reference`` (both ``features (B, T, F),
    feature_lens (B,) → log_probs (B, T', V), out_lens (B,)``) over the valid frames of two
    random inputs whose batch sizes and lengths differ from the traced ``(2, 64)``.

    Raises:
        RuntimeError: the output lengths or shapes differ (``what`` names the candidate).
    """
    worst = 0.0
    for lengths in ([37], [101, 5, 80]):
        lens = torch.tensor(lengths, dtype=torch.int64)
        features = torch.randn(len(lengths), max(lengths), num_features, generator=generator)
        expected, expected_lens = reference(features, lens)
        got, got_lens = candidate(features, lens)
        if not torch.equal(got_lens, expected_lens) or got.shape != expected.shape:
            raise RuntimeError(
                f"{what}: output lengths/shape {got_lens.tolist()} {tuple(got.shape)} "
                f"differ from the reference's {expected_lens.tolist()} {tuple(expected.shape)}"
            )
        for b, n in enumerate(expected_lens.tolist()):
            diff = float(np.abs((got[b, :n] - expected[b, :n]).numpy()).max(initial=0.0))
            worst = max(worst, diff)
    return worst
