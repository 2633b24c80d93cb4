#!/usr/bin/env bash
# Stage 1 of the verdict (docs/protocol.md): the selection runs, exactly as started on 2026-12-04.
# Resumable: run it again (same arguments) in the next session; finished runs are skipped.
# One thread per run, so other work can go on beside it on the 2-core machine; JOBS=2 trains two
# runs at a time (one thread each; same results, each run is deterministic on its own).
# The runs pin the code by hash (docs/protocol.md): to develop beside them, run this script from a
# git worktree at the pinned commit (`git worktree add --detach ../verdict-code COMMIT`, with
# `data` linked in and PYTHONPATH pointing at it) and give OUT as an absolute path.
set -euo pipefail
cd "$(dirname "$0")/.."
DMAO=${DMAO:-.venv/bin/dmao}
JOBS=${JOBS:-1}
A=dmao/configs/synthetic/architectures
exec "$DMAO" compare --config dmao/configs/synthetic/verdict.yaml \
    --dmao-config dmao/configs/synthetic/verdict_dmao.yaml --out "${1:-exp/selection}" \
    --seeds 0 1 2 --jobs "$JOBS" \
    --variant copy:dmao.growth_init=copy --variant split:dmao.growth_init=split \
    --variant gradmax:dmao.growth_init=gradmax --variant rewarmup:dmao.rewarmup_steps=100 \
    --variant gradual:dmao.num_events=4,dmao.event_spacing=cosine \
    --variant reference:dmao.growth_init=reference \
    --variant perturb:dmao.growth_init=reference,dmao.perturb_only=true \
    --variant random:dmao.metric=random \
    --variant "arch-authors:dmao.enabled=false,model.architecture=$A/authors.json" \
    --variant "arch-middle:dmao.enabled=false,model.architecture=$A/middle_wide.json" \
    -- train.progress_bar=false train.num_threads=1
