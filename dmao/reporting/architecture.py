"""What DMAO did to a run's model: per-layer widths per module type, events, figures.

Widths are shown in *components* (METHOD.md §7 style): FFN hidden units and conv channels in units
of ``default width / granularity`` (so a default layer shows 4 / 4 / 4 and ``d/64`` heads), heads as
they are. ``dmao report RUN`` prints the table and writes the figures.

Any model family works: the default widths and the module kinds come from the run's model, rebuilt
from its config on the meta device (no memory, no initialisation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from dmao.config import ExperimentConfig, config_from_dict
from dmao.models.architecture import EncoderArchitecture
from dmao.training.metrics import read_metrics

__all__ = ["ArchitectureReport", "build_report", "save_figures"]

# Display order of METHOD.md §7 (ff1, ff2, conv, mhsa for a Conformer): the feed-forward modules
# first, then the other kinds in block order.
_FIRST_KINDS = ("ff1", "ff2")


def _display_order(kinds: tuple[str, ...]) -> tuple[str, ...]:
    first = tuple(k for k in _FIRST_KINDS if k in kinds)
    return first + tuple(k for k in kinds if k not in first)


@dataclass
class ArchitectureReport:
    """Final and default widths of a run, in components, plus its reallocation events."""

    run_dir: Path
    final: EncoderArchitecture
    default: EncoderArchitecture
    components: dict[str, list[float]]
    """kind → components per layer (bottom layer first)."""
    default_components: dict[str, float]
    events: list[dict[str, Any]] = field(default_factory=list)
    score_records: list[dict[str, Any]] = field(default_factory=list)
    """``dmao_scores`` metric records: per measurement, the mean smoothed score per module."""
    config: ExperimentConfig | None = None
    """The run's resolved config (``RUN/config.yaml``)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The module kinds in display order (Conformer: ff1, ff2, conv, mhsa)."""
        return _display_order(self.final.kinds)

    def table(self) -> str:
        """Markdown table: one row per module kind, one column per layer, plus the total."""
        num_layers = self.final.num_layers
        header = "| module | " + " | ".join(str(i + 1) for i in range(num_layers)) + " | default |"
        rule = "|---|" + "---:|" * (num_layers + 1)
        rows = [header, rule]
        for kind in self.kinds:
            cells = " | ".join(_fmt(v) for v in self.components[kind])
            rows.append(f"| {kind} | {cells} | {_fmt(self.default_components[kind])} |")
        return "\n".join(rows)

    def events_summary(self) -> str:
        """One line per event: step, components dropped/duplicated, parameters before/after."""
        if not self.events:
            return "no reallocation events (baseline run, or DMAO disabled)"
        lines = []
        for e in self.events:
            lines.append(
                f"event at step {e['step']}: dropped {len(e.get('dropped', []))}, duplicated "
                f"{len(e.get('duplicated', []))} components; adaptable parameters "
                f"{e['params_before']:,} -> {e['params_after']:,}"
            )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def build_report(run_dir: str | Path) -> ArchitectureReport:
    """Read ``RUN/config.yaml``, ``RUN/architecture.json`` and the events in the metrics."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    arch_path = run_dir / "architecture.json"
    for path in (cfg_path, arch_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {run_dir} a trained dmao run folder?")
    with open(cfg_path) as f:
        config = config_from_dict(yaml.safe_load(f), source=str(cfg_path))
    with open(arch_path) as f:
        final = EncoderArchitecture.from_dict(json.load(f))
    default, unit = _default_widths(config)
    if final.kinds != default.kinds:
        raise ValueError(
            f"{arch_path} has module kinds {list(final.kinds)}, but the model "
            f"{config.model.name!r} of {cfg_path} has {list(default.kinds)}"
        )
    components = {k: [w / unit[k] for w in final.widths(k)] for k in final.kinds}
    default_components = {k: default.layers[0][k] / unit[k] for k in final.kinds}
    events = read_metrics(run_dir, "dmao_event")
    scores = read_metrics(run_dir, "dmao_scores")
    return ArchitectureReport(
        run_dir, final, default, components, default_components, events, scores, config
    )


def _default_widths(config: Any) -> tuple[EncoderArchitecture, dict[str, float]]:
    """The run's uniform default architecture and the width of one component per kind.

    The model is rebuilt from the config on the meta device (shapes only) without its
    ``model.architecture`` file, which a control run names but which need not exist any more.
    """
    from dmao.training.model_setup import build_model_from_config

    with torch.device("meta"):
        model = build_model_from_config(replace(config.model, architecture=None), vocab_size=2)
    granularity = config.dmao.granularity
    unit: dict[str, float] = {}
    for module in model.adaptable_modules().values():
        # Heads are one component each (METHOD.md §2); other kinds default/granularity units.
        one_unit = getattr(module, "ONE_UNIT_PER_COMPONENT", False)
        unit.setdefault(module.kind, 1 if one_unit else module.default_width / granularity)
    return model.default_architecture, unit


def save_figures(report: ArchitectureReport, out_dir: str | Path) -> list[Path]:
    """Heatmap of widths (relative to default) per layer and module, and per-event bars of the
    dropped/duplicated components per layer. Returns the written files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    kinds = list(report.kinds)
    rel = [
        [v / report.default_components[k] for v in report.components[k]] for k in kinds
    ]  # (kinds, layers)
    num_layers = report.final.num_layers
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.6 * num_layers), 3.2))
    image = ax.imshow(rel, cmap="RdBu", vmin=0.0, vmax=2.0, aspect="auto")
    for i, k in enumerate(kinds):
        for j, v in enumerate(report.components[k]):
            ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(num_layers), [str(i + 1) for i in range(num_layers)])
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("layer")
    ax.set_title("components per layer (colour: relative to the default width)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path = out_dir / "architecture_heatmap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    if report.score_records:
        path = out_dir / "score_trajectories.png"
        _plot_scores(report, path, plt)
        written.append(path)

    for event in report.events:
        fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.6 * num_layers), 3.0))
        width = 0.2
        for i, k in enumerate(kinds):
            net = [0] * num_layers
            for sign, key in ((-1, "dropped"), (1, "duplicated")):
                for c in event.get(key, []):
                    if c.get("kind") == k:
                        net[_layer_of(c["module"])] += sign
            offset = (i - (len(kinds) - 1) / 2) * width
            ax.bar([j + offset for j in range(num_layers)], net, width, label=k)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(range(num_layers), [str(i + 1) for i in range(num_layers)])
        ax.set_xlabel("layer")
        ax.set_ylabel("components gained − lost")
        ax.set_title(f"DMAO event at step {event['step']}")
        ax.legend(fontsize=7, ncol=4)
        fig.tight_layout()
        path = out_dir / f"event_{event['step']:08d}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _plot_scores(report: ArchitectureReport, path: Path, plt: Any) -> None:
    """One panel per module kind, one line per layer: mean smoothed score over the steps, with
    the events marked (scores are reset after each event)."""
    kinds = list(report.kinds)
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(3.2 * len(kinds), 3.0), sharey=True, squeeze=False
    )
    axes = axes[0]
    steps = [r["step"] for r in report.score_records]
    names = sorted(
        {k for r in report.score_records for k in r if k.startswith("encoder.")},
        key=lambda n: (_layer_of(n), n),
    )
    cmap = plt.get_cmap("viridis")
    num_layers = max(report.final.num_layers - 1, 1)
    for ax, kind in zip(axes, kinds, strict=True):
        for name in (n for n in names if n.endswith("." + kind)):
            values = [r.get(name, float("nan")) for r in report.score_records]
            layer = _layer_of(name)
            ax.plot(steps, values, color=cmap(layer / num_layers), label=str(layer + 1))
        for event in report.events:
            ax.axvline(event["step"], color="red", linewidth=0.8, linestyle="--")
        ax.set_title(kind)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0].set_ylabel("mean smoothed score")
    axes[-1].legend(title="layer", fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _layer_of(module_name: str) -> int:
    """``encoder.blocks.3.conv`` → 3."""
    parts = module_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "blocks":
            return int(parts[i + 1])
    raise ValueError(f"cannot tell the layer of module {module_name!r}")
