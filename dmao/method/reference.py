"""What the authors' public code does at an event, reproduced switch by switch.

``growth_init=reference`` rebuilds modules the way ``double_and_prune_params`` of
rwth-i6/i6_models (branch ``jing-dynamic-encoder-size``, commit e7395bf,
``i6_models/parts/dynamic_adaptable_conformer/``) does; ``perturb_only=true`` applies the same
rebuild with every component kept once, so a reallocation effect can be told from a perturbation
effect. Evidence, file by file, and the switches: docs/reference_mode.md (METHOD.md §8).

What the reference does to one rebuilt module, in terms of its old component list ``s`` (sorted, a
duplicate right after its original; ``n`` old components of ``d`` units):

- FFN: ``W1``/``b1`` chunked contiguously (new row ``k·d + j`` = old row ``s[k]·d + j``), ``W2``
  strided (new column ``j·K + k`` = old column ``j·n + s[k]``): hidden units are re-paired as soon
  as the component list is not ``0..n-1`` (``ffn_pairing``).
- Conv: pointwise-conv1's ``2C`` rows chunked contiguously over value AND gate rows
  (``glu_mixing``); depthwise and pointwise-conv2 consistent; the channel norm recreated with
  scale 1, shift 0 (``norm_reset``).
- Heads: consistent, outgoing weights copied as they are (never halved).
- ``reset_parameters()`` runs first, so what is not copied (the output bias) is re-randomised
  (``reset_uncopied``); it is the same ``nn.Parameter`` there, so it keeps its optimizer state.
- Noise N(0, v) on every copied weight and bias, not on the norm or the output bias.
- Every copied tensor is a new ``nn.Parameter`` the optimizer never saw (:class:`RebuiltRemap`):
  :func:`apply_reference_optimizer` leaves it out of the optimizer (``frozen``) or adds it with
  empty state (``fresh``).

Decisions:
- Layouts come from :meth:`unit_slices`: an FFN is a module whose scored slices have one group of
  one-entry units; GLU halves are ``groups=2`` slices; everything else (heads) is consistent. The
  cgMLP follows the convolution's rules (its reference code is not public).
- The reference conv norm is a LayerNorm over channels without statistics; our BatchNorm's running
  statistics follow their channels (the depthwise chunk) — there is nothing to reset them to.
- Nothing is edited in place (the ``reselect`` contract), so the allocator's rollback still works.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dmao.method.config import DmaoConfig
from dmao.method.optimizer_state import remap_optimizer
from dmao.method.units import ParamRemap, UnitSlice, _sync_shape_attributes

__all__ = [
    "FrozenParameters",
    "RebuiltRemap",
    "ReferenceSettings",
    "apply_reference_optimizer",
    "reference_positions",
    "reference_reselect",
]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class ReferenceSettings:
    """The per-module switches of ``growth_init=reference`` (fields of :class:`DmaoConfig`)."""

    ffn_pairing: str = "strided"
    glu_mixing: bool = True
    norm_reset: bool = True
    reset_uncopied: bool = True
    noise_variance: float = 0.0

    @classmethod
    def from_config(cls, config: DmaoConfig) -> ReferenceSettings:
        return cls(
            ffn_pairing=config.reference_ffn_pairing,
            glu_mixing=config.reference_glu_mixing,
            norm_reset=config.reference_norm_reset,
            reset_uncopied=config.reference_reset_uncopied,
            noise_variance=config.reference_noise_variance,
        )


class RebuiltRemap(ParamRemap):
    """A parameter the reference rebuild replaced by a new ``nn.Parameter`` (no optimizer state)."""


def _layout(slices: list[UnitSlice]) -> str:
    """``ffn`` (scored slices: one group of one-entry units), ``glu`` or ``heads``/``other``."""
    scored = [s for s in slices if s.role == "input"]
    if any(s.groups == 2 for s in scored):
        return "glu"
    if scored and all(s.groups == 1 and s.unit_size == 1 for s in scored):
        return "ffn"
    return "other"


def reference_positions(
    s: UnitSlice,
    components: Tensor,
    width: int,
    units_per_component: int,
    layout: str,
    settings: ReferenceSettings,
) -> Tensor:
    """``(new_size,)`` int64: the old position along ``s.dim`` of every new position.

    Args:
        s: the slice; its tensor has ``s.groups · width · s.unit_size`` entries along ``s.dim``.
        components: ``(K,)`` int64 old component indices, in the new order.
        width: old width in units (``n = width / units_per_component`` components).
        units_per_component: ``d`` units per component.
        layout: :func:`_layout` of the module.
        settings: the switches.
    """
    d, u, n = units_per_component, s.unit_size, width // units_per_component
    if layout == "ffn" and s.role == "output" and s.groups == 1 and u == 1:
        if settings.ffn_pairing == "strided":
            # W2.reshape(F, d, n)[:, :, s].reshape(F, d·K): new j·K + k ← old j·n + s[k]
            return (torch.arange(d)[:, None] * n + components[None, :]).reshape(-1)
    elif s.groups == 2 and settings.glu_mixing:
        # W.reshape(n, 2·d·u, F)[s]: whole chunks of the 2C rows, value and gate rows mixed.
        block = s.groups * d * u
        return (components[:, None] * block + torch.arange(block)).reshape(-1)
    # Consistent: unit c owns [(g·width + c)·u, (g·width + c + 1)·u) in every group g.
    units = (components[:, None] * d + torch.arange(d)).reshape(-1)  # (K·d,)
    per_group = (units[:, None] * u + torch.arange(u)).reshape(-1)  # (K·d·u,)
    return torch.cat([g * width * u + per_group for g in range(s.groups)])


def _later_copies(index: Tensor) -> Tensor:
    """``(P,)`` bool: True where ``index`` repeats a value that appeared at an earlier position."""
    seen: set[int] = set()
    out = torch.zeros(index.numel(), dtype=torch.bool)
    for i, v in enumerate(index.tolist()):
        out[i] = v in seen
        seen.add(v)
    return out


def _owner(path: str) -> tuple[str, str]:
    """``"linear2.bias"`` → ``("linear2", "bias")``."""
    sub_name, _, attr = path.rpartition(".")
    return sub_name, attr


@torch.no_grad()
def reference_reselect(
    module: nn.Module, components: Tensor, settings: ReferenceSettings
) -> dict[str, ParamRemap]:
    """Rebuild ``module`` with the old components ``components (K,)`` as the reference does.

    ``module`` is a :class:`~dmao.method.units.SlicedUnits` module (``unit_slices()``,
    ``UNIT_SUBMODULES``, ``width``, ``units_per_component``). Touched sub-modules are replaced by
    shallow clones holding new tensors; nothing is edited in place.

    Returns:
        One remap per parameter name of ``module`` before the call: a :class:`RebuiltRemap` for a
        copied or reset tensor (a new ``nn.Parameter`` in the reference), a plain
        :class:`ParamRemap` with the identity index for a re-randomised output bias (the same
        ``nn.Parameter`` in the reference, so its optimizer state stays), ``new is old`` for
        everything untouched.
    """
    if not hasattr(module, "unit_slices"):
        raise TypeError(
            f"growth_init=reference needs a module described by unit_slices(), got "
            f"{type(module).__name__}"
        )
    comps = torch.as_tensor(components, dtype=torch.int64).cpu().reshape(-1)
    width, d = module.width, module.units_per_component
    n = width // d if d else 0
    if width == 0 or (comps.numel() and (comps.min() < 0 or comps.max() >= n)):
        raise ValueError(
            f"{type(module).__name__}: reference rebuild needs component indices in [0, {n}) "
            f"of a non-empty module, got {comps.tolist()}"
        )
    old_params = dict(module.named_parameters())
    if comps.numel() == 0:
        for name in module.UNIT_SUBMODULES:
            setattr(module, name, None)
        return {name: ParamRemap(old=p, new=None) for name, p in old_params.items()}

    slices = module.unit_slices()
    layout = _layout(slices)
    clones: dict[str, nn.Module] = {}

    def clone_of(sub_name: str) -> nn.Module:
        if sub_name not in clones:
            sub = module.get_submodule(sub_name)
            clone = copy.copy(sub)
            clone._parameters = dict(sub._parameters)
            clone._buffers = dict(sub._buffers)
            clone._modules = dict(sub._modules)
            clones[sub_name] = clone
        return clones[sub_name]

    std = math.sqrt(settings.noise_variance)
    remaps: dict[str, ParamRemap] = {}
    for s in slices:
        sub_name, attr = _owner(s.path)
        clone = clone_of(sub_name)
        old = getattr(clone, attr)
        index = reference_positions(s, comps, width, d, layout, settings)
        new = old.detach().index_select(s.dim, index.to(old.device)).clone()
        is_norm = isinstance(clone, _NORMS)
        if isinstance(old, nn.Parameter):
            if is_norm and settings.norm_reset:
                new.fill_(1.0 if attr == "weight" else 0.0)  # reset_parameters: ones_ / zeros_
            elif not is_norm and std > 0:
                # Drawn on the CPU so a run draws the same numbers on any device.
                new += (torch.randn(new.shape, dtype=torch.float32) * std).to(new)
            param = nn.Parameter(new, requires_grad=old.requires_grad)
            clone._parameters[attr] = param
            remaps[s.path] = RebuiltRemap(
                old=old, new=param, dim=s.dim, index=index, fresh=_later_copies(index)
            )
        else:
            clone._buffers[attr] = new  # running statistics follow their channels
    for clone in clones.values():
        _sync_shape_attributes(clone)
    if settings.reset_uncopied:
        for name, old in old_params.items():
            sub_name, attr = _owner(name)
            sub = clones.get(sub_name, module.get_submodule(sub_name))
            if name in remaps or not isinstance(sub, (nn.Linear, nn.Conv1d)):
                continue  # copied, or a pre-norm (not touched by reset_parameters)
            # nn.Linear/Conv default (kaiming_uniform a=√5 and its bias): U(±1/√fan_in) of the
            # rebuilt layer, e.g. the output bias with fan_in = the new width.
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(sub.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            fresh = torch.empty(old.shape, dtype=torch.float32).uniform_(-bound, bound).to(old)
            param = nn.Parameter(fresh, requires_grad=old.requires_grad)
            clone_of(sub_name)._parameters[attr] = param
            identity = torch.arange(old.shape[0])
            remaps[name] = ParamRemap(
                old=old, new=param, dim=0, index=identity, fresh=torch.zeros_like(identity).bool()
            )
    for sub_name, clone in clones.items():
        setattr(module, sub_name, clone)
    for name, p in old_params.items():
        remaps.setdefault(name, ParamRemap(old=p, new=p))
    return remaps


class FrozenParameters:
    """Parameters a reference event left out of the optimizer (``reference_optimizer=frozen``).

    They are never updated (no step, no weight decay) and keep ``requires_grad``, so backward
    still computes their gradients: they count in the gradient norm and in clipping like any
    parameter, and a later event can score their module. :meth:`attach` makes
    ``optimizer.zero_grad()`` clear their gradients too, so they hold one step's gradient, never
    a sum over steps (the reference cleared them only at its scoring steps, every 1000 updates,
    and trained without clipping; docs/reference_mode.md).
    """

    def __init__(self) -> None:
        self.params: list[nn.Parameter] = []

    def __contains__(self, p: object) -> bool:
        return any(q is p for q in self.params)

    def add(self, p: nn.Parameter) -> None:
        if p not in self:
            self.params.append(p)

    def discard(self, p: nn.Parameter) -> None:
        self.params = [q for q in self.params if q is not p]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def refreeze(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
        """On resume: take ``params`` (frozen before the checkpoint) out of ``optimizer`` again,
        before its saved state is loaded, so its parameter list matches that state."""
        ids = {id(p) for p in params}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        for p in params:
            optimizer.state.pop(p, None)
            self.add(p)
        self.attach(optimizer)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer.zero_grad()`` also clear the frozen parameters' gradients (once)."""
        if getattr(optimizer, "_dmao_frozen", None) is self:
            return
        inner = optimizer.zero_grad

        def zero_grad(set_to_none: bool = True) -> None:
            inner(set_to_none=set_to_none)
            self.zero_grad(set_to_none=set_to_none)

        optimizer.zero_grad = zero_grad  # type: ignore[method-assign]
        optimizer._dmao_frozen = self  # type: ignore[attr-defined]


@torch.no_grad()
def apply_reference_optimizer(
    optimizer: torch.optim.Optimizer,
    remaps: Iterable[ParamRemap],
    mode: str,
    frozen: FrozenParameters,
) -> None:
    """The optimizer after a reference rebuild.

    A :class:`RebuiltRemap`'s new parameter gets no state: it is left out of the optimizer
    (``mode="frozen"``, added to ``frozen``) or takes its old parameter's place with empty state
    (``"fresh"``: Adam starts over, bias correction included). Other remaps move their state
    (:func:`remap_optimizer`): a re-randomised output bias keeps its moments, as in the reference.
    Like :func:`remap_optimizer`, nothing is edited in place: restoring ``param_groups`` lists and
    the state mapping (and ``frozen.params``) rolls it back.
    """
    if mode not in ("frozen", "fresh"):
        raise ValueError(f"reference_optimizer must be frozen or fresh, got {mode!r}")
    remaps = list(remaps)
    remap_optimizer(optimizer, [r for r in remaps if not isinstance(r, RebuiltRemap)])
    replace: dict[int, nn.Parameter | None] = {}
    for r in remaps:
        if r.new is None:
            frozen.discard(r.old)  # a module emptied at a later event
        if not isinstance(r, RebuiltRemap):
            continue
        optimizer.state.pop(r.old, None)
        frozen.discard(r.old)
        replace[id(r.old)] = r.new if mode == "fresh" else None
        if mode == "frozen" and r.new is not None:
            frozen.add(r.new)
    for group in optimizer.param_groups:
        group["params"] = [
            replace.get(id(p), p) for p in group["params"] if replace.get(id(p), p) is not None
        ]
    if mode == "frozen":
        frozen.attach(optimizer)
