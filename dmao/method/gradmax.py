"""GradMax growth (Evci et al. 2022, "GradMax: Growing Neural Networks using Gradient Information",
arXiv 2201.05125): the statistics collector and the growth directions.

GradMax adds a unit with zero incoming weights, so the function is kept, and chooses its outgoing
weights to make the gradient of the zero incoming weights as large as possible. For a module
``z = W_out σ(W_in h)`` with σ(0) = 0, a new unit's incoming gradient is
``σ'(0) · W_out,newᵀ · M`` with ``M = Σ_frames ∂L/∂z · hᵀ`` (``(d_out, d_in)``, ``z`` the output of
the module's output projection, ``h`` the input of its input projection). Under GradMax's
constraint ``‖W_out,new‖₂ ≤ c`` the maximiser is the top-k left singular vectors of ``M``
(:func:`growth_directions`); like the authors' code (google-research/growneuron, ``AddGradmax``
with ``scale_method='mean_norm'``), each new column is scaled to the mean norm of the module's
existing outgoing columns (× ``growth_gradmax_scale``).

Decisions, per module type (the module declares ``GRADMAX_ZERO``; :func:`reselect_units` reads it):

- **FFN** (``linear1`` → SiLU → ``linear2``): ``GRADMAX_ZERO = (linear1.weight, linear1.bias)``.
  SiLU(0) = 0, so the new unit's output is exactly 0 in train and eval mode, with any dropout;
  SiLU'(0) = ½ ≠ 0, so the incoming weights get the gradient ½·W_out,newᵀ·M. Exact GradMax.
- **Attention head**: ``GRADMAX_ZERO`` = the V rows (group 2 of the fused ``qkv``); the head's Q and
  K rows are copied from the duplicated head. A zero value path makes the head output ``A·0 = 0``
  whatever its attention ``A``, so the function is kept. Q and K must NOT be zero: with ``q = k =
  0`` the score gradients ``∂L/∂q ∝ k`` and ``∂L/∂k ∝ q`` both vanish, a saddle the head would never
  leave; the copied pattern is the one the ranking just chose. The value rows' gradient is
  ``W_out,newᵀ Σ_t g_t (A h)_tᵀ``; we use ``M = Σ_t g_t h_tᵀ`` (same collector as the FFN), which is
  exact when ``A`` is the identity and a first-order approximation for local attention. The exact
  statistic would need one ``d × d`` matrix per head and the attention probabilities, which fused
  attention (SDPA) does not expose. Approximate GradMax.
- **Convolution module** (GLU → depthwise → BatchNorm → SiLU) and **cgMLP** (GELU → BatchNorm'd,
  convolved gate): no ``GRADMAX_ZERO``, so ``fresh`` growth (random incoming, zero outgoing) is
  used. Zero incoming rows make the channel constant in time before its BatchNorm; the batch
  variance is then 0 and BatchNorm's backward divides by √eps (≈ 316 for eps = 1e-5), so the first
  update turns the new channel into an O(1) normalised signal: the function is kept at the event
  and lost one step later, and the gradient GradMax maximises is an artefact of eps. In eval mode
  the channel outputs a non-zero constant unless its running statistics are reset. And the GLU
  gate row gets no gradient at a zero value (``∂/∂gate = value · σ'``). GradMax's premise (zero
  incoming weights keep the function AND give an informative gradient) fails for these modules.

How the allocator drives the collector (``growth_gradmax_steps`` = W)::

    collector = GradMaxCollector()
    # after the update that completes step t_k − W (maybe_reallocate), before the next forward:
    collector.start(modules)          # hooks on every module with GRADMAX_ZERO
    ...                               # W ordinary training steps (forward + backward)
    collector.stop()                  # at the event, BEFORE any reselect
    growth = dataclasses.replace(growth, gradient_outer=collector.matrix(name))  # per module
    module.reselect(units, growth)
    collector.clear()

``stop()`` must come before ``reselect``: the hooks live on the sub-modules that ``reselect``
replaces by shallow clones (which share the hook dictionaries). Statistics are not checkpointed: a
run resumed inside a window collects from the resume step on.

Costs: one ``d_out × d_in`` float32 matrix per module; the stored input is a detached view of the
activation autograd saves for the input projection anyway, released by the matching backward; one
``(N × d_out)ᵀ (N × d_in)`` product per module and step in the window (about one extra linear
backward). Under torch.distributed, ``stop()`` all-reduces the sums so every rank grows the same
units. Non-finite contributions (a GradScaler overflow step) are skipped; only the directions of
``M`` are used, so a changing loss scale merely re-weights steps. Not tested with activation
checkpointing.

This module imports only torch (``dmao.method.units`` imports it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["GradMaxCollector", "gradmax_outgoing", "gradmax_taps", "growth_directions"]


def gradmax_taps(module: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(input projection, output projection)`` of a module that supports GradMax, else None.

    Read from the module's unit slices: the owner of its first ``role="input"`` slice (its input
    is ``h``) and of its ``role="output"`` slice (its output is ``z``). None for modules without
    ``GRADMAX_ZERO`` or with width 0.
    """
    if not getattr(module, "GRADMAX_ZERO", ()) or getattr(module, "width", 0) == 0:
        return None
    owners: dict[str, nn.Module] = {}
    for s in module.unit_slices():
        if s.role in ("input", "output") and s.role not in owners:
            owners[s.role] = module.get_submodule(s.path.rpartition(".")[0])
    if set(owners) != {"input", "output"}:
        raise ValueError(f"{type(module).__name__} has GRADMAX_ZERO but no input/output slices")
    return owners["input"], owners["output"]


@torch.no_grad()
def growth_directions(outer: Tensor, count: int) -> Tensor:
    """``(count, d_out)`` unit vectors: the top left singular vectors of ``outer (d_out, d_in)``.

    The sign of each vector is fixed so that its largest-magnitude entry is positive (SVD signs
    are arbitrary). Beyond the rank ``min(d_out, d_in)`` there is no further orthogonal direction;
    the rest are random unit vectors from the global torch RNG (repeating a direction would make
    two new units twins that never separate).
    """
    if outer.dim() != 2:
        raise ValueError(f"growth_directions: outer must be 2-D, got shape {tuple(outer.shape)}")
    u, _, _ = torch.linalg.svd(outer.float(), full_matrices=False)  # u: (d_out, r)
    take = min(count, u.shape[1])
    top = u[:, :take].T  # (take, d_out), by decreasing singular value
    sign = top.gather(1, top.abs().argmax(dim=1, keepdim=True)).sign()  # (take, 1)
    top = top * torch.where(sign == 0, torch.ones_like(sign), sign)
    if count > take:
        extra = torch.randn(count - take, outer.shape[0]).to(top)
        top = torch.cat([top, extra / extra.norm(dim=1, keepdim=True)])
    return top


@torch.no_grad()
def gradmax_outgoing(
    new: Tensor, dim: int, fresh: Tensor, outer: Tensor | None, scale: float
) -> Tensor:
    """GradMax outgoing weights for the new positions of a 2-D output weight.

    Args:
        new: the rebuilt weight, positions along ``dim`` (e.g. ``linear2.weight (d_out, W')``).
        dim: the position dimension.
        fresh: ``(W',)`` bool, True at the new copies' positions.
        outer: ``(d_out, d_in)`` E[∂L/∂z·hᵀ] of the module.
        scale: each new column's norm relative to the mean norm of the kept columns (GradMax's
            ``mean_norm``).

    Returns:
        The values for ``new`` at the ``fresh`` positions, shaped like that selection: one top
        singular direction per position, in position order.
    """
    if new.dim() != 2:
        raise ValueError(f"GradMax outgoing weights must be 2-D, got shape {tuple(new.shape)}")
    columns = new.movedim(dim, 0)  # (W', d_out)
    if outer is None or outer.shape[0] != columns.shape[1]:
        got = None if outer is None else tuple(outer.shape)
        raise ValueError(
            f"GradMax: gradient_outer must be (d_out={columns.shape[1]}, d_in), got {got}"
        )
    target = scale * columns[~fresh].norm(dim=1).mean()
    directions = growth_directions(outer, int(fresh.sum()))  # (n_new, d_out), unit rows
    return (directions.to(new) * target).movedim(0, dim)


class GradMaxCollector:
    """Sums ``∂L/∂z · hᵀ`` over the frames of the training steps between :meth:`start` and
    :meth:`stop`, per module (see the module docstring for how the allocator drives it)."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._frames: dict[str, int] = {}
        self._skipped: dict[str, int] = {}
        self._handles: list[RemovableHandle] = []
        self._pending: dict[str, Tensor | None] = {}

    @property
    def active(self) -> bool:
        """Whether hooks are registered (between :meth:`start` and :meth:`stop`)."""
        return bool(self._handles)

    def start(self, modules: Mapping[str, nn.Module]) -> list[str]:
        """Register the hooks on every module that supports GradMax; clears old statistics.

        Returns the names of the tapped modules.
        """
        if self.active:
            raise RuntimeError("GradMaxCollector.start: already collecting; call stop() first")
        self.clear()
        names = []
        for name, module in modules.items():
            taps = gradmax_taps(module)
            if taps is None:
                continue
            source, sink = taps
            self._handles.append(source.register_forward_pre_hook(self._input_hook(name)))
            self._handles.append(sink.register_forward_hook(self._output_hook(name)))
            names.append(name)
        return names

    def stop(self) -> None:
        """Remove the hooks; under torch.distributed, sum the statistics over ranks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pending.clear()
        if dist.is_available() and dist.is_initialized():
            for name in sorted(self._sums):  # the same order on every rank
                dist.all_reduce(self._sums[name])
                frames = torch.tensor(float(self._frames[name]), device=self._sums[name].device)
                dist.all_reduce(frames)
                self._frames[name] = int(frames.item())

    def clear(self) -> None:
        """Forget all statistics (hooks, if any, stay)."""
        self._sums.clear()
        self._frames.clear()
        self._skipped.clear()

    def matrix(self, name: str) -> Tensor | None:
        """``(d_out, d_in)`` float32 mean of ``∂L/∂z · hᵀ`` per frame; None if no frame was seen."""
        if not self._frames.get(name):
            return None
        return self._sums[name] / self._frames[name]

    def frames(self, name: str) -> int:
        """Frames (rows of ``∂L/∂z``, padding included) summed for ``name``."""
        return self._frames.get(name, 0)

    def skipped(self, name: str) -> int:
        """Backward passes whose contribution was not finite and was left out."""
        return self._skipped.get(name, 0)

    # -- hooks --------------------------------------------------------------------------------

    def _input_hook(self, name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            # Only forwards that will be differentiated; validation runs under no_grad.
            self._pending[name] = args[0].detach() if torch.is_grad_enabled() else None

        return hook

    def _output_hook(self, name: str):
        def hook(_module: nn.Module, _args: tuple, output: Tensor) -> None:
            h = self._pending.pop(name, None)  # the input of this same forward of the module
            if h is None or not output.requires_grad:
                return
            output.register_hook(lambda g: self._accumulate(name, g, h))

        return hook

    @torch.no_grad()
    def _accumulate(self, name: str, grad: Tensor, h: Tensor) -> None:
        g2 = grad.reshape(-1, grad.shape[-1]).float()  # (N, d_out)
        h2 = h.reshape(-1, h.shape[-1]).float()  # (N, d_in)
        outer = g2.T @ h2  # (d_out, d_in)
        if not torch.isfinite(outer).all():
            self._skipped[name] = self._skipped.get(name, 0) + 1
            return
        if name in self._sums:
            self._sums[name] += outer
        else:
            self._sums[name] = outer
        self._frames[name] = self._frames.get(name, 0) + g2.shape[0]
