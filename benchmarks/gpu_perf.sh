#!/usr/bin/env bash
# Training speed on one GPU in one command (issue 17, item 7), each stage under its own time
# limit so that a slow or failing stage still leaves the others' results:
#   1. machine: the card's name (nvidia-smi) and torch;
#   2. corpus: the built-in synthetic corpus and its fbank features (reused when present);
#   3. MFU sweep: `dmao bench --json` of the d x 12 Conformer-CTC for d = 256 / 384 / 512 (paper
#      blocks: head_dim 64, kernel 31, frontend 32/64/64/32), bf16, --batch-seconds per step; the
#      largest also measures the loader alone with 0 / 4 / 8 workers;
#   4. DMAO vs baseline: d = --dmao-size, --dmao-steps (>= 300) timed steps each; DMAO with one
#      event in the middle of the window (p = 0.15, scores every 10 steps), so its steps/s include
#      the scoring steps, the event and the post-event transient (the 30 steps after it beyond
#      the typical step), and torch.profiler's top operators over the 10 steps after the event;
#   5. the fused QKV projection against the three separate projections it replaced (item 4):
#      benchmarks/bench_fused_qkv.py at --qkv-size (paper; none skips it), ATen ops per step and
#      the interleaved step-time ratio, fp32, in OUT/fused_qkv.txt;
#   6. eager vs torch.compile at d = --compile-size (0 skips it), on static batch shapes
#      (data.pad_to_bucket, --compile-buckets buckets) for all three: eager, `--compile static`
#      and, on CUDA, `--compile cudagraphs`; the warm-up trains on every bucket's shape first;
#   7. the Markdown table for BENCHMARKS.md (benchmarks/perf_table.py; also OUT/table.md).
#
#   benchmarks/gpu_perf.sh OUT [--budget-s 570] [--device cuda] [--precision bf16]
#       [--sizes "256 384 512"] [--layers 12] [--head-dim 64] [--kernel 31]
#       [--frontend "[32,64,64,32]"] [--batch-seconds 300] [--workers 4] [--warmup-steps 5]
#       [--loader-workers "0 4 8"]
#       [--sweep-steps 100] [--dmao-size 384] [--dmao-steps 300]
#       [--compile-size 512] [--compile-steps 100] [--compile-buckets 6] [--hours 3]
#       [--qkv-size paper] [--qkv-rounds 20]
#       [--corpus data/synthetic]
#       [--overrides "key=value ..."] [--bench-args "--matmul-size 256 ..."]
#
# Estimated on an H200 from BENCHMARKS.md's GPU check (d = 384: 10 steps/s at 300 s per step):
# ~20 s corpus, ~35 s per bench process (start-up, setup incl. feature statistics, warm-up),
# sweep ~2 min, DMAO vs baseline ~2 min, compile 2-4 min: under 10 minutes. Tested at toy size
# on the CPU (--device cpu) by tests/benchmarks/test_gpu_perf.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu_perf.sh OUT [options]}
shift
BUDGET=570 DEVICE=cuda PRECISION=bf16 SIZES="256 384 512" LAYERS=12 HEAD_DIM=64 KERNEL=31
FRONTEND="[32,64,64,32]" BATCH=300 WARMUP=5 SWEEP_STEPS=100 DMAO_SIZE=384 DMAO_STEPS=300
COMPILE_SIZE=512 COMPILE_STEPS=100 COMPILE_BUCKETS=6 HOURS=3 CORPUS=data/synthetic OVERRIDES="" BENCH_ARGS=""
WORKERS=4 STAGE_CAP="" LOADER_WORKERS="0 4 8" QKV_SIZE=paper QKV_ROUNDS=20
while [[ $# -gt 0 ]]; do
    case $1 in
        --budget-s) BUDGET=$2 ;;
        --device) DEVICE=$2 ;;
        --precision) PRECISION=$2 ;;
        --sizes) SIZES=$2 ;;
        --layers) LAYERS=$2 ;;
        --head-dim) HEAD_DIM=$2 ;;
        --kernel) KERNEL=$2 ;;
        --frontend) FRONTEND=$2 ;;
        --batch-seconds) BATCH=$2 ;;
        --workers) WORKERS=$2 ;;
        --loader-workers) LOADER_WORKERS=$2 ;;
        --warmup-steps) WARMUP=$2 ;;
        --sweep-steps) SWEEP_STEPS=$2 ;;
        --dmao-size) DMAO_SIZE=$2 ;;
        --dmao-steps) DMAO_STEPS=$2 ;;
        --compile-size) COMPILE_SIZE=$2 ;;
        --compile-steps) COMPILE_STEPS=$2 ;;
        --compile-buckets) COMPILE_BUCKETS=$2 ;;
        --hours) HOURS=$2 ;;
        --qkv-size) QKV_SIZE=$2 ;;
        --qkv-rounds) QKV_ROUNDS=$2 ;;
        --corpus) CORPUS=$2 ;;
        --overrides) OVERRIDES=$2 ;;
        --bench-args) BENCH_ARGS=$2 ;;
        --stage-cap-s) STAGE_CAP=$2 ;;  # one time cap for every stage (tests on a busy CPU)
        *) echo "gpu_perf.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && -z ${PYTHON:-} ]] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
cap() { local l c=${STAGE_CAP:-$1}; l=$(left); echo $((l < c ? l : c)); }
stage() { echo "=== $(date +%T) [+$(($(date +%s) - T0)) s] $*"; }

# One `dmao bench --json` run: NAME D SECONDS_CAP STEPS "OPTIONS" [key=value ...] (argparse
# wants the options before the key=value list).
bench() {
    local name=$1 d=$2 limit steps=$4 options=$5
    limit=$(cap "$3")
    shift 5
    if ((limit < 20)); then
        echo "$name: skipped (budget spent)"
        return
    fi
    # shellcheck disable=SC2086
    timeout --signal=TERM "$limit" "$PY" -m dmao bench --json --device "$DEVICE" \
        --steps "$steps" --warmup-steps "$WARMUP" $BENCH_ARGS $options \
        --config dmao/configs/synthetic/small.yaml \
        "data.corpus_dir=$CORPUS/corpus" "data.manifest_dir=$CORPUS/manifests" \
        "data.synthetic_hours=$HOURS" "data.max_batch_seconds=$BATCH" \
        model.name=conformer_ctc "model.d_model=$d" "model.num_layers=$LAYERS" \
        "model.head_dim=$HEAD_DIM" "model.conv_kernel_size=$KERNEL" \
        "model.frontend_channels=$FRONTEND" "train.precision=$PRECISION" \
        "data.num_workers=$WORKERS" \
        "$@" $OVERRIDES >"$OUT/$name.json" 2>"$OUT/$name.log"
    local rc=$?
    echo "$name rc=$rc"
    ((rc == 0)) || { tail -3 "$OUT/$name.log"; rm -f "$OUT/$name.json"; }
}

stage "machine"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader |
    tee "$OUT/card.txt"
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"

stage "corpus: $HOURS h"
"$PY" -m dmao prepare synthetic --out "$CORPUS/corpus" --hours "$HOURS" --seed 0 \
    --num-jobs "$(nproc)" --manifests "$CORPUS/manifests" >"$OUT/corpus.log" 2>&1
echo "corpus rc=$? ($(tail -1 "$OUT/corpus.log"))"

LAST_SIZE=${SIZES##* }
for d in $SIZES; do
    stage "sweep: d = $d x $LAYERS, $SWEEP_STEPS steps"
    # The largest model also measures the data path alone (item 6): cached features, 0 / 4 / 8
    # loader workers, as a ratio to its own training step's audio s/s.
    options=""
    [[ $d == "$LAST_SIZE" ]] && options="--loader --loader-workers $LOADER_WORKERS --loader-batches 20"
    bench "sweep-d$d" "$d" 150 "$SWEEP_STEPS" "$options"
done

# The same LR schedule for both (train.max_steps); DMAO's event lands mid-window.
SCHEDULE="train.max_steps=$((WARMUP + DMAO_STEPS))"
stage "DMAO vs baseline: d = $DMAO_SIZE, $DMAO_STEPS steps each"
bench "baseline-d$DMAO_SIZE" "$DMAO_SIZE" 150 "$DMAO_STEPS" "" "$SCHEDULE"
bench "dmao-d$DMAO_SIZE" "$DMAO_SIZE" 150 "$DMAO_STEPS" "--profile-after-event 10" \
    "$SCHEDULE" dmao.enabled=true \
    dmao.num_events=1 dmao.last_event_fraction=0.5 dmao.total_fraction=0.15 \
    dmao.granularity=4 dmao.score_every_steps=10

if [[ $QKV_SIZE != none ]]; then
    stage "fused QKV vs separate q, k, v: $QKV_SIZE, $QKV_ROUNDS rounds"
    limit=$(cap 90)
    if ((limit < 20)); then
        echo "fused-qkv: skipped (budget spent)"
    else
        timeout --signal=TERM "$limit" "$PY" benchmarks/bench_fused_qkv.py --device "$DEVICE" \
            --sizes "$QKV_SIZE" --rounds "$QKV_ROUNDS" >"$OUT/fused_qkv.txt" 2>&1
        echo "fused-qkv rc=$?"
        tail -4 "$OUT/fused_qkv.txt"
    fi
fi

if ((COMPILE_SIZE > 0)); then
    STATIC="data.pad_to_bucket=true data.num_buckets=$COMPILE_BUCKETS"
    stage "torch.compile: d = $COMPILE_SIZE, $COMPILE_STEPS steps, static shapes"
    # shellcheck disable=SC2086
    bench "static-d$COMPILE_SIZE" "$COMPILE_SIZE" 120 "$COMPILE_STEPS" "" $STATIC
    # shellcheck disable=SC2086
    bench "compiled-d$COMPILE_SIZE" "$COMPILE_SIZE" 240 "$COMPILE_STEPS" "--compile static" $STATIC
    if [[ $DEVICE == cuda* ]]; then
        # shellcheck disable=SC2086
        bench "cudagraphs-d$COMPILE_SIZE" "$COMPILE_SIZE" 240 "$COMPILE_STEPS" \
            "--compile cudagraphs" $STATIC
    fi
else
    stage "torch.compile: skipped (--compile-size 0)"
fi

stage "table"
"$PY" benchmarks/perf_table.py "$OUT" | tee "$OUT/table.md"
stage "done"
