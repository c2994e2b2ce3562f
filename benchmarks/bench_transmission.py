"""Speed at transmission scale: case_ACTIVSg2000 (2,000 buses, 3,206 branches, 544 generators)
and the GW example on it (configs/activsg2000_gw.toml), measured side by side in one run; the
machine is noisy, so read the ratios.

    python benchmarks/bench_transmission.py [--only step day stage1] [--scenarios 20]
                                            [--workers 2]

* step: one AC step after a change of demand (an hour of one-minute steps: a campus ramping
  20 MW a minute at a 500 kV bus, per-bus noise of +-1 %), solved by `pandapower.runpp`
  (numba, warm: init from its last results; every 6th step), by a bare lightsim2grid Newton
  (the grid model built from the same net, loads changed in place, warm start: the floor) and
  by simgrid's engine (distributed slack: the generators take the change by their shares,
  results read back);
* day: the GW example's day undispatched and dispatched (wall time, the dispatch calls'
  median and 90th percentile);
* stage1: `simgrid allocate` of the example's [planning] (DRO-CVaR) on S scenarios of
  scenarios/activsg2000_ai.toml (drawn 10 x S, seed 1, reduced to S), without the VSS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_powerflow import time_bare_lightsim, time_runpp, time_simgrid  # noqa: E402

from simgrid.cli import main as cli  # noqa: E402
from simgrid.config import load_config  # noqa: E402
from simgrid.inputs import prepare  # noqa: E402
from simgrid.powerflow import per_bus_load_net  # noqa: E402
from simgrid.runner import build_policy, run  # noqa: E402
from simgrid.types import DoNothing  # noqa: E402

EXAMPLE = REPO / "configs" / "activsg2000_gw.toml"
SPEC = REPO / "scenarios" / "activsg2000_ai.toml"


def an_hour(nw, campus_bus: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 60
    f = rng.uniform(0.99, 1.01, (n, nw.n_bus))
    p, q = nw.base_load_p_mw * f, nw.base_load_q_mvar * f
    p[:, campus_bus] += 20.0 * np.arange(n)
    q[:, campus_bus] += 4.0 * np.arange(n)
    return p, q


def step(inputs) -> None:
    nw = inputs.network
    bus = inputs.config.campuses[0].bus
    p, q = an_hour(nw, bus)
    runpp_steps = list(range(0, len(p), 6))
    time_runpp(per_bus_load_net(nw), p, q, runpp_steps[:1])  # numba compiled, results to init
    t_runpp, _ = time_runpp(per_bus_load_net(nw), p, q, runpp_steps)
    t_bare = time_bare_lightsim(per_bus_load_net(nw), p, q)
    t_sim, _ = time_simgrid(nw, p, q)
    print(f"AC step on {nw.name} ({nw.n_bus} buses, {nw.n_line} lines), {len(p)} steps")
    print(f"  pandapower.runpp        {t_runpp * 1e3:9.2f} ms/step  (single slack)")
    print(f"  bare lightsim2grid      {t_bare * 1e3:9.2f} ms/step  (single slack)")
    print(f"  simgrid engine          {t_sim * 1e3:9.2f} ms/step  (distributed slack)")
    print(f"  runpp / simgrid         {t_runpp / t_sim:9.1f}x")
    print(f"  simgrid / bare          {t_sim / t_bare:9.1f}x", flush=True)


def day(inputs) -> None:
    cfg = inputs.config
    t0 = time.perf_counter()
    run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))
    t_none = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = run(cfg, inputs=inputs, policy=build_policy(cfg, inputs))
    t_milp = time.perf_counter() - t0
    calls = ds["dispatch_status"].to_numpy() < 4
    solve = ds["dispatch_solve_s"].to_numpy()[calls]
    print(f"GW example day ({int(ds.sizes['time'])} steps)")
    print(f"  undispatched            {t_none:9.1f} s")
    print(f"  dispatched              {t_milp:9.1f} s   ({t_milp / t_none:.1f}x)")
    print(
        f"  dispatch call           median {np.median(solve):.3f} s, "
        f"p90 {np.percentile(solve, 90):.3f} s, max {solve.max():.3f} s over {calls.sum()} calls",
        flush=True,
    )


def stage1(n: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sset, out = Path(tmp) / "set.nc", Path(tmp) / "alloc.nc"
        argv = ["scenarios", str(SPEC), "--n", str(10 * n), "--seed", "1", "--reduce", str(n)]
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli([*argv, "--out", str(sset), "--no-progress"]) == 0
        printed = io.StringIO()
        t0 = time.perf_counter()
        argv = ["allocate", str(EXAMPLE), "--scenarios", str(sset), "--no-vss", "--no-progress"]
        with contextlib.redirect_stdout(printed):
            code = cli([*argv, "--workers", str(workers), "--out", str(out)])
        wall = time.perf_counter() - t0
    print(f"Stage-I at S = {n} ({workers} workers): {wall:.1f} s, exit {code}")
    for line in printed.getvalue().splitlines()[:12]:
        print("  " + line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=["step", "day", "stage1"])
    ap.add_argument("--scenarios", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    inputs = prepare(load_config(EXAMPLE))
    if "step" in args.only:
        step(inputs)
    if "day" in args.only:
        day(inputs)
    if "stage1" in args.only:
        stage1(args.scenarios, args.workers)


if __name__ == "__main__":
    main()
