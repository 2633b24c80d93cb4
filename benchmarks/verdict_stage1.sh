#!/usr/bin/env bash
# Stage 1 of the verdict (docs/protocol.md): the selection runs, exactly as started on 2026-12-04.
# Resumable: run it again (same arguments) in the next session; finished runs are skipped.
# One thread per run, so other work can go on beside it on the 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DMAO=${DMAO:-.venv/bin/dmao}
A=dmao/configs/synthetic/architectures
exec "$DMAO" compare --config dmao/configs/synthetic/verdict.yaml \
    --dmao-config dmao/configs/synthetic/verdict_dmao.yaml --out "${1:-exp/selection}" \
    --seeds 0 1 2 \
    --variant copy:dmao.growth_init=copy --variant split:dmao.growth_init=split \
    --variant gradmax:dmao.growth_init=gradmax --variant rewarmup:dmao.rewarmup_steps=100 \
    --variant gradual:dmao.num_events=4,dmao.event_spacing=cosine \
    --variant reference:dmao.growth_init=reference \
    --variant perturb:dmao.growth_init=reference,dmao.perturb_only=true \
    --variant random:dmao.metric=random \
    --variant "arch-authors:dmao.enabled=false,model.architecture=$A/authors.json" \
    --variant "arch-middle:dmao.enabled=false,model.architecture=$A/middle_wide.json" \
    -- train.progress_bar=false train.num_threads=1
