"""Live weights vs their running average (``train.ema_decay``) at every checkpoint of one run.

    python benchmarks/bench_ema.py --run exp/ema/baseline --out exp/ema/baseline-eval

The average does not change training, so one run gives both systems at every kept step
checkpoint: the same trajectory, decoded with the live weights and with the average the
checkpoint holds (``dmao decode`` and ``dmao decode --ema``, greedy). Writes ``ema.csv`` (one row
per step, split and weights) under ``--out`` and prints a Markdown table with the difference.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from dmao.decoding.decode_run import decode_split
from dmao.training.checkpoint import list_step_checkpoints, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run trained with ema_decay")
    parser.add_argument("--out", type=Path, required=True, help="where decodes and ema.csv go")
    parser.add_argument("--splits", nargs="+", default=["dev", "test"])
    args = parser.parse_args(argv)

    rows = []
    for step, path in list_step_checkpoints(args.run / "checkpoints"):
        ema = load_checkpoint(path).get("ema") or {}
        if not ema:
            raise SystemExit(f"{path} holds no averaged weights (train with train.ema_decay)")
        for split in args.splits:
            for weights in ("live", "ema"):
                result = decode_split(
                    args.run,
                    split,
                    method="greedy",
                    checkpoint=path.name,
                    progress_bar=False,
                    out_dir=args.out / f"{path.stem}-{split}-{weights}",
                    ema=weights == "ema",
                )
                rows.append(
                    {
                        "step": step,
                        "split": split,
                        "weights": weights,
                        "ema_updates": ema["updates"],
                        "wer": round(100 * result.score.wer, 2),
                        "cer": round(100 * result.score.cer, 2),
                    }
                )
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "ema.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    value = {(r["step"], r["split"], r["weights"]): r for r in rows}
    steps = sorted({r["step"] for r in rows})
    header = " | ".join(f"{s} WER live / EMA (Δ)" for s in args.splits)
    print(f"| step | updates in the average | {header} |")
    print("|---:|---:|" + "---:|" * len(args.splits))
    for step in steps:
        cells = []
        for split in args.splits:
            live, ema = value[step, split, "live"], value[step, split, "ema"]
            cells.append(f"{live['wer']:.2f} / {ema['wer']:.2f} ({ema['wer'] - live['wer']:+.2f})")
        updates = value[step, args.splits[0], "ema"]["ema_updates"]
        print(f"| {step} | {updates} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
