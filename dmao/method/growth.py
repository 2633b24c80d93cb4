"""How the new copy of a duplicated unit starts: :class:`GrowthInit` (METHOD.md §4.5).

Read by :func:`dmao.method.units.reselect_units` when a module is rebuilt; the per-module-type
GradMax decisions are in :mod:`dmao.method.gradmax`, the reference mode in
:mod:`dmao.method.reference`. Imports only torch and the config's list of modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from dmao.method.config import GROWTH_INITS

__all__ = ["GrowthInit"]


@dataclass(frozen=True)
class GrowthInit:
    """How the new copy of a duplicated unit starts (METHOD.md §4.5).

    ``mode``: ``copy`` (exact), ``copy_noise`` (the new copy's trainable entries get N(0,
    ``noise_variance``) noise from the global torch RNG), ``random`` (the new copy is freshly
    initialised like a new layer), ``function_preserving`` (Net2Net: every copy of a unit that
    appears k times gets its outgoing weights divided by k, so the module's output is unchanged)
    or ``fresh`` (the new copy is a new unit: freshly initialised like ``random`` except its
    outgoing weights, which start at zero, so the module's output is unchanged and, unlike the
    other function-preserving choices, the copy is no twin of its original: with identical
    weights, inputs and Adam moments two copies get identical updates and never separate).

    Growth that keeps the function and can pay during training (docs/dmao_api.md §6):

    - ``split`` (Net2Net with asymmetry, as in LEMON, arXiv 2310.07999): a unit that appears k > 1
      times keeps ``split_alpha`` of its outgoing weights in its first copy and gives each later
      copy ``(1 − split_alpha) / (k − 1)``; the function is kept and the twins' outgoing weights
      differ. Every other entry of the unit receives a gradient proportional to the unit's share,
      so its remap carries that share as :attr:`ParamRemap.moment_scale`.
    - ``gradmax`` (Evci et al. 2022, arXiv 2201.05125): the new copy's entries named in the
      module's ``GRADMAX_ZERO`` start at zero, its outgoing weights are the top left singular
      vectors of ``gradient_outer`` (E[∂L/∂z·hᵀ], :mod:`dmao.method.gradmax`) scaled to
      ``gradmax_scale`` × the mean norm of the module's other outgoing columns, and everything else
      is copied from the original. Modules without ``GRADMAX_ZERO`` get ``fresh`` instead
      (the per-module-type decisions are in :mod:`dmao.method.gradmax`).
    """

    mode: str = "copy"
    noise_variance: float = 1e-4
    split_alpha: float = 0.6
    """``split``: the first copy's share of the outgoing weights, in (0, 1) and not 0.5."""
    gradmax_scale: float = 1.0
    """``gradmax``: norm of a new outgoing column relative to the mean norm of the module's
    other outgoing columns (GradMax's ``mean_norm`` scaling)."""
    gradient_outer: Tensor | None = field(default=None, compare=False, repr=False)
    """``gradmax``: ``(d_out, d_in)`` float32 E[∂L/∂z·hᵀ] of the module being rebuilt (from
    :meth:`dmao.method.gradmax.GradMaxCollector.matrix`); one ``GrowthInit`` per module."""

    def __post_init__(self) -> None:
        if self.mode not in GROWTH_INITS:
            raise ValueError(
                f"GrowthInit.mode must be one of {list(GROWTH_INITS)}, got {self.mode!r}"
            )
        if not (0.0 < self.split_alpha < 1.0) or self.split_alpha == 0.5:
            # α = 0.5 is function_preserving: twins with equal outgoing weights.
            raise ValueError(
                f"GrowthInit.split_alpha must be in (0, 1) and not 0.5, got {self.split_alpha}"
            )
        if self.gradmax_scale <= 0:
            raise ValueError(f"GrowthInit.gradmax_scale must be > 0, got {self.gradmax_scale}")

    @property
    def fresh_weights(self) -> bool:
        """Whether new copies get weights of their own (``random``, ``fresh``, ``gradmax``), so
        the original's Adam moments do not describe them."""
        return self.mode in ("random", "fresh", "gradmax")
