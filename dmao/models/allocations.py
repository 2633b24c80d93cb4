"""Fixed non-uniform allocations at the uniform model's budget: what a searched architecture is
compared with (issue 16).

- :func:`authors_factors`: the authors' final DMAO allocation (METHOD.md §7, d = 384,
  LibriSpeech, 12 layers) transplanted to another depth and width: each module's width relative
  to its default is interpolated over relative depth and rounded to whole components;
- :func:`middle_wide_factors`: a hand-designed allocation in the spirit of icefall's Zipformer
  (its middle stacks run at the largest dimension): every module ``1 − a`` times its default width
  in the first and last block, rising linearly to ``1 + a`` in the middle.

:func:`allocate` turns either into widths at the uniform model's parameter count (within half a
component, the tolerance of a DMAO event). Run as a module to write them for a recipe::

    python -m dmao.models.allocations --config dmao/configs/synthetic/small.yaml \
        --out dmao/configs/synthetic/architectures
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

from dmao.models.architecture import CONFORMER_KINDS, EncoderArchitecture, LayerWidths

__all__ = ["AUTHORS_D384", "allocate", "authors_factors", "middle_wide_factors"]

# METHOD.md §7: units per layer 1→12 of the authors' final d = 384 Conformer (default 4 FFN
# chunks, 4 conv chunks, 6 heads per layer).
AUTHORS_D384: dict[str, list[int]] = {
    "ff1": [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8],
    "ff2": [2, 4, 4, 0, 0, 0, 0, 4, 4, 4, 6, 4],
    "conv": [2, 2, 6, 4, 6, 6, 6, 6, 8, 8, 8, 8],
    "mhsa": [6, 12, 6, 6, 6, 6, 6, 6, 6, 6, 6, 0],
}
_AUTHORS_DEFAULT = {"ff1": 4, "ff2": 4, "conv": 4, "mhsa": 6}


def _interpolate(values: list[float], num_layers: int) -> list[float]:
    """``values`` over relative depth [0, 1], read at ``num_layers`` evenly spaced depths."""
    if num_layers == 1:
        return [sum(values) / len(values)]
    out = []
    for i in range(num_layers):
        x = i * (len(values) - 1) / (num_layers - 1)
        lo = int(x)
        hi = min(lo + 1, len(values) - 1)
        out.append(values[lo] + (x - lo) * (values[hi] - values[lo]))
    return out


def _from_factors(
    factors: Mapping[str, list[float]],
    default: EncoderArchitecture,
    unit: Mapping[str, int],
    scale: float = 1.0,
) -> EncoderArchitecture:
    """Widths = default × factor × scale, rounded to whole components of ``unit[kind]`` units."""
    layers = []
    for i, layer in enumerate(default.layers):
        widths = {}
        for kind in layer.kinds:
            components = layer[kind] // unit[kind]
            widths[kind] = round(components * factors[kind][i] * scale) * unit[kind]
        layers.append(LayerWidths(**widths))
    return EncoderArchitecture(layers)


def _cost(arch: EncoderArchitecture, cost: Mapping[str, int], unit: Mapping[str, int]) -> int:
    """Adaptable parameters of ``arch`` (``cost[kind]`` per component; the per-module shared
    parameters, norms and output biases, are left out)."""
    return sum(layer[k] // unit[k] * cost[k] for layer in arch.layers for k in layer.kinds)


def authors_factors(num_layers: int) -> dict[str, list[float]]:
    """The authors' d = 384 allocation (METHOD.md §7) as width ÷ default width per module kind,
    interpolated over relative depth to ``num_layers`` blocks."""
    return {
        kind: _interpolate([v / _AUTHORS_DEFAULT[kind] for v in values], num_layers)
        for kind, values in AUTHORS_D384.items()
    }


def middle_wide_factors(num_layers: int, amplitude: float = 0.5) -> dict[str, list[float]]:
    """Every module ``1 − amplitude`` × its default width in the first and last block,
    ``1 + amplitude`` in the middle, linear in between."""
    if not 0.0 <= amplitude < 1.0:
        raise ValueError(f"amplitude must be in [0, 1), got {amplitude}")
    n = num_layers
    shape = [1 - amplitude + 2 * amplitude * (1 - abs(2 * i / max(n - 1, 1) - 1)) for i in range(n)]
    return {kind: list(shape) for kind in CONFORMER_KINDS}


def allocate(
    factors: Mapping[str, list[float]],
    default: EncoderArchitecture,
    cost: Mapping[str, int],
    unit: Mapping[str, int],
    kinds: tuple[str, ...] = ("ff1", "ff2"),
) -> EncoderArchitecture:
    """``default`` reshaped by ``factors`` at ``default``'s parameter count.

    All factors are first scaled by one number chosen so the rounded widths come closest to the
    budget; then single components of the ``kinds`` modules (FFNs: the finest-grained cost) are
    added where the factor is largest, or removed where it is smallest among non-empty modules,
    each module at most once, until the count is within half a component — the tolerance of a
    DMAO event."""
    budget = _cost(default, cost, unit)
    scales = [0.5 + 0.001 * i for i in range(1501)]
    best = min(
        scales,
        key=lambda s: abs(_cost(_from_factors(factors, default, unit, s), cost, unit) - budget),
    )
    layers = [layer.to_dict() for layer in _from_factors(factors, default, unit, best).layers]
    step = min(cost[k] for k in kinds)
    touched: set[tuple[int, str]] = set()
    while True:
        arch = EncoderArchitecture([LayerWidths(**layer) for layer in layers])
        delta = _cost(arch, cost, unit) - budget
        if abs(delta) <= step // 2:
            return arch
        grow = delta < 0
        candidates = [(i, k) for i in range(len(layers)) for k in kinds
                      if (i, k) not in touched and (grow or layers[i][k] > 0)]  # fmt: skip
        if not candidates:
            raise ValueError(f"cannot bring the allocation within half a component of {budget}")
        pick = (max if grow else min)(candidates, key=lambda c: (factors[c[1]][c[0]], -c[0]))
        touched.add(pick)
        i, k = pick
        layers[i][k] += unit[k] if grow else -unit[k]


def _main(argv: list[str] | None = None) -> int:
    from dmao.config import load_config
    from dmao.training.model_setup import build_model_from_config

    parser = argparse.ArgumentParser(description="write fixed allocations for a recipe")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--granularity", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=32, help="does not change the encoder")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    model = build_model_from_config(cfg.model, args.vocab_size)
    modules = model.adaptable_modules()
    unit, cost = {}, {}
    for m in modules.values():
        m.set_granularity(args.granularity)
        unit[m.kind], cost[m.kind] = m.units_per_component, m.component_cost()
    default = model.default_architecture
    args.out.mkdir(parents=True, exist_ok=True)
    n = default.num_layers
    for name, factors in (("authors", authors_factors(n)), ("middle_wide", middle_wide_factors(n))):
        matched = allocate(factors, default, cost, unit)
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(matched.to_dict(), indent=1) + "\n")
        print(f"{path}:\n{matched.table()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
