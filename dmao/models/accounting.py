"""Parameter accounting of a block-encoder CTC model by module kind and by layer.

The counts are trainable parameters (``model.parameters()``), biases included; BatchNorm running
statistics are buffers and are not counted. Each adaptable module's count includes its own
pre-LayerNorm and output bias (parameters that belong to no single unit).

Works for every model family here (Conformer, E-Branchformer, Transformer): the per-layer columns
are the block type's module kinds (read from the model's architecture), then the block's fixed,
non-adaptable parts (:data:`BLOCK_FIXED_PARTS`: the Conformer's final LayerNorm is
``block_norm``, the E-Branchformer adds its branch ``merge``), and encoder-level extras such as the
Transformer's final LayerNorm are the kind ``encoder_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from dmao.models.architecture import MODULE_KINDS
from dmao.models.ctc import EncoderCTCModel

__all__ = ["BLOCK_FIXED_PARTS", "ParameterReport", "count_parameters", "format_report"]

# Per-layer columns of a Conformer: the adaptable modules, then the block's final LayerNorm.
LAYER_KINDS: tuple[str, ...] = (*MODULE_KINDS, "block_norm")

BLOCK_FIXED_PARTS: dict[str, str] = {"merge": "merge", "block_norm": "final_norm"}
"""Column name → block attribute of the non-adaptable per-block parts (counted where present)."""
# Encoder-level parts besides the frontend, by column name → encoder attribute.
_ENCODER_FIXED_PARTS: dict[str, str] = {"encoder_norm": "final_norm"}


@dataclass
class ParameterReport:
    """Parameter counts of one model; the parts add up to ``total`` (checked when built)."""

    total: int
    """``sum(p.numel() for p in model.parameters())``."""
    by_kind: dict[str, int]
    """Counts per kind: ``frontend``, one per module kind (Conformer: ``ff1``, ``conv``,
    ``mhsa``, ``ff2``), the fixed block parts (``block_norm``; ``merge`` for E-Branchformer),
    ``encoder_norm`` where the encoder has one, and ``output`` (0 for a bare encoder)."""
    by_layer: list[dict[str, int]] = field(default_factory=list)
    """Per block: counts for each module kind and fixed block part."""
    module_kinds: tuple[str, ...] = MODULE_KINDS
    """The adaptable module kinds (the block type's)."""

    @property
    def adaptable(self) -> int:
        """Parameters of the modules DMAO may resize."""
        return sum(self.by_kind[kind] for kind in self.module_kinds)

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


def count_parameters(model: nn.Module) -> ParameterReport:
    """Count parameters by module kind and by layer, asserting the parts cover the whole model.

    ``model`` is a CTC model of :mod:`dmao.models` or its ``encoder``.
    """
    if isinstance(model, EncoderCTCModel):
        encoder, output = model.encoder, model.output
    elif isinstance(getattr(model, "blocks", None), nn.ModuleList) and hasattr(model, "frontend"):
        encoder, output = model, None
    else:
        raise TypeError(
            "count_parameters expects a ConformerCTC or ConformerEncoder (or another CTC model of "
            f"dmao.models or its encoder), got {type(model).__name__}"
        )
    kinds = encoder.architecture.kinds
    block_parts = [
        part
        for part, attr in BLOCK_FIXED_PARTS.items()
        if any(getattr(block, attr, None) is not None for block in encoder.blocks)
    ]
    by_layer = [
        {
            **{kind: _numel(getattr(block, kind)) for kind in kinds},
            **{part: _numel(getattr(block, BLOCK_FIXED_PARTS[part], None)) for part in block_parts},
        }
        for block in encoder.blocks
    ]
    by_kind = {"frontend": _numel(encoder.frontend)}
    by_kind.update(
        {kind: sum(layer[kind] for layer in by_layer) for kind in (*kinds, *block_parts)}
    )
    extras = {
        part: getattr(encoder, attr)
        for part, attr in _ENCODER_FIXED_PARTS.items()
        if isinstance(getattr(encoder, attr, None), nn.Module)
    }
    by_kind.update({part: _numel(module) for part, module in extras.items()})
    by_kind["output"] = _numel(output)
    total = sum(p.numel() for p in model.parameters())

    # The invariant: every parameter is in exactly one part. A part added to the model but not to
    # this accounting shows up here by name.
    if sum(by_kind.values()) != total:
        counted = {
            id(p)
            for m in (encoder.frontend, output, *extras.values())
            if m is not None
            for p in m.parameters()
        }
        for block in encoder.blocks:
            counted.update(id(p) for p in block.parameters())
        missing = [name for name, p in model.named_parameters() if id(p) not in counted]
        raise AssertionError(
            f"parameter accounting does not add up: parts sum to {sum(by_kind.values())}, model "
            f"has {total}; parameters outside the accounted parts: {missing}"
        )
    return ParameterReport(total=total, by_kind=by_kind, by_layer=by_layer, module_kinds=kinds)


def format_report(report: ParameterReport) -> str:
    """A plain-text table: one row per layer, then the totals per kind, in parameters and M."""
    layer_kinds = list(report.by_layer[0]) if report.by_layer else list(LAYER_KINDS)
    header = ["layer", *layer_kinds, "total"]
    rows = [header]
    for i, layer in enumerate(report.by_layer):
        rows.append(
            [str(i + 1), *(f"{layer[k]:,}" for k in layer_kinds), f"{sum(layer.values()):,}"]
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
