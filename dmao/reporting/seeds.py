"""Where DMAO put the budget over several runs (seeds) of one recipe, and whether they agree.

``dmao report RUN RUN ...`` (README, "DMAO: letting the model reallocate its parameters"): the
components per layer and module kind as mean ± standard deviation over the runs, the share of the
adaptable parameters each module kind holds, how much the runs agree with each other, and how
close they are to a reference architecture (e.g. the authors' final allocation of METHOD.md §7
transplanted to the model).

The *change* of a run is its width per (module kind, layer) relative to the default width, minus 1
(−1: removed, 0: kept, +1: doubled), flattened over kinds and layers. Two runs agree as much as
the Pearson correlation of their changes; several as much as the mean over their pairs. Whether
that is more than chance is tested by permutation: under the null hypothesis that a run's changes
land on the (kind, layer) cells at random, each run's change vector is shuffled independently, and
p = (1 + #{null statistic ≥ observed}) / (1 + permutations). The shuffles mix kinds: a pattern
common to the runs such as "every convolution grows" counts as agreement, as it should.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dmao.config import ExperimentConfig
from dmao.models.accounting import count_parameters
from dmao.models.architecture import EncoderArchitecture
from dmao.reporting.architecture import ArchitectureReport, _fmt, build_report

__all__ = ["AllocationSummary", "Correlation", "changes", "save_summary_figure"]

DEFAULT_PERMUTATIONS = 10_000


@dataclass(frozen=True)
class Correlation:
    """Pearson correlations of change vectors and their permutation test."""

    values: tuple[float, ...]
    """Per pair of runs (agreement) or per run (similarity to a reference)."""
    p_value: float
    """Probability of a mean correlation at least this high if the changes were placed at random."""
    permutations: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def line(self, what: str) -> str:
        spread = f" (min {min(self.values):.2f}, max {max(self.values):.2f})"
        return (
            f"{what}: mean r = {self.mean:.2f}{spread if len(self.values) > 1 else ''}, "
            f"permutation p = {self.p_value:.4f} ({self.permutations:,} shuffles)"
        )


def changes(final: EncoderArchitecture, default: EncoderArchitecture) -> np.ndarray:
    """Width relative to the default, minus 1, per (kind, layer): shape ``(kinds * layers,)``,
    kinds in ``default.kinds`` order, bottom layer first."""
    if final.kinds != default.kinds or final.num_layers != default.num_layers:
        raise ValueError(
            f"architectures differ in shape: {final.num_layers} layers of {list(final.kinds)} vs "
            f"{default.num_layers} layers of {list(default.kinds)}"
        )
    return np.array(
        [
            final.widths(k)[i] / default.widths(k)[i] - 1.0
            for k in default.kinds
            for i in range(default.num_layers)
        ]
    )


def _standardised(rows: np.ndarray, names: list[str]) -> np.ndarray:
    """Each row minus its mean, scaled to unit root-mean-square: ``(n, cells)``."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    scale = np.sqrt((centred**2).mean(axis=-1, keepdims=True))
    flat = np.flatnonzero(scale.reshape(-1) == 0)
    if flat.size:
        raise ValueError(
            f"{names[flat[0]]}: every module has the same relative width (e.g. the default "
            "architecture: no reallocation), so there is no pattern to correlate"
        )
    return centred / scale


def _mean_pair_r(z: np.ndarray) -> np.ndarray:
    """Mean Pearson r over the pairs of rows of standardised ``z`` (..., runs, cells) → (...)."""
    runs, cells = z.shape[-2:]
    total = z.sum(axis=-2)
    return ((total**2).sum(axis=-1) - runs * cells) / (cells * runs * (runs - 1))


@dataclass
class AllocationSummary:
    """The final architectures of several runs of one model."""

    reports: list[ArchitectureReport]

    @classmethod
    def from_runs(cls, run_dirs: list[str | Path]) -> AllocationSummary:
        """Read each run (or archived record) folder; refuse runs of different models."""
        if not run_dirs:
            raise ValueError("no run folders given")
        reports = [build_report(run) for run in run_dirs]
        first = reports[0]
        for report in reports[1:]:
            if report.default != first.default:
                raise ValueError(
                    f"{report.run_dir} is not the same model as {first.run_dir} (default "
                    "architectures differ): a summary needs runs of one recipe"
                )
        return cls(reports)

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.reports[0].kinds

    @property
    def num_layers(self) -> int:
        return self.reports[0].final.num_layers

    @property
    def names(self) -> list[str]:
        return [str(r.run_dir) for r in self.reports]

    def components(self, kind: str) -> np.ndarray:
        """Components per layer of every run: ``(runs, layers)``."""
        return np.array([r.components[kind] for r in self.reports])

    def changes(self) -> np.ndarray:
        """Change vectors of the runs (:func:`changes`): ``(runs, kinds * layers)``, kinds in
        the model's order."""
        return np.stack([changes(r.final, r.default) for r in self.reports])

    def table(self) -> str:
        """Markdown: per module kind and layer, mean ± std of the components over the runs."""
        header = (
            "| module | " + " | ".join(str(i + 1) for i in range(self.num_layers)) + " | default |"
        )
        rows = [header, "|---|" + "---:|" * (self.num_layers + 1)]
        for kind in self.kinds:
            values = self.components(kind)
            cells = [_mean_std(values[:, i]) for i in range(self.num_layers)]
            default = _fmt(self.reports[0].default_components[kind])
            rows.append(f"| {kind} | {' | '.join(cells)} | {default} |")
        return "\n".join(rows)

    def parameter_shares(self) -> dict[str, tuple[float, float, float]]:
        """Per module kind: (default share, mean share, std of the share over the runs) of the
        adaptable parameters, counted on models built from the architectures (meta device)."""
        config = self.reports[0].config
        default = _shares(config, self.reports[0].default)
        per_run = [_shares(r.config, r.final) for r in self.reports]
        return {
            k: (default[k], float(np.mean([s[k] for s in per_run])), _std([s[k] for s in per_run]))
            for k in self.kinds
        }

    def shares_table(self) -> str:
        """Markdown: the share of the adaptable parameters per module kind, default vs runs."""
        rows = ["| module | default | runs (mean ± std) |", "|---|---:|---:|"]
        for kind, (default, mean, std) in self.parameter_shares().items():
            spread = f" ± {100 * std:.1f}" if len(self.reports) > 1 else ""
            rows.append(f"| {kind} | {100 * default:.1f} % | {100 * mean:.1f}{spread} % |")
        return "\n".join(rows)

    def agreement(self, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> Correlation:
        """Pairwise Pearson correlation of the runs' changes and its permutation test."""
        if len(self.reports) < 2:
            raise ValueError("agreement needs at least two runs")
        z = _standardised(self.changes(), self.names)
        runs = len(z)
        pairs = tuple(
            float(z[i] @ z[j] / z.shape[1]) for i in range(runs) for j in range(i + 1, runs)
        )
        rng = np.random.default_rng(seed)
        null = _mean_pair_r(rng.permuted(np.broadcast_to(z, (permutations, *z.shape)), axis=-1))
        return Correlation(pairs, _p_value(null, float(np.mean(pairs))), permutations)

    def similarity(
        self,
        reference: EncoderArchitecture,
        permutations: int = DEFAULT_PERMUTATIONS,
        seed: int = 0,
    ) -> Correlation:
        """Pearson correlation of each run's changes with ``reference``'s (same model shape)."""
        ref = _standardised(
            changes(reference, self.reports[0].default)[None], ["the reference architecture"]
        )[0]
        z = _standardised(self.changes(), self.names)
        per_run = tuple(float(v) for v in z @ ref / z.shape[1])
        rng = np.random.default_rng(seed)
        shuffled = rng.permuted(np.broadcast_to(z, (permutations, *z.shape)), axis=-1)
        null = (shuffled @ ref / z.shape[1]).mean(axis=-1)
        return Correlation(per_run, _p_value(null, float(np.mean(per_run))), permutations)


def save_summary_figure(summary: AllocationSummary, out_dir: str | Path) -> Path:
    """Heatmap of the mean width relative to the default per layer and module kind, each cell
    annotated with the mean components ± std over the runs. Returns the written file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds, num_layers = list(summary.kinds), summary.num_layers
    defaults = summary.reports[0].default_components
    means = [summary.components(k).mean(axis=0) for k in kinds]  # (kinds, layers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.8 * num_layers), 3.4))
    image = ax.imshow(
        [m / defaults[k] for m, k in zip(means, kinds, strict=True)],
        cmap="RdBu",
        vmin=0.0,
        vmax=2.0,
        aspect="auto",
    )
    for i, kind in enumerate(kinds):
        values = summary.components(kind)
        for j in range(num_layers):
            std = _std(values[:, j])
            text = f"{values[:, j].mean():.1f}" + ("" if math.isnan(std) else f"\n±{std:.1f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(num_layers), [str(i + 1) for i in range(num_layers)])
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("layer")
    ax.set_title(
        f"components per layer, mean ± std over {len(summary.reports)} runs "
        "(colour: relative to the default)",
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path = out_dir / "architecture_seeds_heatmap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _p_value(null: np.ndarray, observed: float) -> float:
    # A small tolerance keeps a shuffle that reproduces the observed value exactly (up to
    # rounding) on the "at least as high" side.
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


def _shares(config: ExperimentConfig, architecture: EncoderArchitecture) -> dict[str, float]:
    from dmao.training.model_setup import build_model_from_config

    with torch.device("meta"):
        model = build_model_from_config(config.model, vocab_size=2, architecture=architecture)
    counts = count_parameters(model)
    return {k: counts.by_kind[k] / counts.adaptable for k in counts.module_kinds}


def _std(values: list[float] | np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _mean_std(values: np.ndarray) -> str:
    std = _std(values)
    if len(values) < 2 or std == 0:
        return _fmt(round(float(np.mean(values)), 1))
    return f"{np.mean(values):.1f} ± {std:.1f}"
