#!/usr/bin/env bash
# Stage 2 of the verdict (docs/protocol.md): the final runs, seeds 0-4, 3,000 steps — since
# Amendment 1 (the 3,000-step gate failed) 6,000 steps:
#
#   benchmarks/verdict_stage2.sh OUT A B
#   CONFIG=dmao/configs/synthetic/verdict_final6k.yaml STEPS=6000 GATE_FAILURE=continue \
#       DMAO_CONFIG=dmao/configs/synthetic/verdict_final6k_dmao.yaml \
#       benchmarks/verdict_stage2.sh OUT A B
#
# A and B: the two in-training variants stage 1 selected (benchmarks/verdict_select.py
# exp/selection/results.csv --names), by their stage-1 names (dmao, copy, split, gradmax,
# rewarmup, gradual). Resumable like stage 1: run it again with the same arguments.
#
# 1. The convergence gate: the baseline of seed 0 is trained first and alone (`dmao train`, the
#    config `dmao compare` gives it), and its dev WER must move by less than 1 point over the
#    last 10 % of STEPS (benchmarks/verdict_convergence.py). If it does not, the script stops
#    (exit 3), unless GATE_FAILURE=continue: the protocol says what follows a failure.
# 2. Every other run: `dmao compare` with baseline, A, B, reference, perturb, the control
#    (A's final architecture from scratch) and search-then-retrain from A's recipe. `dmao` (fresh
#    growth) is always one of compare's systems, so it is trained even when neither A nor B is
#    `dmao`. The finished gate run is recognised and skipped.
#
# Since Amendment 2 (docs/protocol.md): GATE_CHECK=skip leaves step 1 out (the gate run is then one of
# compare's runs; benchmarks/verdict_convergence.py reports every seed's last 10 % at the end),
# and COMPARE_ARGS passes more options to `dmao compare` (--share-prefix --archive DIR).
#
# Like stage 1, run it from the worktree pinned at the verdict's commit (docs/protocol.md, "Code
# changes"), with OUT absolute: PYTHONPATH=$PWD JOBS=2 DMAO=/path/.venv/bin/dmao bash ...
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/verdict_stage2.sh OUT A B}
A=${2:?usage: benchmarks/verdict_stage2.sh OUT A B}
B=${3:?usage: benchmarks/verdict_stage2.sh OUT A B}
DMAO=${DMAO:-.venv/bin/dmao}
PYTHON=${PYTHON:-$(dirname "$DMAO")/python}
JOBS=${JOBS:-1}
STEPS=${STEPS:-3000}  # the recipe's train.max_steps; smaller only in the toy test
CONFIG=${CONFIG:-dmao/configs/synthetic/verdict_final.yaml}
DMAO_CONFIG=${DMAO_CONFIG:-dmao/configs/synthetic/verdict_final_dmao.yaml}
read -ra MORE <<< "${EXTRA_OVERRIDES:-}"  # extra key=value overrides for every run (toy test)
EXTRA=(train.progress_bar=false train.num_threads=1 "${MORE[@]}")

variant() {  # the stage-1 definition of a selected system, as a --variant argument
    case $1 in
        dmao) ;;  # compare's own DMAO system
        copy) echo "copy:dmao.growth_init=copy" ;;
        split) echo "split:dmao.growth_init=split" ;;
        gradmax) echo "gradmax:dmao.growth_init=gradmax" ;;
        rewarmup) echo "rewarmup:dmao.rewarmup_steps=100" ;;
        gradual) echo "gradual:dmao.num_events=4,dmao.event_spacing=cosine" ;;
        *) echo "verdict_stage2.sh: '$1' is not an in-training variant of stage 1" >&2; exit 2 ;;
    esac
}
[[ $A != "$B" ]] || { echo "verdict_stage2.sh: A and B must differ, got '$A' twice" >&2; exit 2; }
VARIANTS=()
for name in "$A" "$B"; do
    v=$(variant "$name")
    [[ -z $v ]] || VARIANTS+=(--variant "$v")
done

# 1. The gate: baseline, seed 0, alone (GATE_CHECK=skip: not at all).
GATE=$OUT/baseline/seed0
if [[ ${GATE_CHECK:-run} != skip ]]; then
    if [[ ! -f $GATE/train_summary.json ]]; then
        RESUME=()
        compgen -G "$GATE/checkpoints/step-*" > /dev/null && RESUME=(--resume)
        "$DMAO" train --config "$CONFIG" --out "$GATE" "${RESUME[@]}" \
            "${EXTRA[@]}" dmao.enabled=false train.seed=0
    fi
    # Exit 3 = failed. The 3,000-step recipe's failure moved stage 2 to 6,000 steps (Amendment
    # 1), whose own failure is reported, not a stop: GATE_FAILURE=continue goes on anyway.
    "$PYTHON" benchmarks/verdict_convergence.py --gate "$GATE" --steps "$STEPS" || {
        rc=$?
        [[ $rc == 3 && ${GATE_FAILURE:-stop} == continue ]] || exit $rc
        echo "gate failed; going on as docs/protocol.md (Amendment 1) says (GATE_FAILURE=continue)"
    }
fi

# 2. Everything else.
read -ra COMPARE <<< "${COMPARE_ARGS:-}"
exec "$DMAO" compare "${COMPARE[@]}" --config "$CONFIG" --dmao-config "$DMAO_CONFIG" --out "$OUT" \
    --seeds ${SEEDS:-0 1 2 3 4} --jobs "$JOBS" "${VARIANTS[@]}" \
    --variant reference:dmao.growth_init=reference \
    --variant perturb:dmao.growth_init=reference,dmao.perturb_only=true \
    --control --control-from "$A" --search-retrain --search-from "$A" \
    -- "${EXTRA[@]}"
