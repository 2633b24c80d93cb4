#!/usr/bin/env bash
# The verdict at scale on one GPU (docs/protocol.md, "At scale"; issue 16): stage 2's systems at
# the paper's smallest size (d = 256 x 12, 19 M parameters, verdict_gpu.yaml) on the 10 h built-in
# corpus — baseline, DMAO (fresh), reference, perturbation-only, the control and
# search-then-retrain — for 3 seeds, six runs side by side, through benchmarks/gpu_session.sh
# (corpus, comparison, packed results). The DMAO systems train their steps before the first event
# once per seed (--share-prefix). Resumable across GPU sessions, each on a fresh machine: the
# finished runs' records are read from results/gpu/runs (--archive-from; ARCHIVE_FROM= to change)
# and written to OUT/archive; copy OUT/archive back into results/gpu/runs and commit it after
# each session, and the next call trains only what is missing.
#
#   benchmarks/gpu_verdict.sh OUT [--seeds "0 1 2"] [--systems "--variant NAME:k=v ..."]
#                                 [--overrides "k=v ..."] [gpu_session.sh options]
#
# --systems adds the variants selected in stage 1 (e.g. "--variant split:dmao.growth_init=split
# --control-from split --search-from split"); --overrides are passed to every run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu_verdict.sh OUT [options]}
shift
SEEDS="0 1 2" SYSTEMS="" OVERRIDES="" REST=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seeds) SEEDS=$2; shift 2 ;;
        --systems) SYSTEMS=$2; shift 2 ;;
        --overrides) OVERRIDES=$2; shift 2 ;;
        *) REST+=("$1" "$2"); shift 2 ;;
    esac
done
exec bash benchmarks/gpu_session.sh "$OUT" --hours 10 --corpus data/synthetic10h --check-steps 0 \
    --jobs 6 --compare-config dmao/configs/synthetic/verdict_gpu.yaml --compare-args "$OVERRIDES" \
    --compare-options "--dmao-config dmao/configs/synthetic/verdict_gpu_dmao.yaml \
        --variant reference:dmao.growth_init=reference \
        --variant perturb:dmao.growth_init=reference,dmao.perturb_only=true \
        --control --search-retrain --share-prefix $SYSTEMS --seeds $SEEDS" \
    --archive-from "${ARCHIVE_FROM-results/gpu/runs}" "${REST[@]}"
