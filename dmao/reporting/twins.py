"""How much of a run's duplicated capacity is still an identical copy (see
:mod:`dmao.method.diagnostics`), per module kind and layer."""

from __future__ import annotations

from pathlib import Path

import torch

from dmao.method.diagnostics import twin_units
from dmao.reporting.architecture import _layer_of

__all__ = ["twin_table"]


def twin_table(run_dir: str | Path, checkpoint: str = "last", min_cosine: float = 0.999) -> str:
    """Markdown table: per module kind and layer, ``twins/width`` (units whose input weights are
    identical to another unit's within ``min_cosine``), for the run's ``checkpoint``."""
    from dmao.decoding.run_loading import load_trained_model

    model, _, _, path = load_trained_model(Path(run_dir), checkpoint, torch.device("cpu"))
    rows: dict[str, dict[int, str]] = {}
    for name, module in model.adaptable_modules().items():
        layer = _layer_of(name)
        twins = twin_units(module, min_cosine) if module.width else 0
        rows.setdefault(module.kind, {})[layer] = f"{twins}/{module.width}"
    num_layers = 1 + max(layer for cells in rows.values() for layer in cells)
    lines = [
        f"units identical to another unit (cosine >= {min_cosine}) in {path.name}, "
        "as twins/width (layer 1 = bottom):",
        "",
        "| module | " + " | ".join(str(i + 1) for i in range(num_layers)) + " |",
        "|---|" + "---:|" * num_layers,
    ]
    for kind, cells in rows.items():
        lines.append(
            f"| {kind} | " + " | ".join(cells.get(i, "–") for i in range(num_layers)) + " |"
        )
    return "\n".join(lines)
