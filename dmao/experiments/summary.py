"""The comparison table: per-run rows with the budget check beside them, per-system means, paired
differences to the baseline, and the files (``results.md``, ``results.csv``, figures)."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from dmao.training.metrics import read_metrics

__all__ = ["RunResult", "summarise", "write_outputs"]


@dataclass
class RunResult:
    """Scores of one trained run on one split."""

    system: str
    seed: int
    split: str
    wer: float
    cer: float
    parameters: int
    train_minutes: float
    run_dir: str
    macs_per_second: int = 0
    """Multiply-accumulates per second of audio of the adaptable modules (0: not recorded)."""
    code_version: str = ""
    """The code that trained the run (``dmao.training.provenance.code_version``; "" if unknown)."""


def _mean_std(values: list[float], *, signed: bool = False) -> str:
    """Mean ± sample standard deviation in %; a single run has no spread: the mean alone."""
    mean = f"{100 * statistics.fmean(values):{'+' if signed else ''}.2f}"
    return f"{mean} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else mean


def summarise(runs: list[RunResult]) -> str:
    """Markdown: per-run rows, then per (system, split): mean ± std, the relative WER change of
    the means, and the paired (same-seed) WER difference to the baseline with how many seeds
    improved. Negative ΔWER = better than the baseline."""
    lines = [
        "| system | seed | split | WER (%) | CER (%) | parameters | Δparams | ΔMACs/s "
        "| train (min) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    # Δ to the baseline of the same seed: a comparison at equal budget shows that it is one.
    reference = {(r.seed, r.split): r for r in runs if r.system == "baseline"}
    for r in runs:
        ref = reference.get((r.seed, r.split))
        dparams = dmacs = "–"
        if ref is not None:
            dparams = f"{r.parameters - ref.parameters:+,}"
            if r.macs_per_second and ref.macs_per_second:
                dmacs = f"{100 * (r.macs_per_second / ref.macs_per_second - 1):+.1f} %"
        lines.append(
            f"| {r.system} | {r.seed} | {r.split} | {100 * r.wer:.2f} | {100 * r.cer:.2f} | "
            f"{r.parameters:,} | {dparams} | {dmacs} | {r.train_minutes:.1f} |"
        )
    lines += [
        "",
        "| system | split | runs | WER (%) mean ± std | CER (%) mean ± std | rel. WER "
        "| paired ΔWER (abs. %) | SE | paired ΔCER | seeds better |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    systems = list(dict.fromkeys(r.system for r in runs))
    splits = list(dict.fromkeys(r.split for r in runs))
    for split in splits:
        base = {r.seed: r.wer for r in runs if r.system == "baseline" and r.split == split}
        base_cer = {r.seed: r.cer for r in runs if r.system == "baseline" and r.split == split}
        base_mean = statistics.fmean(base.values()) if base else None
        for system in systems:
            sel = [r for r in runs if r.system == system and r.split == split]
            if not sel:
                continue
            wer_mean = statistics.fmean(r.wer for r in sel)
            rel = paired = se = paired_cer = better = "–"
            if base_mean and system != "baseline":
                rel = f"{100 * (base_mean - wer_mean) / base_mean:+.1f} %"
                # Same seed = same initialisation and data order: the paired difference removes
                # the seed-to-seed spread that both systems share.
                diffs = [r.wer - base[r.seed] for r in sel if r.seed in base]
                if diffs:
                    paired = _mean_std(diffs, signed=True)
                    better = f"{sum(d < 0 for d in diffs)}/{len(diffs)}"
                    paired_cer = _mean_std(
                        [r.cer - base_cer[r.seed] for r in sel if r.seed in base], signed=True
                    )
                if len(diffs) > 1:
                    # Standard error of the mean paired difference: a win is |mean| ≥ 2 SE.
                    se = f"{100 * statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}"
            lines.append(
                f"| {system} | {split} | {len(sel)} | {_mean_std([r.wer for r in sel])} | "
                f"{_mean_std([r.cer for r in sel])} | {rel} | {paired} | {se} | {paired_cer} | "
                f"{better} |"
            )
    versions = sorted({r.code_version.split()[0] for r in runs if r.code_version})
    if len(versions) > 1:
        lines += ["", f"**Warning: these runs were trained by {len(versions)} code versions "
                  f"({', '.join(versions)}); a fair comparison uses one.**"]  # fmt: skip
    return "\n".join(lines)


def write_outputs(runs: list[RunResult], table: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "results.md"
    md.write_text(
        "# Baseline vs DMAO\n\nPositive relative WER = DMAO better (lower WER).\n\n" + table + "\n"
    )
    csv_path = out_dir / "results.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(RunResult.__dataclass_fields__))
        writer.writeheader()
        for r in runs:
            writer.writerow(r.__dict__)
    files = [md, csv_path, _plot_valid_wer(runs, out_dir / "valid_wer.png")]
    dmao_runs = sorted({r.run_dir for r in runs if r.system == "dmao"})
    if dmao_runs:
        from dmao.reporting import build_report, save_figures

        report = build_report(dmao_runs[0])
        files += save_figures(report, out_dir / "figures" / Path(dmao_runs[0]).name)
    return files


def _plot_valid_wer(runs: list[RunResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "tab:blue", "dmao": "tab:red", "control": "tab:green"}
    extra = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for system in dict.fromkeys(r.system for r in runs):
        if system not in colours:
            colours[system] = next(extra, "gray")
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for run_dir, system in sorted({(r.run_dir, r.system) for r in runs}):
        valid = read_metrics(run_dir, "valid")
        label = system if system not in seen else None
        seen.add(system)
        ax.plot(
            [v["step"] for v in valid],
            [100 * v["wer"] for v in valid],
            color=colours.get(system, "gray"),
            label=label,
            alpha=0.8,
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("dev WER (%)")
    ax.set_title("validation WER during training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
