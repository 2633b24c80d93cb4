#!/usr/bin/env bash
# Everything one short GPU session measures, in one command (BENCHMARKS.md "GPU", RESULTS.md
# "GPU benchmark"), each stage under its own time limit so a slow or failing stage still leaves
# the others' results:
#   1. the built-in corpus (3 h, the small recipes' corpus) with one synthesis job per core;
#   2. benchmarks/gpu_check.py on it: the d = 384 12-layer Conformer, baseline and DMAO, bf16,
#      steps/s, audio s/s, peak memory (--check-steps 0 skips it, to give the comparison the time);
#   3. `dmao compare` of the GPU benchmark recipe (conformer_bench_gpu.yaml): baseline and DMAO
#      x 3 seeds, the six runs side by side on the one GPU (--jobs 6);
#   4. results.tgz: every log, metric, table and figure, without checkpoints and features.
#
# DMAO_CODE=DIR (environment) runs a pinned copy of the dmao package; see below.
#
# --archive-from DIR makes the comparison span GPU sessions, each on a fresh machine: DIR's run
# records (`dmao compare --archive`, committed from an earlier session) are copied to OUT/archive,
# the comparison restores them instead of training those runs again, and every run that finishes
# now adds its record there. Copy OUT/archive back into DIR and commit it after the session.
#
#   benchmarks/gpu_session.sh OUT [--budget-s 560] [--check-steps 100] [--jobs 6]
#                                 [--hours 3] [--corpus data/synthetic]
#                                 [--compare-config dmao/configs/synthetic/conformer_bench_gpu.yaml]
#                                 [--check-args "..."] [--compare-args "k=v ..."]
#                                 [--compare-options "--control --variant ..."]
#                                 [--archive-from results/gpu/runs]
#
# Measured on an H200 (BENCHMARKS.md): 21 s corpus, 60 s check, 285 s comparison; 373 s in all.
# The 15-minute device budget of a session leaves room for a second call on the warm machine
# (e.g. `dmao compare ... --control` on the same folder, which skips the finished runs).
#
# Resumable like `dmao compare` itself: re-running skips finished runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu_session.sh OUT [options]}
shift
BUDGET=560 CHECK_STEPS=100 JOBS=6 HOURS=3 CORPUS=data/synthetic CHECK_ARGS="" COMPARE_ARGS=""
COMPARE_OPTIONS="" ARCHIVE_FROM=""
COMPARE_CONFIG=dmao/configs/synthetic/conformer_bench_gpu.yaml
while [[ $# -gt 0 ]]; do
    case $1 in
        --budget-s) BUDGET=$2 ;;
        --check-steps) CHECK_STEPS=$2 ;;
        --jobs) JOBS=$2 ;;
        --hours) HOURS=$2 ;;
        --corpus) CORPUS=$2 ;;
        --check-args) CHECK_ARGS=$2 ;;
        --compare-args) COMPARE_ARGS=$2 ;;
        --compare-options) COMPARE_OPTIONS=$2 ;;
        --compare-config) COMPARE_CONFIG=$2 ;;
        --archive-from) ARCHIVE_FROM=$2 ;;
        *) echo "gpu_session.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && -z ${PYTHON:-} ]] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
# DMAO_CODE=DIR runs the dmao package in DIR instead of this checkout's, e.g. a copy of a pinned
# commit's dmao/, so that a comparison spanning sessions keeps one code version while the
# checkout moves on (python -P: the checkout's own dmao/ in the working folder does not shadow it).
PYF=()
if [[ -n ${DMAO_CODE:-} ]]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "gpu_session.sh: DMAO_CODE needs Python >= 3.11 (python -P)" >&2; exit 2; }
    [[ -d $DMAO_CODE/dmao ]] || { echo "gpu_session.sh: DMAO_CODE=$DMAO_CODE has no dmao/" >&2; exit 2; }
    PYTHONPATH="$(cd "$DMAO_CODE" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
    PYF=(-P)
fi
mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
stage() { echo "=== $(date +%T) [+$(($(date +%s) - T0)) s] $*"; }

stage "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
"$PY" "${PYF[@]}" -c "import dmao, dmao.training.provenance as p; print('dmao', p.code_version(), 'from', dmao.__path__[0])"

stage "corpus: $HOURS h"
"$PY" "${PYF[@]}" -m dmao prepare synthetic --out "$CORPUS/corpus" --hours "$HOURS" --seed 0 \
    --num-jobs "$(nproc)" --manifests "$CORPUS/manifests" >"$OUT/corpus.log" 2>&1
echo "corpus rc=$? ($(tail -1 "$OUT/corpus.log"))"
CORPUS_OVERRIDES="data.corpus_dir=$CORPUS/corpus data.manifest_dir=$CORPUS/manifests data.synthetic_hours=$HOURS"

if ((CHECK_STEPS > 0)); then
    stage "gpu_check: $CHECK_STEPS steps each"
    # shellcheck disable=SC2086
    timeout --signal=TERM $(($(left) < 170 ? $(left) : 170)) "$PY" "${PYF[@]}" benchmarks/gpu_check.py \
        --out "$OUT/gpu_check" --steps "$CHECK_STEPS" --hours "$HOURS" $CHECK_ARGS $CORPUS_OVERRIDES \
        >"$OUT/gpu_check.log" 2>&1
    echo "gpu_check rc=$?"
    grep -A2 "^| device" "$OUT/gpu_check.log"
else
    stage "gpu_check: skipped (--check-steps 0)"
fi

ARCHIVE=()
if [[ -n $ARCHIVE_FROM ]]; then
    mkdir -p "$OUT/archive"
    [[ -d $ARCHIVE_FROM ]] && cp -r "$ARCHIVE_FROM/." "$OUT/archive/"
    ARCHIVE=(--archive "$OUT/archive")
    echo "archive: $(find "$OUT/archive" -name train_summary.json | wc -l) run records from $ARCHIVE_FROM"
fi

stage "compare: --jobs $JOBS, $(($(left) - 25)) s left for it"
# shellcheck disable=SC2086
# Options first, then `--` and every key=value (`dmao compare` reads overrides before its options
# or after --, not in between).
timeout --signal=TERM $(($(left) - 25)) "$PY" "${PYF[@]}" -m dmao compare \
    --config "$COMPARE_CONFIG" --out "$OUT/compare" --jobs "$JOBS" "${ARCHIVE[@]}" $COMPARE_OPTIONS \
    -- $CORPUS_OVERRIDES train.progress_bar=false $COMPARE_ARGS \
    >"$OUT/compare.log" 2>&1
echo "compare rc=$?"
grep -A40 "^| system" "$OUT/compare.log" | head -40
# Where each run got to (also when the time limit stopped the comparison early).
for m in "$OUT"/compare/*/seed*/metrics.jsonl; do
    [[ -f $m ]] && echo "$m: $(grep -c '"valid"' "$m") validations, last: $(grep '"valid"' "$m" | tail -1 | cut -c1-160)"
done

stage "pack"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='checkpoints' -C "$OUT" \
    $(cd "$OUT" && ls -d gpu_check/gpu_check.json gpu_check/*/metrics.jsonl compare archive ./*.log 2>/dev/null)
ls -la "$OUT/results.tgz"
stage "done"
