"""Per-layer widths of an encoder: the thing DMAO edits and checkpoints store.

Every encoder block type declares its adaptable modules, its *module kinds*, in the order the
block applies them (:data:`BLOCK_KINDS`):

- Conformer (METHOD.md §2): two macaron feed-forward modules (``ff1``, ``ff2``), a convolution
  module (``conv``) and multi-head self-attention (``mhsa``);
- E-Branchformer: ``ff1``, the global branch ``mhsa``, the local branch ``cgmlp`` and ``ff2``;
- pre-LN Transformer: ``mhsa`` and ``ff``.

``LayerWidths`` records how wide each module of one block is, in its own natural unit;
``EncoderArchitecture`` is one ``LayerWidths`` per block, all of the same block type. A width of 0
means the block skips that module entirely.

The widths are stored in units, not in DMAO chunks: DMAO's granularity (e.g. 4 chunks per FFN) is a
setting of the method, not of the model, so the model never needs to know it.

The dict form (``{"layers": [{"ff1": 1024, "conv": 256, ...}, ...]}``, what ``architecture.json``
and checkpoints hold) does not name the block type: :meth:`EncoderArchitecture.from_dict` recognises
it from the keys, so Conformer files written before other block types existed load unchanged, and
the model that receives the architecture checks that its kinds are its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BLOCK_KINDS",
    "CONFORMER_KINDS",
    "EBRANCHFORMER_KINDS",
    "MODULE_KINDS",
    "TRANSFORMER_KINDS",
    "EncoderArchitecture",
    "LayerWidths",
    "default_num_heads",
    "register_block_kinds",
]

# The adaptable modules of each block type, in the order the block applies them (METHOD.md §6).
CONFORMER_KINDS: tuple[str, ...] = ("ff1", "conv", "mhsa", "ff2")
EBRANCHFORMER_KINDS: tuple[str, ...] = ("ff1", "mhsa", "cgmlp", "ff2")
TRANSFORMER_KINDS: tuple[str, ...] = ("mhsa", "ff")
# The Conformer's kinds under their original name (the default block type of every API here).
MODULE_KINDS: tuple[str, ...] = CONFORMER_KINDS

BLOCK_KINDS: dict[str, tuple[str, ...]] = {
    "conformer": CONFORMER_KINDS,
    "ebranchformer": EBRANCHFORMER_KINDS,
    "transformer": TRANSFORMER_KINDS,
}
"""Block type → its module kinds. Extend it with :func:`register_block_kinds`."""


def register_block_kinds(block_type: str, kinds: tuple[str, ...]) -> None:
    """Declare a new block type so dict-form architectures with these keys are recognised.

    Registering the same kinds again under the same name is a no-op (module reloads, tests); two
    block types with the same set of kinds would make the dict form ambiguous and are refused.
    """
    kinds = tuple(kinds)
    if not kinds or len(set(kinds)) != len(kinds) or not all(isinstance(k, str) for k in kinds):
        raise ValueError(f"block type {block_type!r}: kinds must be distinct strings, got {kinds}")
    if BLOCK_KINDS.get(block_type) == kinds:
        return
    if block_type in BLOCK_KINDS:
        raise ValueError(
            f"block type {block_type!r} is already registered with kinds "
            f"{list(BLOCK_KINDS[block_type])}"
        )
    for other, other_kinds in BLOCK_KINDS.items():
        if set(other_kinds) == set(kinds):
            raise ValueError(
                f"block type {block_type!r} would have the same kinds as {other!r} "
                f"({list(other_kinds)}); their architectures could not be told apart"
            )
    BLOCK_KINDS[block_type] = kinds


def _describe_known() -> str:
    return "; ".join(f"{name} {list(kinds)}" for name, kinds in BLOCK_KINDS.items())


def _infer_kinds(keys: list[str], where: str) -> tuple[str, ...]:
    """The registered kinds whose set equals ``keys``; otherwise an error against the closest."""
    for kinds in BLOCK_KINDS.values():
        if set(kinds) == set(keys):
            return kinds
    # The closest block type: most keys in common, then fewest extra kinds.
    closest = max(
        BLOCK_KINDS.values(), key=lambda kinds: (len(set(kinds) & set(keys)), -len(kinds))
    )
    missing = [k for k in closest if k not in keys]
    unknown = [k for k in keys if k not in closest]
    raise ValueError(
        f"{where} must have exactly the keys {list(closest)}; missing {missing}, unknown "
        f"{unknown} (block types: {_describe_known()})"
    )


class LayerWidths:
    """Widths of the adaptable modules of one block (0 = module skipped), by module kind.

    ``LayerWidths(1024, 256, 4, 1024)`` is a Conformer block (``ff1, conv, mhsa, ff2``, the
    default ``kinds``); keyword arguments name the kinds and select the block type from them
    (``LayerWidths(ff1=.., mhsa=.., cgmlp=.., ff2=..)`` is an E-Branchformer block); ``kinds=``
    makes the block type explicit. Widths read as attributes (``layer.ff1``) or items
    (``layer["ff1"]``); the object is immutable and compares equal to the same kinds and widths.
    """

    __slots__ = ("_kinds", "_widths")

    def __init__(
        self, *widths: int, kinds: tuple[str, ...] | None = None, **named_widths: int
    ) -> None:
        if widths and named_widths:
            raise ValueError("LayerWidths takes positional widths or named widths, not both")
        if kinds is None:
            kinds = (
                _infer_kinds(list(named_widths), "LayerWidths") if named_widths else MODULE_KINDS
            )
        kinds = tuple(kinds)
        if named_widths:
            if set(named_widths) != set(kinds):
                missing = [k for k in kinds if k not in named_widths]
                unknown = [k for k in named_widths if k not in kinds]
                raise ValueError(
                    f"LayerWidths for kinds {list(kinds)}: missing {missing}, unknown {unknown}"
                )
            values = [named_widths[k] for k in kinds]
        else:
            if len(widths) != len(kinds):
                raise ValueError(
                    f"LayerWidths takes {len(kinds)} widths for kinds {list(kinds)}, "
                    f"got {len(widths)}: {list(widths)}"
                )
            values = list(widths)
        for kind, value in zip(kinds, values, strict=True):
            # bool is an int subclass; `ff1: true` in a YAML file is a mistake, not a width.
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"LayerWidths.{kind} must be a non-negative int, got {value!r} "
                    f"({type(value).__name__})"
                )
        object.__setattr__(self, "_kinds", kinds)
        object.__setattr__(self, "_widths", dict(zip(kinds, values, strict=True)))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The module kinds of this block, in the order the block applies them."""
        return self._kinds

    def __getattr__(self, name: str) -> int:
        # Only called when normal lookup fails, i.e. for the kind names.
        widths = object.__getattribute__(self, "_widths")
        if name in widths:
            return widths[name]
        raise AttributeError(
            f"LayerWidths has no module kind {name!r}; its kinds are {list(widths)}"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LayerWidths is immutable; build a new one")

    def __getitem__(self, kind: str) -> int:
        if kind not in self._widths:
            raise KeyError(f"unknown module kind {kind!r}; expected one of {list(self._kinds)}")
        return self._widths[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerWidths):
            return NotImplemented
        return self._kinds == other._kinds and self._widths == other._widths

    def __hash__(self) -> int:
        return hash((self._kinds, tuple(self._widths.values())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self._widths.items())
        return f"LayerWidths({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        # __slots__ + immutable __setattr__: pickle/deepcopy go through the constructor.
        return (_layer_widths_from_state, (self._kinds, tuple(self._widths.values())))

    def to_dict(self) -> dict[str, int]:
        """``{"ff1": .., "conv": .., "mhsa": .., "ff2": ..}`` (this block type's kinds)."""
        return dict(self._widths)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        where: str = "LayerWidths",
        kinds: tuple[str, ...] | None = None,
    ) -> LayerWidths:
        """Inverse of :meth:`to_dict`; ``where`` names the entry in error messages.

        ``kinds`` fixes the block type; by default it is recognised from the keys
        (:data:`BLOCK_KINDS`).
        """
        if not isinstance(data, Mapping):
            expected = list(kinds) if kinds is not None else "of a block type"
            raise ValueError(
                f"{where} must be a mapping with keys {expected}, "
                f"got {type(data).__name__}: {data!r}"
            )
        if kinds is None:
            kinds = _infer_kinds(list(data), where)
        missing = [k for k in kinds if k not in data]
        unknown = [k for k in data if k not in kinds]
        if missing or unknown:
            raise ValueError(
                f"{where} must have exactly the keys {list(kinds)}; "
                f"missing {missing}, unknown {unknown}"
            )
        try:
            return cls(*(data[k] for k in kinds), kinds=kinds)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


def _layer_widths_from_state(kinds: tuple[str, ...], widths: tuple[int, ...]) -> LayerWidths:
    return LayerWidths(*widths, kinds=kinds)


@dataclass
class EncoderArchitecture:
    """Per-layer module widths of an encoder, bottom (input side) block first."""

    layers: list[LayerWidths]
    """One entry per block; all of the same block type (the same kinds)."""

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
            if layer.kinds != self.layers[0].kinds:
                raise ValueError(
                    f"EncoderArchitecture.layers[{i}] has kinds {list(layer.kinds)}, layer 0 has "
                    f"{list(self.layers[0].kinds)}; all blocks must be of one type"
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
        """The standard stacked-identical-blocks Conformer encoder (METHOD.md §6).

        FFN hidden = ``ff_multiplier * d_model``, conv channels = ``d_model`` and
        ``num_heads`` heads (default ``d_model // head_dim``) in every block. Other block types
        build theirs with :meth:`repeat`.
        """
        num_heads = default_num_heads(d_model, head_dim, num_heads)
        ff_hidden = ff_multiplier * d_model
        return cls.repeat(num_layers, LayerWidths(ff_hidden, d_model, num_heads, ff_hidden))

    @classmethod
    def repeat(cls, num_layers: int, widths: LayerWidths) -> EncoderArchitecture:
        """``num_layers`` blocks with the same ``widths`` (any block type)."""
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        return cls([widths for _ in range(num_layers)])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The module kinds of the block type, in block order."""
        return self.layers[0].kinds

    def widths(self, kind: str) -> list[int]:
        """The widths of one module kind (e.g. ``"ff1"``), bottom layer first."""
        if kind not in self.kinds:
            raise ValueError(f"unknown module kind {kind!r}; expected one of {list(self.kinds)}")
        return [layer[kind] for layer in self.layers]

    def to_dict(self) -> dict[str, list[dict[str, int]]]:
        """Plain ``{"layers": [{"ff1": .., "conv": .., "mhsa": .., "ff2": ..}, ...]}``."""
        return {"layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], kinds: tuple[str, ...] | None = None
    ) -> EncoderArchitecture:
        """Inverse of :meth:`to_dict`, with errors that name the offending entry.

        The block type is recognised from the keys of the first layer (or fixed by ``kinds``);
        every other layer must have the same keys.
        """
        if not isinstance(data, Mapping) or set(data) != {"layers"}:
            raise ValueError(f"EncoderArchitecture dict must be {{'layers': [...]}}, got {data!r}")
        layers = data["layers"]
        if not isinstance(layers, list) or not layers:
            raise ValueError(
                f"EncoderArchitecture 'layers' must be a non-empty list, got {layers!r}"
            )
        first = LayerWidths.from_dict(layers[0], where="layers[0]", kinds=kinds)
        return cls(
            [first]
            + [
                LayerWidths.from_dict(entry, where=f"layers[{i}]", kinds=first.kinds)
                for i, entry in enumerate(layers[1:], start=1)
            ]
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
        rows += [[kind, *(str(w) for w in self.widths(kind))] for kind in self.kinds]
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


def default_num_heads(d_model: int, head_dim: int, num_heads: int | None) -> int:
    """``num_heads``, or ``d_model // head_dim`` when it is None (METHOD.md §6: d/64 heads)."""
    if num_heads is not None:
        return num_heads
    if d_model % head_dim != 0:
        raise ValueError(
            f"d_model={d_model} is not a multiple of head_dim={head_dim}; pass num_heads explicitly"
        )
    return d_model // head_dim
