"""Stage-II dispatch speed on the bundled IEEE 33-bus example (all four FCM types, H = 12).

    python benchmarks/bench_dispatch.py [--hours 14]

Runs the closed loop twice on the same shocks, side by side: simgrid's dispatcher (persistent
highspy model built once, bounds updated in place; binaries integral only in the first
`integer_periods` of the lookahead; HiGHS' sub-MIP heuristics off) and the straightforward
formulation of the same model (same constraints and objective, binaries in every period,
HiGHS defaults) rebuilt in pyomo at every dispatch step. Prints
per-step medians and p90s (update + solve + read-out), the modelling overhead (everything but
HiGHS' own time), the speed-up, and the realised closed-loop cost of both. Then one simulated
day at 60 s power flow with 5-minute re-dispatch, wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simgrid.config import load_config  # noqa: E402
from simgrid.inputs import prepare  # noqa: E402
from simgrid.runner import build_policy, run  # noqa: E402


def closed_loop_cost(ds, cfg) -> float:
    """What the run cost in the dispatcher's own prices: VoLL, imbalance, FCM operation."""
    d = cfg.dispatch
    return (
        d.voll_per_mwh * float(ds["unserved_energy_mwh"])
        + d.imbalance_per_mwh * float(ds["imbalance_energy_mwh"])
        + float(ds["fcm_cost"])
    )


def measure(cfg, inputs, backend: str, reference: bool = False):
    policy = build_policy(cfg, inputs, backend=backend, reference=reference)
    t0 = time.perf_counter()
    ds = run(cfg, inputs=inputs, policy=policy)
    wall = time.perf_counter() - t0
    step = np.array(policy.step_wall_s)
    solver = np.array(policy.solver_s)
    return ds, wall, step, solver, policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--hours",
        type=float,
        default=14.0,
        help="closed-loop horizon of the side-by-side comparison (default 14 h: "
        "the quiet night, the training ramp, the oscillation and the trip)",
    )
    args = ap.parse_args()
    base = load_config(REPO / "configs" / "ieee33.toml")
    cfg = replace(base, horizon_s=args.hours * 3600)
    inputs = prepare(cfg)

    ds_h, wall_h, step_h, solver_h, policy_h = measure(cfg, inputs, "highs")
    ds_p, wall_p, step_p, solver_p, _ = measure(cfg, inputs, "pyomo", reference=True)
    cost_h, cost_p = closed_loop_cost(ds_h, cfg), closed_loop_cost(ds_p, cfg)
    over_h = (step_h - solver_h) / step_h
    print(
        f"IEEE 33-bus example, {args.hours:g} h closed loop, {len(step_h)} dispatch steps, "
        f"H = {cfg.dispatch.horizon_steps} x {cfg.dispatch.redispatch_s:g} s, "
        f"units: {', '.join(ds_h['unit'].to_numpy().astype(str))}"
    )
    print("                       simgrid (persistent)   straightforward (pyomo rebuilt)")
    print(
        f"  median step (ms)     {np.median(step_h) * 1e3:12.1f}   {np.median(step_p) * 1e3:14.1f}"
        "   (target <= 100)"
    )
    print(
        f"  p90 step (ms)        {np.percentile(step_h, 90) * 1e3:12.1f}   "
        f"{np.percentile(step_p, 90) * 1e3:14.1f}   (target <= 300)"
    )
    print(
        f"  solver median (ms)    {np.median(solver_h) * 1e3:12.1f}   "
        f"{np.median(solver_p) * 1e3:14.1f}"
    )

    def share(step, solver):  # all time outside the solver, over all dispatch time
        return (step.sum() - solver.sum()) / step.sum() * 100

    print(
        f"  overhead, all steps (%) {share(step_h, solver_h):9.1f}   "
        f"{share(step_p, solver_p):14.1f}   (target <= 20)"
    )
    print(
        f"  overhead median (ms) {np.median(step_h - solver_h) * 1e3:12.1f}   "
        f"{np.median(step_p - solver_p) * 1e3:14.1f}"
    )
    print(
        f"  overhead median step (%) {np.median(over_h) * 100:8.1f}   "
        f"{np.median((step_p - solver_p) / step_p) * 100:14.1f}"
    )
    print(
        f"  closed-loop cost ($) {cost_h:12.1f}   {cost_p:14.1f}   "
        f"(simgrid {(cost_h - cost_p) / cost_p * 100:+.3f} %, target <= +0.5 %)"
    )
    print(f"  run wall time (s)    {wall_h:12.1f}   {wall_p:14.1f}")
    print(
        f"  speed-up, total dispatch time: {step_p.sum() / step_h.sum():.1f}x (target >= 10); "
        f"median step {np.median(step_p) / np.median(step_h):.0f}x; "
        f"LP path answered {policy_h.lp_accepted} of {len(policy_h.costs)} solves "
        f"({policy_h.lp_dives} after a dive) in {len(step_h)} steps"
    )

    inputs_day = prepare(base)
    policy = build_policy(base, inputs_day)
    t0 = time.perf_counter()
    ds = run(base, inputs=inputs_day, policy=policy)
    day = np.array(policy.step_wall_s)
    print(
        f"one simulated day, 60 s power flow, 5-minute re-dispatch: "
        f"{time.perf_counter() - t0:.1f} s wall ({ds.sizes['time']} steps, {len(day)} "
        f"dispatches; step median {np.median(day) * 1e3:.0f} ms, "
        f"p90 {np.percentile(day, 90) * 1e3:.0f} ms)"
    )


if __name__ == "__main__":
    main()
