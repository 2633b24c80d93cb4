"""Settings of the DMAO method (METHOD.md §2–§5), one typed dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BUDGET_UNITS",
    "DUPLICATE_MOMENTS",
    "EVENT_SPACINGS",
    "GROWTH_INITS",
    "METRICS",
    "REFERENCE_FFN_PAIRINGS",
    "REFERENCE_OPTIMIZERS",
    "REFERENCE_REBUILDS",
    "DmaoConfig",
]

METRICS: tuple[str, ...] = ("taylor", "gradient", "magnitude", "random")
GROWTH_INITS: tuple[str, ...] = (
    "copy",
    "copy_noise",
    "random",
    "function_preserving",
    "fresh",
    "split",
    "gradmax",
    "reference",
)
# growth_init=reference (METHOD.md §8, docs/reference_mode.md): how the authors' code re-pairs an
# FFN's W1 and W2, and what becomes of the rebuilt parameters in the optimizer.
REFERENCE_FFN_PAIRINGS: tuple[str, ...] = ("strided", "contiguous")
REFERENCE_REBUILDS: tuple[str, ...] = ("all", "changed")
REFERENCE_OPTIMIZERS: tuple[str, ...] = ("frozen", "fresh")
DUPLICATE_MOMENTS: tuple[str, ...] = ("copy", "zeros", "second")
BUDGET_UNITS: tuple[str, ...] = ("params", "macs")
EVENT_SPACINGS: tuple[str, ...] = ("even", "cosine")


@dataclass
class DmaoConfig:
    """Dynamic architecture optimisation settings; ``enabled=False`` trains a fixed model."""

    enabled: bool = False
    """Run DMAO at all. Off by default so every recipe is a plain baseline unless asked."""
    metric: str = "taylor"
    """Importance score (METHOD.md §3): ``taylor`` = mean |w·∂L/∂w|, ``gradient`` = mean
    |∂L/∂w|, ``magnitude`` = mean |w|, each over a component's input-projection weights;
    ``random``: a seeded random ranking at each event, the same schedule and budget (the control
    of the pruning literature: do the scores matter at all?)."""
    ema_beta: float = 0.1
    """EMA factor: S ← β·S + (1−β)·s, so the newest measurement weighs 1−β (METHOD.md §3)."""
    score_every_steps: int = 100
    """Optimizer steps between score measurements. The reference used 1000 because each
    measurement cost an extra backward pass; ours reads the gradients of the normal backward pass
    and costs next to nothing, and the small recipes of this project have far fewer than 1000
    steps before the first event, so 100 gives several measurements for the EMA to average."""
    granularity: int = 4
    """Components per FFN / convolution module at its default width (FFN hidden 4·d → 4 chunks of
    d units; conv d channels → 4 chunks of d/4). Attention heads are always one component each."""
    last_event_fraction: float = 0.15
    """Fraction of the total optimizer steps at which the last event happens (METHOD.md §5)."""
    num_events: int = 1
    """Number of events, spread evenly up to ``last_event_fraction``."""
    total_fraction: float = 0.15
    """p: the fraction of adaptable parameters moved over all events; each event moves
    p / num_events (``event_spacing=even``)."""
    event_spacing: str = "even"
    """How ``total_fraction`` is shared among the events: ``even`` (p / num_events each, METHOD.md
    §5) or ``cosine`` (gradual reallocation with RigL's cosine-decaying drop fraction, Evci et al.
    2020, arXiv 1911.11134: event i of N moves a share ∝ (1 + cos(π (i−1)/N)) / 2, normalised
    so all events together move p)."""
    rewarmup_steps: int = 0
    """Learning-rate re-warm-up after each event: for this many steps the learning rate of the
    ``rewarmup_scope`` entries is multiplied by j / k on the j-th step (dmao.method.rewarmup);
    0 = off."""
    rewarmup_scope: str = "new"
    """``new`` (only the positions of new units) or ``all`` (every parameter of the adaptable
    modules)."""
    grace_measurements: int = 3
    """A component grown at an event may not be dropped before it has been measured this many
    times. A ``fresh`` copy has zero outgoing weights, so its input-side Taylor score is exactly 0
    at its first measurement and the next event would drop it on evidence that cannot see it
    (issue 15: 7 of 7 drops were the previous event's growth at 10 steps apart). Only matters
    with several events; 0 turns the protection off."""
    growth_init: str = "copy"
    """How duplicated units start: ``copy`` (exact copy: both copies keep the full outgoing
    weights, so the unit's contribution DOUBLES at the event — not function-preserving),
    ``copy_noise`` (copy plus Gaussian noise), ``random`` (fresh initialisation),
    ``function_preserving`` (Net2Net: both copies' outgoing weights halved) or
    ``fresh`` (a new unit: fresh input-side weights, zero outgoing weights — the function is kept
    and the copy is no twin of its original; new copies start with zero Adam moments), ``split``
    (asymmetric Net2Net as in LEMON, arXiv 2310.07999: the original keeps
    ``growth_split_alpha`` of the outgoing weights, the copy gets the rest — function kept, the
    twins' outgoing weights differ, Adam moments rescaled to match) or ``gradmax`` (Evci et al.
    2022, arXiv 2201.05125: zero incoming weights, outgoing weights along the top singular
    vectors of E[∂L/∂z·hᵀ] of the last ``growth_gradmax_steps`` steps — function kept; FFN and
    attention only, the convolution and cgMLP modules grow ``fresh``: see dmao.method.gradmax).
    "Function kept" holds for the GROWTH half of an event only: the drops of the same event remove
    units and change the function whatever the growth."""
    growth_noise_variance: float = 1e-4
    """Variance of the noise added to new copies with ``growth_init=copy_noise`` (the ablations
    used 1e-4 and 0.1)."""
    growth_split_alpha: float = 0.6
    """``growth_init=split``: the original's share α of a duplicated unit's outgoing weights (the
    copy gets 1 − α). In (0, 1) and not 0.5 (which is ``function_preserving``)."""
    growth_gradmax_steps: int = 20
    """``growth_init=gradmax``: optimizer steps before each event over which E[∂L/∂z·hᵀ] is
    averaged (forward/backward hooks live only in this window)."""
    growth_gradmax_scale: float = 1.0
    """``growth_init=gradmax``: norm of a new unit's outgoing weight column relative to the mean
    norm of its module's other outgoing columns (GradMax's ``mean_norm`` scaling)."""
    duplicate_moments: str = "copy"
    """Adam moments of a new copy: ``copy`` the original's, ``zeros``, or ``second`` (first moment
    zero, second moment ``exp_avg_sq`` the original's, step count kept). Why ``second``: with
    ``zeros`` and the kept step count, Adam's bias correction is ≈ 1, so after n steps of a steady
    gradient the update is (1 − β₁ⁿ)/√(1 − β₂ⁿ) × lr: 0.71 at n = 1, up to 1.55 at n = 14 and
    still 1.32 at n = 40 with this project's β = (0.9, 0.98) — up to ~1.5× too large (6.6× with
    PyTorch's default β₂ = 0.999); tests/method/test_growth.py measures it with torch's AdamW.
    With the original's second moment it is (1 − β₁ⁿ) ≤ 1: a short warm-up, no overshoot.
    With ``growth_init`` ``random``/``fresh``/``gradmax`` (new weights of their own) ``copy``
    becomes ``zeros``; ``zeros`` and ``second`` are honoured as they are."""
    budget_unit: str = "params"
    """What the drop/grow budget counts: ``params`` (METHOD.md §4) or ``macs`` — multiply-
    accumulates per second of audio, so the event keeps the encoder's compute constant instead of
    its size (an attention head then also costs its score and context products, which grow with
    the utterance length; see ``macs_context_seconds``)."""
    macs_context_seconds: float = 15.0
    """Utterance length at which attention's length-dependent MACs are counted with
    ``budget_unit=macs``. 15 s is about the mean LibriSpeech training utterance (12.3 s) rounded
    up; it only changes how expensive a head is relative to an FFN or conv unit."""
    # -- growth_init=reference: the authors' public event code (METHOD.md §8), switch by switch;
    # each default is what that code does (evidence: docs/reference_mode.md).
    reference_ffn_pairing: str = "strided"
    """``growth_init=reference``: how an FFN's W2 is chunked. ``strided`` (the reference: W1
    contiguous, W2 ``reshape(F, d, -1)`` strided, so a changed FFN's hidden units are re-paired,
    W1 row of one unit with W2 column of another) or ``contiguous`` (W1 and W2 consistent)."""
    reference_glu_mixing: bool = True
    """``growth_init=reference``: chunk the convolution's pointwise-conv1 over its 2C value and
    gate rows together (the reference), so a kept or duplicated chunk mixes GLU halves; False
    keeps each channel's value and gate rows together."""
    reference_norm_reset: bool = True
    """``growth_init=reference``: the rebuilt convolution's channel norm restarts at scale 1 and
    shift 0 (the reference recreates it); False copies each channel's scale and shift."""
    reference_reset_uncopied: bool = True
    """``growth_init=reference``: re-initialise what a rebuilt module does not copy (its output
    bias, U(±1/√fan_in)) as the reference's ``reset_parameters()`` does; it keeps its optimizer
    state (the same parameter object there). False keeps it as it is."""
    reference_noise_variance: float = 0.0
    """``growth_init=reference``: variance v of Gaussian noise added to every copied weight and
    bias of a rebuilt module (not its norm or output bias); the ablations used 1e-4 and 0.1."""
    reference_rebuild: str = "all"
    """``growth_init=reference``: which modules an event rebuilds. ``all`` (the reference: every
    module that has components, changed or not, so the perturbation and the optimizer treatment
    hit the whole encoder) or ``changed`` (only those whose component list the plan changes)."""
    reference_optimizer: str = "frozen"
    """``growth_init=reference``: the rebuilt parameters in the optimizer. ``frozen`` (the
    reference in an uninterrupted run: the optimizer never sees them; they keep their rebuilt
    values, their gradients are computed and cleared each step but never applied) or ``fresh``
    (they take the old parameters' places with empty Adam state, as after a restart)."""
    perturb_only: bool = False
    """With ``growth_init=reference``: at each event rebuild the same modules with the same
    perturbation (resets, noise, optimizer treatment) but keep every component exactly once, so
    the widths never change: the perturbation without the reallocation (cf. shrink-and-perturb)."""

    def __post_init__(self) -> None:
        def check(ok: bool, field: str, expected: str) -> None:
            if not ok:
                raise ValueError(
                    f"DmaoConfig.{field} must be {expected}, got {getattr(self, field)!r}"
                )

        check(self.metric in METRICS, "metric", f"one of {list(METRICS)}")
        check(0.0 <= self.ema_beta < 1.0, "ema_beta", "in [0, 1)")
        check(self.score_every_steps >= 1, "score_every_steps", ">= 1")
        check(self.granularity >= 1, "granularity", ">= 1")
        check(0.0 < self.last_event_fraction <= 1.0, "last_event_fraction", "in (0, 1]")
        check(self.num_events >= 1, "num_events", ">= 1")
        check(0.0 <= self.total_fraction < 1.0, "total_fraction", "in [0, 1)")
        check(
            self.event_spacing in EVENT_SPACINGS, "event_spacing", f"one of {list(EVENT_SPACINGS)}"
        )
        check(self.grace_measurements >= 0, "grace_measurements", ">= 0")
        check(self.rewarmup_steps >= 0, "rewarmup_steps", ">= 0")
        check(self.rewarmup_scope in ("all", "new"), "rewarmup_scope", "one of ['all', 'new']")
        check(self.growth_init in GROWTH_INITS, "growth_init", f"one of {list(GROWTH_INITS)}")
        check(self.growth_noise_variance >= 0.0, "growth_noise_variance", ">= 0")
        check(
            0.0 < self.growth_split_alpha < 1.0 and self.growth_split_alpha != 0.5,
            "growth_split_alpha",
            "in (0, 1) and not 0.5",
        )
        check(self.growth_gradmax_steps >= 1, "growth_gradmax_steps", ">= 1")
        check(self.growth_gradmax_scale > 0.0, "growth_gradmax_scale", "> 0")
        check(
            self.duplicate_moments in DUPLICATE_MOMENTS,
            "duplicate_moments",
            f"one of {list(DUPLICATE_MOMENTS)}",
        )
        check(self.budget_unit in BUDGET_UNITS, "budget_unit", f"one of {list(BUDGET_UNITS)}")
        check(self.macs_context_seconds > 0, "macs_context_seconds", "> 0")
        check(
            self.reference_ffn_pairing in REFERENCE_FFN_PAIRINGS,
            "reference_ffn_pairing",
            f"one of {list(REFERENCE_FFN_PAIRINGS)}",
        )
        check(self.reference_noise_variance >= 0.0, "reference_noise_variance", ">= 0")
        check(
            self.reference_rebuild in REFERENCE_REBUILDS,
            "reference_rebuild",
            f"one of {list(REFERENCE_REBUILDS)}",
        )
        check(
            self.reference_optimizer in REFERENCE_OPTIMIZERS,
            "reference_optimizer",
            f"one of {list(REFERENCE_OPTIMIZERS)}",
        )
        check(
            not self.perturb_only or self.growth_init == "reference",
            "perturb_only",
            "false unless growth_init=reference (it repeats the reference rebuild)",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
