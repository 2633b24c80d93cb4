"""``train.compile``: the training forward through ``torch.compile`` (docs/performance.md).

Decisions:
- What is compiled is the module the training step calls (the DDP wrapper when distributed, so
  DDP's optimizer splits graphs at bucket boundaries); checkpoints and validation use the plain
  model, which is never compiled.
- ``static`` compiles one graph per batch shape, which only pays with a few shapes: it is refused
  without ``data.pad_to_bucket`` (duration-bounded batches have a new shape almost every step, and
  torch would give up compiling after ``recompile_limit`` of them and silently run eagerly).
  The limit is raised to the number of graphs the run can need: its shapes × (DMAO events + 1),
  since an event changes the layers' widths.
- ``cudagraphs`` marks the start of every step for CUDA graph trees
  (``torch.compiler.cudagraph_mark_step_begin``), so outputs of a step are never overwritten by
  the next one while still in use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dmao.config.schema import COMPILE_MODES

__all__ = ["COMPILE_MODES", "check_compile_config", "compile_forward", "compiled_graphs"]


def check_compile_config(mode: str, *, pad_to_bucket: bool, device: torch.device) -> None:
    """Raise ``ValueError`` (one line naming the setting) for a combination that cannot work."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode in ("static", "cudagraphs") and not pad_to_bucket:
        raise ValueError(
            f"train.compile={mode} needs data.pad_to_bucket=true: without it nearly every batch "
            "has its own shape and would be compiled anew (use train.compile=dynamic instead)"
        )
    if mode == "cudagraphs" and device.type != "cuda":
        raise ValueError(f"train.compile=cudagraphs needs a CUDA device, the run uses {device}")


class _StepBegin(nn.Module):
    """Calls ``cudagraph_mark_step_begin`` before each forward of the compiled ``inner``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return self.inner(*args, **kwargs)


def compile_forward(
    module: nn.Module, mode: str, *, backend: str = "inductor", max_graphs: int = 8
) -> nn.Module:
    """``module`` compiled as ``train.compile=mode`` asks (``none``: ``module`` itself).

    Args:
        module: what the training step calls (the model or its DDP wrapper).
        mode: one of :data:`COMPILE_MODES`.
        backend: the ``torch.compile`` backend.
        max_graphs: how many graphs the run may need (``static``/``cudagraphs``: batch shapes ×
            (events + 1)); torch's ``recompile_limit`` is raised to it when lower.
    """
    if mode == "none":
        return module
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    import torch._dynamo.config as dynamo_config

    if mode == "dynamic":
        return torch.compile(module, dynamic=True, backend=backend)
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, max_graphs)
    dynamo_config.accumulated_recompile_limit = max(
        dynamo_config.accumulated_recompile_limit, 4 * max_graphs
    )
    if mode == "static":
        return torch.compile(module, dynamic=False, backend=backend)
    return _StepBegin(torch.compile(module, dynamic=False, backend=backend, mode="reduce-overhead"))


def compiled_graphs() -> int:
    """Graphs torch.compile has produced in this process so far (dynamo's ``unique_graphs``)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
