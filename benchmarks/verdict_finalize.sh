#!/usr/bin/env bash
# The end of the verdict's stage 2 (docs/protocol.md): every table RESULTS.md's verdict section
# needs, from the comparison's results.csv and the archived run records, in one command.
#
#   benchmarks/verdict_finalize.sh EXP_CSV [OUT]      e.g. exp/final6k/results.csv results/final
#
# Writes into OUT (default results/final):
#   results.csv       the comparison's per-run table (copied; the CSV the issue asks to commit)
#   tables.md         the final table with paired differences, verdicts and the decision
#                     (benchmarks/verdict_tables.py, the rules of "Metric and what counts as a win")
#   convergence.md    every baseline run's dev WER over its last 10 % of steps
#                     (benchmarks/verdict_convergence.py --runs OUT/runs: from the records)
#   architecture.md   the exploratory architecture analysis fixed in the protocol: `dmao report`
#                     over the selected variant's seeds against the authors' allocation, and
#                     each other DMAO system's seeds alone; figures in OUT/report/
#   bootstrap.md      exploratory: each seed's test-set bootstrap interval against the baseline
#                     of the same seed beside the spread over seeds (benchmarks/verdict_bootstrap.py)
#   compute.md        each system's runs, training minutes and code versions
#                     (benchmarks/verdict_compute.py; the wall times the protocol asks for)
# Reads only OUT/runs (the records `dmao compare --archive` keeps) and the CSV, so it runs on any
# machine after the run folders are gone. STEPS (default 6000) is the recipe's train.max_steps;
# SELECTED (default gradmax) the variant whose architecture the control and search retrain.
set -euo pipefail
cd "$(dirname "$0")/.."
CSV=${1:?usage: benchmarks/verdict_finalize.sh EXP_CSV [OUT]}
OUT=${2:-results/final}
DMAO=${DMAO:-.venv/bin/dmao}
PYTHON=${PYTHON:-$(dirname "$DMAO")/python}
STEPS=${STEPS:-6000}
SELECTED=${SELECTED:-gradmax}
REFERENCE=${REFERENCE:-dmao/configs/synthetic/architectures/authors.json}
RUNS=$OUT/runs
[[ -d $RUNS ]] || { echo "verdict_finalize.sh: no records in $RUNS" >&2; exit 2; }

[[ $(realpath "$CSV") == $(realpath -m "$OUT/results.csv") ]] || cp "$CSV" "$OUT/results.csv"
"$PYTHON" benchmarks/verdict_tables.py "$OUT/results.csv" > "$OUT/tables.md"
"$PYTHON" benchmarks/verdict_convergence.py "$OUT/results.csv" --steps "$STEPS" \
    --systems baseline --runs "$RUNS" > "$OUT/convergence.md"

seeds_of() {  # the seed folders of one system's records, in order
    find "$RUNS/$1" -mindepth 1 -maxdepth 1 -name 'seed*' | sort
}
{
    echo "## Where the seeds of $SELECTED put the budget (exploratory; docs/protocol.md)"
    echo
    mapfile -t selected < <(seeds_of "$SELECTED")
    echo '```'
    "$DMAO" report "${selected[@]}" --reference "$REFERENCE" --out "$OUT/report/$SELECTED"
    echo '```'
    for system in dmao rewarmup reference; do
        [[ -d $RUNS/$system && $system != "$SELECTED" ]] || continue
        mapfile -t seeds < <(seeds_of "$system")
        (( ${#seeds[@]} > 1 )) || continue
        echo
        echo "### $system"
        echo
        echo '```'
        "$DMAO" report "${seeds[@]}" --reference "$REFERENCE" --out "$OUT/report/$system"
        echo '```'
    done
} > "$OUT/architecture.md"
"$PYTHON" benchmarks/verdict_bootstrap.py "$RUNS" > "$OUT/bootstrap.md"
"$PYTHON" benchmarks/verdict_compute.py "$RUNS" > "$OUT/compute.md"
echo "written: $OUT/results.csv $OUT/tables.md $OUT/convergence.md $OUT/architecture.md" \
    "$OUT/bootstrap.md $OUT/compute.md"
