"""What the verdict's runs cost and which code trained them (docs/protocol.md, "Compute").

    python benchmarks/verdict_compute.py results/final/runs

From each archived record's ``train_summary.json`` (``dmao compare --archive``): per system,
the runs, the optimizer steps they reached, the median and total training minutes (the wall
time of the training loop as the run's checkpoints carry it, resumes included; a run started
from a shared prefix, ``--share-prefix``, carries the prefix's minutes too, so the sum over
systems counts a prefix once per system that shares it) and the training-code versions
(``code_version``: all runs of a comparison must share one). Prints Markdown; reads no WER.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def summaries(runs: Path) -> dict[str, list[dict]]:
    """``{system: [train_summary.json of each seed, in seed order]}``; a record without one
    is an entry without ``train_seconds``."""
    found: dict[str, list[dict]] = {}
    for system in sorted(p for p in runs.iterdir() if p.is_dir()):
        for seed in sorted(system.glob("seed*")):
            path = seed / "train_summary.json"
            summary = json.loads(path.read_text()) if path.is_file() else {}
            found.setdefault(system.name, []).append(summary)
    return found


def table(found: dict[str, list[dict]]) -> str:
    """The Markdown table of :func:`summaries`, with a total row."""
    lines = [
        "| system | runs | steps per run | median min | total min | code version(s) |",
        "|---|---|---|---|---|---|",
    ]
    total, versions_all = 0.0, set()
    for system, runs in found.items():
        minutes = [s["train_seconds"] / 60 for s in runs if "train_seconds" in s]
        steps = sorted({s["steps"] for s in runs if "steps" in s})
        versions = sorted({s["code_version"] for s in runs if "code_version" in s})
        versions_all.update(versions)
        total += sum(minutes)
        median = f"{statistics.median(minutes):.1f}" if minutes else "—"
        lines.append(
            f"| {system} | {len(runs)} | {', '.join(map(str, steps)) or '—'} | {median} | "
            f"{sum(minutes):.0f} | {', '.join(versions) or '—'} |"
        )
    count = sum(len(runs) for runs in found.values())
    lines.append(f"| sum | {count} | | | {total:.0f} | {len(versions_all)} version(s) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the archived records: RUNS/<system>/seed<k>")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"verdict_compute.py: no records in {args.runs}", file=sys.stderr)
        return 2
    print(table(summaries(args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
