#!/usr/bin/env bash
# The README's worked example: does a DRO-CVaR allocation hold up out of sample better than the
# alternatives?  Train four Stage-I allocations on one reduced scenario set of the bundled
# IEEE 33-bus example, then run each (and do-nothing) in closed loop -- rolling Stage-II
# dispatch against AC power flow -- on (a) held-out days of the same spec and (b) days of a
# shifted, heavier spec (scenarios/ieee33_ai_heavy.toml).
#
#   bash benchmarks/worked_example.sh [OUT_DIR] [N_TEST]      (default results/worked, 20)
#
# About 1.5 h on 2 cores with N_TEST = 20 (five allocations x 2 x N_TEST day-long episodes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/worked}
N_TEST=${2:-20}
SIMGRID=${SIMGRID:-simgrid}
CFG=configs/ieee33.toml
mkdir -p "$OUT"

# training set: 1,000 days drawn from the shipped spec, reduced to 30 representative days
$SIMGRID scenarios scenarios/ieee33_ai.toml --n 1000 --seed 1 --reduce 30 --out "$OUT/train.nc"
# held-out days: the same spec, another seed; and the shifted spec
$SIMGRID scenarios scenarios/ieee33_ai.toml --n "$N_TEST" --seed 2 --out "$OUT/heldout.nc"
$SIMGRID scenarios scenarios/ieee33_ai_heavy.toml --n "$N_TEST" --seed 3 --out "$OUT/heavy.nc"

# four planners on the same training set (alpha = 0.95 from the config)
$SIMGRID allocate $CFG --scenarios "$OUT/train.nc" --ambiguity deterministic --out "$OUT/deterministic.nc"
$SIMGRID allocate $CFG --scenarios "$OUT/train.nc" --ambiguity none --beta 0 --out "$OUT/saa.nc"
$SIMGRID allocate $CFG --scenarios "$OUT/train.nc" --ambiguity none --beta 0.5 --out "$OUT/saa_cvar.nc"
$SIMGRID allocate $CFG --scenarios "$OUT/train.nc" --ambiguity wasserstein --radius 0.1 --beta 0.5 \
    --out "$OUT/dro_cvar.nc"

ALLOC=("$OUT/deterministic.nc" "$OUT/saa.nc" "$OUT/saa_cvar.nc" "$OUT/dro_cvar.nc")
$SIMGRID evaluate $CFG --allocations "${ALLOC[@]}" --scenarios "$OUT/heldout.nc" \
    --out "$OUT/eval_heldout" --no-progress
$SIMGRID evaluate $CFG --allocations "${ALLOC[@]}" --scenarios "$OUT/heavy.nc" \
    --out "$OUT/eval_heavy" --no-progress
