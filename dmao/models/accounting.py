"""Parameter accounting of a Conformer-CTC model by module kind and by layer.

The counts are trainable parameters (``model.parameters()``), biases included; BatchNorm running
statistics are buffers and are not counted. Each adaptable module's count includes its own
pre-LayerNorm and output bias (parameters that belong to no single unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from dmao.models.architecture import MODULE_KINDS
from dmao.models.conformer import ConformerCTC, ConformerEncoder

__all__ = ["ParameterReport", "count_parameters", "format_report"]

# Per-layer columns: the adaptable modules, then the block's final LayerNorm.
LAYER_KINDS: tuple[str, ...] = (*MODULE_KINDS, "block_norm")


@dataclass
class ParameterReport:
    """Parameter counts of one model; the parts add up to ``total`` (checked when built)."""

    total: int
    """``sum(p.numel() for p in model.parameters())``."""
    by_kind: dict[str, int]
    """Counts per kind: ``frontend``, ``ff1``, ``conv``, ``mhsa``, ``ff2``, ``block_norm``,
    ``output`` (0 for a bare encoder)."""
    by_layer: list[dict[str, int]] = field(default_factory=list)
    """Per block: counts for ``ff1``, ``conv``, ``mhsa``, ``ff2``, ``block_norm``."""

    @property
    def adaptable(self) -> int:
        """Parameters of the modules DMAO may resize (all FFN, conv and MHSA modules)."""
        return sum(self.by_kind[kind] for kind in MODULE_KINDS)

    def to_dict(self) -> dict:
        """JSON-friendly form (``dmao info --json``)."""
        return {
            "total": self.total,
            "adaptable": self.adaptable,
            "by_kind": dict(self.by_kind),
            "by_layer": [dict(layer) for layer in self.by_layer],
        }


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: ConformerCTC | ConformerEncoder) -> ParameterReport:
    """Count parameters by module kind and by layer, asserting the parts cover the whole model."""
    if isinstance(model, ConformerCTC):
        encoder, output = model.encoder, model.output
    elif isinstance(model, ConformerEncoder):
        encoder, output = model, None
    else:
        raise TypeError(
            "count_parameters expects a ConformerCTC or ConformerEncoder, "
            f"got {type(model).__name__}"
        )
    by_layer = [
        {
            **{kind: _numel(getattr(block, kind)) for kind in MODULE_KINDS},
            "block_norm": _numel(block.final_norm),
        }
        for block in encoder.blocks
    ]
    by_kind = {"frontend": _numel(encoder.frontend)}
    by_kind.update({kind: sum(layer[kind] for layer in by_layer) for kind in LAYER_KINDS})
    by_kind["output"] = _numel(output)
    total = sum(p.numel() for p in model.parameters())

    # The invariant: every parameter is in exactly one part. A part added to the model but not to
    # this accounting shows up here by name.
    if sum(by_kind.values()) != total:
        counted = {
            id(p) for m in (encoder.frontend, output) if m is not None for p in m.parameters()
        }
        for block in encoder.blocks:
            counted.update(id(p) for p in block.parameters())
        missing = [name for name, p in model.named_parameters() if id(p) not in counted]
        raise AssertionError(
            f"parameter accounting does not add up: parts sum to {sum(by_kind.values())}, model "
            f"has {total}; parameters outside the accounted parts: {missing}"
        )
    return ParameterReport(total=total, by_kind=by_kind, by_layer=by_layer)


def format_report(report: ParameterReport) -> str:
    """A plain-text table: one row per layer, then the totals per kind, in parameters and M."""
    header = ["layer", *LAYER_KINDS, "total"]
    rows = [header]
    for i, layer in enumerate(report.by_layer):
        rows.append(
            [str(i + 1), *(f"{layer[k]:,}" for k in LAYER_KINDS), f"{sum(layer.values()):,}"]
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append("")
    name_width = max(len(k) for k in [*report.by_kind, "adaptable", "total"])
    for kind, n in [
        *report.by_kind.items(),
        ("adaptable", report.adaptable),
        ("total", report.total),
    ]:
        lines.append(f"{kind.ljust(name_width)}  {n:>12,}  {n / 1e6:8.2f} M")
    return "\n".join(lines)
