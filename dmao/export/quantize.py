"""An int8 copy of the exported ONNX acoustic model (``dmao export --int8``).

ONNX Runtime's dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``), as
sherpa-onnx and icefall ship their ``*.int8.onnx`` models: the weights of every matrix product
with a constant weight (the feed-forward, attention projection, convolution point-wise and output
layers: ``MatMul``/``Gemm``) are stored as int8 with one scale per output channel, and their
inputs are quantised per call (``DynamicQuantizeLinear`` → ``MatMulInteger``). Products of two
activations (attention scores and values), the depthwise and frontend convolutions,
normalisation and the softmax stay float32. Inputs and outputs are those of ``model.onnx``.

The graph is checked against the float32 graph on two input shapes other than the traced one:
the output lengths and shapes must be equal, and the largest log-probability difference is
recorded (it is not zero: that is the quantisation error). What it costs in WER and gains in
speed is measured on real audio by ``benchmarks/bench_export.py`` (BENCHMARKS.md).

Per-channel scales, not ORT's per-tensor default: on 300 test utterances of a 4 M-parameter
Conformer both kept the float32 WER (32.93 %: per tensor 32.93 %, per channel 32.88 %) at the same
speed, and per-channel scales do not let one channel with large weights coarsen all the others.

ORT's pre-processing step (``quant_pre_process``) is not run: its symbolic shape inference fails
on the ``torch.export`` graph, and dynamic quantisation of constant weights needs no shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dmao.export.onnx_export import OnnxAcousticModel, max_log_prob_difference, quiet_loggers

__all__ = ["QUANTIZED_OPS", "quantize_onnx"]

QUANTIZED_OPS = ("MatMul", "Gemm")
"""Operators whose constant weights become int8 (ONNX Runtime's MatMulInteger on CPU)."""


def quantize_onnx(source: str | Path, target: str | Path, *, num_features: int) -> dict[str, Any]:
    """Write an int8 dynamically quantised copy of the ONNX acoustic model ``source``.

    Args:
        source: the float32 ``model.onnx`` (inputs ``features (B, T, F)``, ``feature_lens (B,)``).
        target: the ``.onnx`` file to write (``model.int8.onnx`` in an export).
        num_features: feature bins F of the input, for the check.

    Returns:
        A description for the export manifest: file, method, operators, how many matrix
        products were quantised, and ``max_abs_diff`` of the log-probabilities against the
        float32 graph on the check inputs.

    Raises:
        RuntimeError: quantisation left no matrix product in int8, or the quantised graph's
            output lengths or shapes differ from the float32 graph's.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    # ORT warns on the root logger that pre-processing is recommended (see the module docstring).
    with quiet_loggers(""):
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
        )
    ops = [node.op_type for node in onnx.load(str(target), load_external_data=False).graph.node]
    quantized = ops.count("MatMulInteger") + ops.count("QGemm")
    if quantized == 0:
        raise RuntimeError(f"int8 export {target}: no matrix product was quantised")
    return {
        "file": target.name,
        "method": "onnxruntime.quantization.quantize_dynamic, int8 weights, per channel",
        "operators": list(QUANTIZED_OPS),
        "quantized_products": quantized,
        "float_products": ops.count("MatMul") + ops.count("Gemm"),
        "max_abs_diff": max_log_prob_difference(
            OnnxAcousticModel(source),
            OnnxAcousticModel(target),
            num_features,
            torch.Generator().manual_seed(0),
            what=f"int8 export {target}",
        ),
    }
