"""Settings of the DMAO method (METHOD.md §2–§5), one typed dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BUDGET_UNITS", "DUPLICATE_MOMENTS", "GROWTH_INITS", "METRICS", "DmaoConfig"]

METRICS: tuple[str, ...] = ("taylor", "gradient", "magnitude")
GROWTH_INITS: tuple[str, ...] = ("copy", "copy_noise", "random", "function_preserving", "fresh")
DUPLICATE_MOMENTS: tuple[str, ...] = ("copy", "zeros")
BUDGET_UNITS: tuple[str, ...] = ("params", "macs")


@dataclass
class DmaoConfig:
    """Dynamic architecture optimisation settings; ``enabled=False`` trains a fixed model."""

    enabled: bool = False
    """Run DMAO at all. Off by default so every recipe is a plain baseline unless asked."""
    metric: str = "taylor"
    """Importance score (METHOD.md §3): ``taylor`` = mean |w·∂L/∂w|, ``gradient`` = mean
    |∂L/∂w|, ``magnitude`` = mean |w|, each over a component's input-projection weights."""
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
    p / num_events."""
    growth_init: str = "copy"
    """How duplicated units start: ``copy`` (exact copy), ``copy_noise`` (copy plus Gaussian
    noise), ``random`` (fresh initialisation), ``function_preserving`` (Net2Net: both copies'
    outgoing weights halved, the network computes the same function right after the event) or
    ``fresh`` (a new unit: fresh input-side weights, zero outgoing weights — the function is kept
    and the copy is no twin of its original; new copies start with zero Adam moments)."""
    growth_noise_variance: float = 1e-4
    """Variance of the noise added to new copies with ``growth_init=copy_noise`` (the ablations
    used 1e-4 and 0.1)."""
    duplicate_moments: str = "copy"
    """Adam moments of a new copy: ``copy`` the original's, or ``zeros``."""
    dropout_scaling: bool = True
    """Scale each module's dropout by its width relative to the default width (METHOD.md §4.7)."""
    budget_unit: str = "params"
    """What the drop/grow budget counts: ``params`` (METHOD.md §4) or ``macs`` — multiply-
    accumulates per second of audio, so the event keeps the encoder's compute constant instead of
    its size (an attention head then also costs its score and context products, which grow with
    the utterance length; see ``macs_context_seconds``)."""
    macs_context_seconds: float = 15.0
    """Utterance length at which attention's length-dependent MACs are counted with
    ``budget_unit=macs``. 15 s is about the mean LibriSpeech training utterance (12.3 s) rounded
    up; it only changes how expensive a head is relative to an FFN or conv unit."""

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
        check(self.growth_init in GROWTH_INITS, "growth_init", f"one of {list(GROWTH_INITS)}")
        check(self.growth_noise_variance >= 0.0, "growth_noise_variance", ">= 0")
        check(
            self.duplicate_moments in DUPLICATE_MOMENTS,
            "duplicate_moments",
            f"one of {list(DUPLICATE_MOMENTS)}",
        )
        check(self.budget_unit in BUDGET_UNITS, "budget_unit", f"one of {list(BUDGET_UNITS)}")
        check(self.macs_context_seconds > 0, "macs_context_seconds", "> 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
