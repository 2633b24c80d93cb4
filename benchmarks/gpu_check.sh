#!/usr/bin/env bash
# GPU readiness check (docs/distributed.md): synthesise the built-in corpus, train the d=384
# 12-layer Conformer with and without DMAO (one event) in bf16, report steps/s, audio s/s and
# peak GPU memory to OUT/gpu_check.json and as a Markdown row. Budget: < 8 minutes on one H100.
#
#   benchmarks/gpu_check.sh [--out exp/gpu_check] [--steps 300] [--dry-run] [key=value ...]
#
# --dry-run: the same code on the CPU at toy size (seconds), to check the path without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

if [[ " $* " != *" --dry-run "* ]]; then
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    # Hard stop at 8 minutes; the JSON is written after each run, so a partial check remains.
    exec timeout --signal=TERM 480 "$PYTHON" benchmarks/gpu_check.py "$@"
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
