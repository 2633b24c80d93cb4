"""The peak FLOP/s an MFU is measured against: a vendor table on GPU, a matmul on CPU.

GPU: NVIDIA's datasheets give Tensor Core peaks "with sparsity" (2:4 structured); the dense
peaks below are half of those (the same numbers as the dense columns of NVIDIA's H100 and A100
whitepapers). Sources:

- H100 SXM5 / H100 PCIe / H100 NVL: "NVIDIA H100 Tensor Core GPU" datasheet (2023) and the
  "NVIDIA H100 Tensor Core GPU Architecture" whitepaper, table 3 (SXM5: FP32 66.9, TF32 494.7,
  BF16/FP16 989.4 TFLOP/s dense; PCIe: 51.2 / 378 / 756).
- H200 SXM / H200 NVL: "NVIDIA H200 Tensor Core GPU" datasheet (2024): the same compute as H100
  SXM5 (FP32 67, TF32 989*, BF16/FP16 1,979* TFLOP/s, * = with sparsity) and as H100 NVL (FP32 60,
  TF32 835*, BF16/FP16 1,671*).
- A100 SXM4 / PCIe, 40 and 80 GB: "NVIDIA A100 Tensor Core GPU" datasheet (2021): FP32 19.5,
  TF32 156 (312*), BF16/FP16 312 (624*) TFLOP/s.

CPU: there is no useful table for a shared, thermally and power-limited core, so the peak is what
a large matrix product reaches in the same process, at the same thread count and in the
precision the step uses (:func:`time_matmul`), interleaved with the training steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["GPU_PEAK_TFLOPS", "gpu_peak_flops", "make_matmul", "peak_precision", "time_matmul"]

GPU_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    # Dense (no sparsity) TFLOP/s per precision; "fp32" is the CUDA-core rate (no Tensor Cores).
    "H100 SXM": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H200 SXM": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
"""Dense peak TFLOP/s by card and precision (sources in the module docstring)."""

# torch.cuda.get_device_name() -> table row; the first substring that matches wins. Seen names:
# "NVIDIA H200", "NVIDIA H100 80GB HBM3" (SXM5), "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB".
_CARD_PATTERNS = (
    ("H200 NVL", "H200 NVL"),
    ("H100 NVL", "H100 NVL"),
    ("H100 PCIE", "H100 PCIe"),
    ("H200", "H200 SXM"),
    ("H100", "H100 SXM"),
    ("A100", "A100"),
)


def peak_precision(precision: str, device: torch.device) -> str:
    """The peak column for ``train.precision`` on ``device``: bf16/fp16 as given; fp32 is
    ``tf32`` on CUDA when float32 matrix products may use TF32 (``torch.
    set_float32_matmul_precision('high')``), else ``fp32``."""
    if precision != "fp32":
        return precision
    if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "fp32"


def gpu_peak_flops(device_name: str, precision: str) -> tuple[float, str] | None:
    """Dense peak FLOP/s of the card ``device_name`` in ``precision`` (bf16, fp16, tf32, fp32)
    and the table row used, or None for a card the table does not know."""
    upper = device_name.upper()
    for pattern, card in _CARD_PATTERNS:
        if pattern in upper:
            return GPU_PEAK_TFLOPS[card][precision] * 1e12, card
    return None


_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
           "fp16": torch.float16}  # fmt: skip


def make_matmul(n: int, precision: str, device: torch.device) -> tuple[Callable[[], None], int]:
    """An ``n × n @ n × n`` matrix product in ``precision`` on ``device`` (synchronised on
    CUDA), and its FLOPs (``2 n³``)."""
    if n < 1:
        raise ValueError(f"matmul size must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device, _DTYPES[precision])
    b = torch.randn(n, n, generator=generator).to(device, _DTYPES[precision])

    def run() -> None:
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()  # first call: library initialisation, kernel selection
    return run, 2 * n**3


def time_matmul(run: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``repeats`` calls of ``run``."""
    walls, cpus = [], []
    for _ in range(max(repeats, 1)):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    walls.sort()
    cpus.sort()
    return walls[len(walls) // 2], cpus[len(cpus) // 2]
