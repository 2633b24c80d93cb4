"""The Markdown table of a ``benchmarks/gpu_perf.sh`` folder, for BENCHMARKS.md.

    python benchmarks/perf_table.py OUT

Reads every ``OUT/<run>.json`` (one ``dmao bench --json`` object each: ``sweep-d256``,
``baseline-d384``, ``dmao-d384``, ``compiled-d512``, ...) and ``OUT/card.txt`` (nvidia-smi's name,
memory and driver; absent on a CPU), and prints one row per run, then DMAO ÷ baseline and
compiled ÷ eager steps/s.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

_ORDER = ("sweep", "baseline", "dmao", "static", "compiled", "cudagraphs")
HEADER = (
    "| run | d × layers | parameters | precision | batch s | steps | steps/s | audio s/s "
    "| GFLOP/step | TFLOP/s | peak TFLOP/s | MFU | padding | ATen ops/step | peak GiB |\n"
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _override(report: dict[str, Any], key: str) -> str | None:
    """The last ``key=value`` of the run's overrides (the one that took effect)."""
    values = [o.split("=", 1)[1] for o in report.get("overrides", []) if o.startswith(key + "=")]
    return values[-1] if values else None


def _sort_key(name: str) -> tuple[int, int, str]:
    kind = name.split("-")[0]
    size = re.search(r"d(\d+)$", name)
    return (_ORDER.index(kind) if kind in _ORDER else len(_ORDER),
            int(size.group(1)) if size else 0, name)  # fmt: skip


def row(name: str, r: dict[str, Any]) -> str:
    """One table row of a ``dmao bench --json`` report."""
    d, layers = _override(r, "model.d_model") or "?", _override(r, "model.num_layers") or "?"
    achieved = r["flops_per_step"] * r["steps_per_s"]
    peak = r["peak_flops"]
    mem = r["peak_memory_bytes"] / 2**30
    cells = [
        name,
        f"{d} × {layers}",
        f"{r['parameters'] / 1e6:.1f} M",
        r["precision"],
        f"{r['batch_seconds']:g}",
        str(r["steps"]),
        f"{r['steps_per_s']:.2f}",
        f"{r['audio_s_per_s']:.0f}",
        f"{r['flops_per_step'] / 1e9:.0f}",
        f"{achieved / 1e12:.2f}",
        "–" if peak is None else f"{peak / 1e12:.1f}",
        "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %",
        f"{r['padding_efficiency']:.3f}",
        "–" if r["ops_per_step"] is None else f"{r['ops_per_step']:,}",
        f"{mem:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(out: Path) -> str:
    """The whole report for the folder ``out``."""
    runs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    if not runs:
        raise FileNotFoundError(f"{out}: no dmao bench JSON reports (*.json)")
    card_file = out / "card.txt"
    first = next(iter(runs.values()))
    card = card_file.read_text().strip() if card_file.is_file() else first["device_name"]
    lines = [f"card: {card}; torch {first['torch']}", "", HEADER]
    lines += [row(name, runs[name]) for name in sorted(runs, key=_sort_key)]
    notes = []
    for name, r in runs.items():
        if name.startswith("dmao-") and f"baseline-{name[5:]}" in runs:
            base = runs[f"baseline-{name[5:]}"]
            notes.append(
                f"- DMAO ÷ baseline steps/s at {name[5:]}: "
                f"**{r['steps_per_s'] / base['steps_per_s']:.3f}** over {r['steps']} steps each "
                f"({r['dmao_events']} event(s), {r['dmao_score_steps']} scoring steps in the "
                "window)"
            )
            if r.get("post_event_transient_s") is not None:
                ratio = r["steps_per_s_without_transient"] / base["steps_per_s"]
                notes.append(
                    f"- post-event transient at {name[5:]}: {r['post_event_transient_s']:.2f} s "
                    f"over the {r.get('transient_steps', 30)} steps after the event; DMAO ÷ "
                    f"baseline steps/s without those steps: **{ratio:.3f}**"
                )
            top = r.get("post_event_profile") or []
            if top:
                key = "self_device_s" if r["device"].startswith("cuda") else "self_cpu_s"
                ops = ", ".join(f"{o['name']} {o[key]:.3f} s ({o['calls']})" for o in top[:6])
                notes.append(f"- after the event, top operators by self time: {ops}")
        kind, _, size = name.partition("-")
        if kind in ("compiled", "cudagraphs") and f"static-{size}" in runs:
            eager = runs[f"static-{size}"]
            notes.append(
                f"- torch.compile ({r['compile']}) ÷ eager steps/s at {size}, the same static "
                f"shapes: **{r['steps_per_s'] / eager['steps_per_s']:.3f}** ({r['steps']} and "
                f"{eager['steps']} steps after {r['warmup_steps']} and {eager['warmup_steps']} "
                f"warm-up steps; {r['compiled_graphs']} graphs compiled, "
                f"{r['distinct_shapes']} shapes timed)"
            )
    for name, r in runs.items():
        for loader in r.get("loader", []):
            notes.append(
                f"- loader alone at {name}, {loader['workers']} worker(s): "
                f"{loader['audio_s_per_s']:.0f} audio s/s = **{loader['ratio_to_training']:.1f}×** "
                f"the training step's ({loader['startup_s']:.1f} s to the first batch)"
            )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the gpu_perf.sh output folder")
    args = parser.parse_args(argv)
    try:
        print(table(args.out))
    except FileNotFoundError as err:
        print(f"perf_table: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
