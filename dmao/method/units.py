"""The one interface a model implements so DMAO can score, drop and duplicate its units.

DMAO does not know what a Conformer is. A model lists its adaptable modules (e.g.
``ConformerCTC.adaptable_modules()``) and each one implements :class:`AdaptableModule`:

- a *unit* is the module's natural width unit (an FFN hidden unit, a conv channel, a head);
- a *component* is ``units_per_component`` consecutive units, the thing that is ranked, dropped
  and duplicated (METHOD.md §2);
- :meth:`AdaptableModule.reselect` rebuilds the module's real tensors (no masks) from a list of old
  unit indices: dropped units are absent, a duplicated unit appears twice. It returns one
  :class:`ParamRemap` per parameter so the optimizer state can follow the units.

Modules that store each unit as slices of a few tensors describe those slices with
:class:`UnitSlice` and get scoring and rebuilding from :func:`unit_scores` and
:func:`reselect_units` (FeedForward, ConvolutionModule and MultiHeadSelfAttention do).

Decisions:
- ``reselect`` never edits a tensor in place: every touched sub-module is replaced by a shallow
  clone holding new tensors. The old objects stay intact, so a failed reallocation is undone by
  putting the old sub-modules back (``dmao.method.allocator``).
- Parameters that belong to no unit (pre-norms, output biases, BatchNorm's batch counter) keep
  their objects, and with them their optimizer state, unless the module shrinks to width 0, when
  it owns nothing at all (the block skips it). Growing back from width 0 is impossible: there is no
  unit left to copy, so ``reselect`` refuses it.
- This module imports only torch, so model files may import it without a cycle.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from dmao.method.gradmax import gradmax_outgoing
from dmao.method.growth import GrowthInit

__all__ = [
    "AdaptableModule",
    "ParamRemap",
    "SlicedUnits",
    "UnitSlice",
    "components_to_units",
    "reselect_units",
    "unit_scores",
]


@dataclass
class ParamRemap:
    """How one parameter of a module maps from before a :meth:`reselect` to after it.

    ``new = old.index_select(dim, index)`` (up to the growth initialisation of new copies);
    ``dim is None`` means the parameter object was kept as it is (``new is old``); ``new is None``
    means it was removed (the module shrank to width 0).
    """

    old: nn.Parameter
    new: nn.Parameter | None
    dim: int | None = None
    index: Tensor | None = None
    """``(new_size,)`` int64: the old position along ``dim`` of every new position."""
    fresh: Tensor | None = None
    """``(new_size,)`` bool: True where the position belongs to a second (or later) copy."""
    moment_scale: Tensor | None = None
    """``(new_size,)`` float or None (all 1): the factor by which the rebuild multiplies the
    gradient at each new position (``growth_init=split``: the unit's share of its outgoing
    weights). :func:`~dmao.method.optimizer_state.remap_optimizer` multiplies first moments by it
    and second moments by its square, so the state is what it would be had the unit always been
    split."""


@dataclass(frozen=True)
class UnitSlice:
    """Where the units of a module live in one of its tensors.

    The tensor ``path`` (relative to the module, e.g. ``"linear1.weight"``) has
    ``groups * width * unit_size`` entries along ``dim``; unit ``u`` owns, in every group ``g``,
    positions ``[(g*width + u)*unit_size, (g*width + u + 1)*unit_size)``. ``groups=2`` describes GLU
    value/gate halves, ``unit_size=head_dim`` contiguous heads.

    ``role``: ``input`` (the unit's input projection: scored, METHOD.md §3), ``output`` (its
    outgoing weights: divided by the copy count in function-preserving growth, split in ``split``,
    set from the gradient in ``gradmax``) or ``inner``.
    ``init_bound`` / ``init_const``: the fresh value of a new copy with ``GrowthInit("random")``:
    uniform in ±bound (PyTorch's default for Linear/Conv) or a constant (norm scales and shifts,
    running statistics).
    """

    path: str
    dim: int = 0
    unit_size: int = 1
    groups: int = 1
    role: str = "inner"
    init_bound: float | None = None
    init_const: float | None = None


@runtime_checkable
class AdaptableModule(Protocol):
    """What DMAO needs from one adaptable module (any ``nn.Module`` may implement it).

    Attributes set by the owning model (``adaptable_modules()``): ``kind`` (e.g. ``"ff1"``),
    ``default_width`` (width in units the model was sized with), ``base_dropout`` (dropout at the
    default width). Attribute set by DMAO: ``units_per_component`` (via :meth:`set_granularity`).
    ``dropout`` is the float the module's forward uses; DMAO rescales it (METHOD.md §4.7).
    """

    kind: str
    default_width: int
    base_dropout: float
    dropout: float
    units_per_component: int

    @property
    def width(self) -> int: ...

    def set_granularity(self, granularity: int) -> None:
        """Set ``units_per_component`` so the default width holds ``granularity`` components."""

    def num_components(self) -> int:
        """Current number of components (``width // units_per_component``)."""

    def component_cost(self) -> int:
        """Parameters one component owns, biases included (METHOD.md §2)."""

    def component_scores(self, metric: str) -> Tensor:
        """``(num_components,)`` float32 scores from the weights and their ``.grad``."""

    def reselect(self, units: Tensor, growth: GrowthInit) -> dict[str, ParamRemap]:
        """Rebuild with old units ``units (new_width,)``; returns a remap per parameter name."""

    def parameters(self, recurse: bool = True): ...


def components_to_units(components: Tensor, units_per_component: int) -> Tensor:
    """Component indices ``(K,)`` → the unit indices they cover ``(K * units_per_component,)``."""
    offsets = torch.arange(units_per_component, device=components.device)
    return (components[:, None] * units_per_component + offsets).reshape(-1)


def _positions(units: Tensor, width: int, s: UnitSlice) -> Tensor:
    """Old positions along ``s.dim`` of every new position, for new unit list ``units (W',)``."""
    offsets = torch.arange(s.unit_size)
    per_group = (units[:, None] * s.unit_size + offsets).reshape(-1)  # (W' * unit_size,)
    return torch.cat([g * width * s.unit_size + per_group for g in range(s.groups)])


def _expand(per_unit: Tensor, s: UnitSlice) -> Tensor:
    """A per-new-unit value ``(W',)`` repeated to every new position of slice ``s``."""
    return per_unit.repeat_interleave(s.unit_size).repeat(s.groups)


def _gradmax_zero_groups(entries: Iterable[str | tuple[str, int]]) -> dict[str, set[int] | None]:
    """``GRADMAX_ZERO`` as ``{path: groups}``: a bare path zeroes all of its groups (``None``), a
    ``(path, g)`` entry only group ``g`` (e.g. the V block of a fused QKV projection)."""
    out: dict[str, set[int] | None] = {}
    for entry in entries:
        if isinstance(entry, str):
            out[entry] = None
        else:
            path, group = entry
            current = out.setdefault(path, set())
            if current is not None:
                current.add(int(group))
    return out


def _in_groups(s: UnitSlice, new_width: int, groups: set[int] | None) -> Tensor:
    """``(s.groups * new_width * s.unit_size,)`` bool: True at the positions of ``groups``."""
    size = new_width * s.unit_size
    if groups is None:
        return torch.ones(s.groups * size, dtype=torch.bool)
    mask = torch.zeros(s.groups * size, dtype=torch.bool)
    for g in groups:
        mask[g * size : (g + 1) * size] = True
    return mask


def _get(module: nn.Module, path: str) -> Tensor:
    sub_name, _, attr = path.rpartition(".")
    return getattr(module.get_submodule(sub_name), attr)


def unit_scores(module: nn.Module, slices: list[UnitSlice], width: int, metric: str) -> Tensor:
    """Per-unit importance ``(width,)`` float32, on the weights' device, from the ``role="input"``
    slices.

    ``taylor``: mean |w·∂L/∂w|; ``gradient``: mean |∂L/∂w|; ``magnitude``: mean |w|, each over all
    entries a unit owns in the input slices (so a head is scored on its own Q, K and V rows).
    """
    total: Tensor | None = None
    count = 0
    for s in slices:
        if s.role != "input":
            continue
        param = _get(module, s.path)
        if total is None:  # on the weights' device: no host transfer per slice
            total = torch.zeros(width, dtype=torch.float32, device=param.device)
        w = param.detach()
        if metric == "magnitude":
            value = w.abs()
        elif metric in ("taylor", "gradient"):
            if param.grad is None:
                raise RuntimeError(
                    f"DMAO {metric} score needs the gradient of {s.path} in "
                    f"{type(module).__name__}, but .grad is None; score after backward and "
                    f"before zero_grad"
                )
            g = param.grad.detach()
            value = (w * g).abs() if metric == "taylor" else g.abs()
        else:
            raise ValueError(
                f"unknown DMAO metric {metric!r}; expected taylor, gradient, magnitude"
            )
        value = value.float().movedim(s.dim, 0)  # (groups*width*unit_size, ...)
        value = value.reshape(s.groups, width, s.unit_size, -1)
        total += value.sum(dim=(0, 2, 3))
        count += value.shape[0] * value.shape[2] * value.shape[3]
    if total is None or count == 0:
        raise ValueError(f"{type(module).__name__} has no UnitSlice with role='input' to score")
    return total / count


def _fresh_values(s: UnitSlice, like: Tensor) -> Tensor:
    if s.init_const is not None:
        return torch.full_like(like, s.init_const)
    if s.init_bound is None:
        raise ValueError(f"UnitSlice {s.path} has no init_bound/init_const for random growth")
    return torch.empty_like(like).uniform_(-s.init_bound, s.init_bound)


def _sync_shape_attributes(sub: nn.Module) -> None:
    """Make a resized sub-module's size attributes (used by repr and forward) match its tensors."""
    if isinstance(sub, nn.Linear):
        sub.out_features, sub.in_features = sub.weight.shape
    elif isinstance(sub, nn.Conv1d):
        if sub.groups != sub.in_channels or sub.in_channels != sub.out_channels:
            raise TypeError("only depthwise Conv1d (groups == channels) can be resized per unit")
        sub.in_channels = sub.out_channels = sub.groups = sub.weight.shape[0]
    elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
        sub.num_features = (
            sub.running_mean.shape[0] if sub.running_mean is not None else sub.weight.shape[0]
        )


def _split_shares(copies: Tensor, fresh_unit: Tensor, alpha: float) -> Tensor:
    """``(W',)`` float32 share of its unit's outgoing weights of every new unit (``split``).

    A unit listed k > 1 times: α for its first copy, (1 − α)/(k − 1) for each later one (the
    shares sum to 1, so the module computes the same); 1 for a unit listed once.
    """
    share = torch.ones(copies.shape, dtype=torch.float32)
    share[(copies > 1) & ~fresh_unit] = alpha
    share[fresh_unit] = (1.0 - alpha) / (copies[fresh_unit] - 1).float()
    return share


@torch.no_grad()
def reselect_units(
    module: nn.Module,
    slices: list[UnitSlice],
    submodules: tuple[str, ...],
    width: int,
    units: Tensor,
    growth: GrowthInit,
) -> dict[str, ParamRemap]:
    """Rebuild ``module`` so that it holds the old units ``units`` (``(W',)`` int64) in order.

    ``submodules`` names every child of ``module``; all become ``None`` when ``W' == 0``.
    Sub-modules whose tensors change are replaced by shallow clones with new tensors; nothing is
    edited in place (see the module docstring).

    Returns:
        One :class:`ParamRemap` per parameter name of ``module`` before the call.
    """
    units = torch.as_tensor(units, dtype=torch.int64).cpu()
    if width == 0:
        raise ValueError(
            f"cannot reselect units of a width-0 {type(module).__name__}: it has no unit to copy"
        )
    if units.dim() != 1 or (units.numel() and (units.min() < 0 or units.max() >= width)):
        raise ValueError(
            f"{type(module).__name__}.reselect: units must be a 1-D list of indices in "
            f"[0, {width}), got {units.tolist()}"
        )
    old_params = dict(module.named_parameters())
    if units.numel() == 0:
        for name in submodules:
            setattr(module, name, None)
        return {name: ParamRemap(old=p, new=None) for name, p in old_params.items()}

    copies = torch.bincount(units, minlength=width)[units]  # (W',) copies of each new unit
    seen = torch.zeros(width, dtype=torch.bool)
    fresh_unit = torch.zeros(units.numel(), dtype=torch.bool)  # second and later copies
    for j, u in enumerate(units.tolist()):
        fresh_unit[j] = bool(seen[u])
        seen[u] = True
    mode = growth.mode
    gradmax_zero = _gradmax_zero_groups(getattr(module, "GRADMAX_ZERO", ()))
    if mode == "gradmax" and not gradmax_zero:
        mode = "fresh"  # no sound GradMax for this module type (dmao.method.gradmax)
    if mode == "gradmax" and growth.gradient_outer is None and fresh_unit.any():
        raise ValueError(
            f"growth_init=gradmax for {type(module).__name__} needs GrowthInit.gradient_outer "
            f"(E[dL/dz h^T] from dmao.method.gradmax.GradMaxCollector)"
        )
    share = _split_shares(copies, fresh_unit, growth.split_alpha) if mode == "split" else None

    clones: dict[str, nn.Module] = {}
    remaps: dict[str, ParamRemap] = {}
    for s in slices:
        sub_name, _, attr = s.path.rpartition(".")
        if sub_name not in clones:
            sub = module.get_submodule(sub_name)
            clone = copy.copy(sub)
            clone._parameters = dict(sub._parameters)
            clone._buffers = dict(sub._buffers)
            clone._modules = dict(sub._modules)
            clones[sub_name] = clone
        clone = clones[sub_name]
        old = getattr(clone, attr)
        index = _positions(units, width, s).to(old.device)
        fresh = _expand(fresh_unit, s).to(old.device)
        new = old.detach().index_select(s.dim, index).clone()
        view = (slice(None),) * s.dim + (fresh,)
        shape = [1] * new.dim()
        shape[s.dim] = -1  # broadcasts a per-position value along s.dim
        moment_scale = None
        if mode == "random" and fresh.any():
            new[view] = _fresh_values(s, new[view])
        if mode == "fresh" and fresh.any():
            new[view] = 0.0 if s.role == "output" else _fresh_values(s, new[view])
        if mode == "copy_noise" and fresh.any() and isinstance(old, nn.Parameter):
            std = math.sqrt(growth.noise_variance)
            new[view] += torch.randn_like(new[view]) * std
        if mode == "function_preserving" and s.role == "output":
            new /= _expand(copies, s).to(new).reshape(shape)
        if mode == "split" and share is not None and (share != 1).any():
            scale = _expand(share, s).to(new)  # (positions,)
            if s.role == "output":
                new *= scale.reshape(shape)
            else:
                # Every other entry of a unit is upstream of its outgoing weights, so its
                # gradient is linear in them: scaled by the unit's share. The outgoing weights'
                # own gradient (∂L/∂z · activationᵀ) does not change, nor do their moments.
                moment_scale = scale
        if mode == "gradmax" and fresh.any():
            if s.path in gradmax_zero:
                zero = fresh & _in_groups(s, units.numel(), gradmax_zero[s.path]).to(fresh.device)
                new[(slice(None),) * s.dim + (zero,)] = 0.0
            elif s.role == "output":
                new[view] = gradmax_outgoing(
                    new, s.dim, fresh, growth.gradient_outer, growth.gradmax_scale
                )
        if isinstance(old, nn.Parameter):
            param = nn.Parameter(new, requires_grad=old.requires_grad)
            clone._parameters[attr] = param
            remaps[s.path] = ParamRemap(
                old=old,
                new=param,
                dim=s.dim,
                index=index,
                fresh=fresh,
                moment_scale=moment_scale,
            )
        else:
            clone._buffers[attr] = new
    for sub_name, clone in clones.items():
        _sync_shape_attributes(clone)
        setattr(module, sub_name, clone)
    for name, p in old_params.items():
        remaps.setdefault(name, ParamRemap(old=p, new=p))
    return remaps


class SlicedUnits:
    """Mixin implementing :class:`AdaptableModule` for modules described by :class:`UnitSlice`.

    The module defines ``width``, ``params_per_unit``, ``unit_slices() -> list[UnitSlice]`` and
    ``UNIT_SUBMODULES`` (the names of all its children). ``kind``, ``default_width`` and
    ``base_dropout`` are class-level placeholders until the owning model sets them.
    ``GRADMAX_ZERO``: the slice paths that start at zero in a new unit under
    ``growth_init=gradmax`` (so that the unit's output is exactly zero), each a path (all its
    groups) or ``(path, group)`` (that group only); empty means GradMax is
    not sound for this module type and ``fresh`` growth is used instead
    (:mod:`dmao.method.gradmax`).
    """

    UNIT_SUBMODULES: tuple[str, ...] = ()
    GRADMAX_ZERO: tuple[str | tuple[str, int], ...] = ()
    # Heads are one component each whatever the granularity (METHOD.md §2).
    ONE_UNIT_PER_COMPONENT: bool = False
    kind: str = ""
    default_width: int | None = None
    base_dropout: float | None = None
    units_per_component: int = 1

    def set_granularity(self, granularity: int) -> None:
        """``units_per_component = default_width / granularity`` (1 for one-unit components)."""
        if self.ONE_UNIT_PER_COMPONENT:
            self.units_per_component = 1
            return
        default = self.default_width
        if default is None or granularity < 1 or default % granularity != 0:
            raise ValueError(
                f"{type(self).__name__} {self.kind!r}: default width {default} is not divisible "
                f"into granularity={granularity} components"
            )
        self.units_per_component = default // granularity

    def num_components(self) -> int:
        if self.width % self.units_per_component != 0:
            raise ValueError(
                f"{type(self).__name__} {self.kind!r}: width {self.width} is not a multiple of "
                f"units_per_component={self.units_per_component}"
            )
        return self.width // self.units_per_component

    def component_cost(self) -> int:
        return self.params_per_unit * self.units_per_component

    def component_macs(self, context_frames: int) -> int:
        """Multiply-accumulates per output frame of one component (``budget_unit=macs``).

        Every weight entry of a ``Linear``/``Conv1d`` that a unit owns is one MAC per frame (a
        depthwise kernel of size K is K); biases, norms and activations are not MACs. A module
        adds its length-dependent work per unit in :meth:`sequence_macs_per_unit`, counted for a
        sequence of ``context_frames`` frames.
        """
        if self.width == 0:
            return 0
        per_unit = 0
        for s in self.unit_slices():
            owner_path, _, attr = s.path.rpartition(".")
            owner = self.get_submodule(owner_path) if owner_path else self
            if attr == "weight" and isinstance(owner, (nn.Linear, nn.Conv1d)):
                per_unit += _get(self, s.path).numel() // self.width
        per_unit += self.sequence_macs_per_unit(context_frames)
        return per_unit * self.units_per_component

    def sequence_macs_per_unit(self, context_frames: int) -> int:
        """Length-dependent MACs per frame of one unit (0 here; attention overrides it)."""
        return 0

    def component_scores(self, metric: str) -> Tensor:
        """``(num_components,)``: the mean of the per-unit scores over each component's units."""
        num = self.num_components()
        if num == 0:
            return torch.zeros(0)
        per_unit = unit_scores(self, self.unit_slices(), self.width, metric)  # (width,)
        return per_unit.reshape(num, self.units_per_component).mean(dim=1)

    def reselect(self, units: Tensor, growth: GrowthInit) -> dict[str, ParamRemap]:
        return reselect_units(
            self, self.unit_slices(), self.UNIT_SUBMODULES, self.width, units, growth
        )
