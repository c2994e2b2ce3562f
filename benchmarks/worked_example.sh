#!/usr/bin/env bash
# The README's worked example: does a DRO-CVaR allocation hold up out of sample better than the
# alternatives, and does the planner know what operation will cost?  Train four Stage-I
# allocations on one reduced scenario set of the bundled IEEE 33-bus example, then run each
# (and do-nothing) in closed loop -- rolling Stage-II dispatch against AC power flow -- on
# (a) held-out days of the same spec and (b) days of a shifted, heavier spec
# (scenarios/ieee33_ai_heavy.toml: faster ramps, three oscillations a day at both campuses,
# longer surges, twice the trips and outages), paired against SAA-CVaR day by day.
#
#   bash benchmarks/worked_example.sh [OUT_DIR] [N_TEST] [WORKERS]   (default results/worked, 30, 2)
#
# About an hour on 2 cores with N_TEST = 30 (four plans, then five allocations x 2 x N_TEST
# day-long episodes and the planner's recourse on every test day).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/worked}
N_TEST=${2:-30}
WORKERS=${3:-2}
SIMGRID=${SIMGRID:-simgrid}
CFG=configs/ieee33.toml
mkdir -p "$OUT"

# training set: 1,000 days drawn from the shipped spec, reduced to 20 representative days
$SIMGRID scenarios scenarios/ieee33_ai.toml --n 1000 --seed 11 --reduce 20 --out "$OUT/train.nc"
# held-out days: the same spec, another seed; and the shifted spec
$SIMGRID scenarios scenarios/ieee33_ai.toml --n "$N_TEST" --seed 12 --out "$OUT/heldout.nc"
$SIMGRID scenarios scenarios/ieee33_ai_heavy.toml --n "$N_TEST" --seed 13 --out "$OUT/heavy.nc"

# four planners on the same training set (alpha = 0.95 from the config); the deterministic
# plan once, its file giving the others their value of the stochastic solution
PLAN=(--scenarios "$OUT/train.nc" --workers "$WORKERS" --no-progress)
$SIMGRID allocate $CFG "${PLAN[@]}" --ambiguity deterministic --out "$OUT/deterministic.nc"
VSS=(--vss-from "$OUT/deterministic.nc")
$SIMGRID allocate $CFG "${PLAN[@]}" "${VSS[@]}" --ambiguity none --beta 0 --out "$OUT/saa.nc"
$SIMGRID allocate $CFG "${PLAN[@]}" "${VSS[@]}" --ambiguity none --beta 0.5 \
    --out "$OUT/saa_cvar.nc"
$SIMGRID allocate $CFG "${PLAN[@]}" "${VSS[@]}" --ambiguity wasserstein --radius 0.1 \
    --beta 0.5 --out "$OUT/dro_cvar.nc"

ALLOC=("$OUT/deterministic.nc" "$OUT/saa.nc" "$OUT/saa_cvar.nc" "$OUT/dro_cvar.nc")
for SET in heldout heavy; do
    $SIMGRID evaluate $CFG --allocations "${ALLOC[@]}" --scenarios "$OUT/$SET.nc" \
        --reference saa_cvar --workers "$WORKERS" --out "$OUT/eval_$SET" --no-progress
done
