"""Per-layer widths of a Conformer encoder: the thing DMAO edits and checkpoints store.

A Conformer block has four adaptable modules (METHOD.md §2): two macaron feed-forward modules
(``ff1``, ``ff2``), a convolution module (``conv``) and multi-head self-attention (``mhsa``).
``LayerWidths`` records how wide each one is in its own natural unit; ``EncoderArchitecture`` is
one ``LayerWidths`` per block. A width of 0 means the block skips that module entirely.

The widths are stored in units, not in DMAO chunks: DMAO's granularity (e.g. 4 chunks per FFN) is a
setting of the method, not of the model, so the model never needs to know it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["MODULE_KINDS", "EncoderArchitecture", "LayerWidths"]

# The adaptable modules of a block, in the order the block applies them (METHOD.md §6).
MODULE_KINDS: tuple[str, ...] = ("ff1", "conv", "mhsa", "ff2")


@dataclass
class LayerWidths:
    """Widths of the four adaptable modules of one Conformer block (0 = module skipped)."""

    ff1: int
    """Hidden units of the first (macaron) feed-forward module."""
    conv: int
    """Channels of the convolution module (GLU output / depthwise conv channels)."""
    mhsa: int
    """Attention heads of the self-attention module (each head has a fixed head dimension)."""
    ff2: int
    """Hidden units of the second feed-forward module."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; `ff1: true` in a YAML file is a mistake, not a width.
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"LayerWidths.{f.name} must be a non-negative int, got {value!r} "
                    f"({type(value).__name__})"
                )

    def to_dict(self) -> dict[str, int]:
        """``{"ff1": .., "conv": .., "mhsa": .., "ff2": ..}``."""
        return {kind: getattr(self, kind) for kind in MODULE_KINDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "LayerWidths") -> LayerWidths:
        """Inverse of :meth:`to_dict`; ``where`` names the entry in error messages."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{where} must be a mapping with keys {list(MODULE_KINDS)}, "
                f"got {type(data).__name__}: {data!r}"
            )
        missing = [k for k in MODULE_KINDS if k not in data]
        unknown = [k for k in data if k not in MODULE_KINDS]
        if missing or unknown:
            raise ValueError(
                f"{where} must have exactly the keys {list(MODULE_KINDS)}; "
                f"missing {missing}, unknown {unknown}"
            )
        try:
            return cls(**{k: data[k] for k in MODULE_KINDS})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


@dataclass
class EncoderArchitecture:
    """Per-layer module widths of a Conformer encoder, bottom (input side) block first."""

    layers: list[LayerWidths]
    """One entry per Conformer block."""

    def __post_init__(self) -> None:
        if not isinstance(self.layers, list) or not self.layers:
            raise ValueError(
                f"EncoderArchitecture.layers must be a non-empty list of LayerWidths, "
                f"got {self.layers!r}"
            )
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerWidths):
                raise ValueError(
                    f"EncoderArchitecture.layers[{i}] must be a LayerWidths, "
                    f"got {type(layer).__name__}; use EncoderArchitecture.from_dict for dicts"
                )

    @classmethod
    def uniform(
        cls,
        num_layers: int,
        d_model: int,
        ff_multiplier: int = 4,
        head_dim: int = 64,
        num_heads: int | None = None,
    ) -> EncoderArchitecture:
        """The standard stacked-identical-blocks encoder (METHOD.md §6).

        FFN hidden = ``ff_multiplier * d_model``, conv channels = ``d_model`` and
        ``num_heads`` heads (default ``d_model // head_dim``) in every block.
        """
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_heads is None:
            if d_model % head_dim != 0:
                raise ValueError(
                    f"d_model={d_model} is not a multiple of head_dim={head_dim}; "
                    f"pass num_heads explicitly"
                )
            num_heads = d_model // head_dim
        ff_hidden = ff_multiplier * d_model
        return cls(
            [LayerWidths(ff_hidden, d_model, num_heads, ff_hidden) for _ in range(num_layers)]
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def widths(self, kind: str) -> list[int]:
        """The widths of one module kind (``"ff1"``, ``"conv"``, ``"mhsa"``, ``"ff2"``)."""
        if kind not in MODULE_KINDS:
            raise ValueError(f"unknown module kind {kind!r}; expected one of {list(MODULE_KINDS)}")
        return [getattr(layer, kind) for layer in self.layers]

    def to_dict(self) -> dict[str, list[dict[str, int]]]:
        """Plain ``{"layers": [{"ff1": .., "conv": .., "mhsa": .., "ff2": ..}, ...]}``."""
        return {"layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderArchitecture:
        """Inverse of :meth:`to_dict`, with errors that name the offending entry."""
        if not isinstance(data, Mapping) or set(data) != {"layers"}:
            raise ValueError(f"EncoderArchitecture dict must be {{'layers': [...]}}, got {data!r}")
        layers = data["layers"]
        if not isinstance(layers, list) or not layers:
            raise ValueError(
                f"EncoderArchitecture 'layers' must be a non-empty list, got {layers!r}"
            )
        return cls(
            [LayerWidths.from_dict(entry, where=f"layers[{i}]") for i, entry in enumerate(layers)]
        )

    def table(self) -> str:
        """A compact table, one row per module kind and one column per layer::

        layer     1    2
        ff1    1024 1024
        conv    256  256
        mhsa      4    4
        ff2    1024    0
        """
        rows = [["layer", *(str(i + 1) for i in range(self.num_layers))]]
        rows += [[kind, *(str(w) for w in self.widths(kind))] for kind in MODULE_KINDS]
        col_widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        return "\n".join(
            " ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, col_widths, strict=True))
            )
            for row in rows
        )

    def __str__(self) -> str:
        return self.table()
