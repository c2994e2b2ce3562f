"""Per-step AC power flow on the IEEE 33-bus feeder: simgrid's engine against the usual ways.

All methods solve the same one-day, one-minute load profile (diurnal shape with seeded per-bus
noise), measured side by side in one run; the machine is noisy, so read the ratios.

    python benchmarks/bench_powerflow.py [--sample-every 10]

* runpp: plain `pandapower.runpp` per step (loads set in net.load), every Nth step;
* run_timeseries: pandapower's time-series loop (ConstControl + in-memory OutputWriter) on the
  same sampled steps;
* bare lightsim2grid: the floor -- an LSGrid built from the net, loads changed in place, solve;
* simgrid: `PowerFlowEngine.solve` (set injections, solve, read voltages and line loadings) plus
  recording into preallocated arrays.
Also: the bundled example end to end (CLI, imports included) and the closed loop of one day.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simgrid.config import NetworkConfig, load_config  # noqa: E402
from simgrid.inputs import prepare  # noqa: E402
from simgrid.network import build_network  # noqa: E402
from simgrid.powerflow import PowerFlowEngine, per_bus_load_net  # noqa: E402
from simgrid.profiles import diurnal  # noqa: E402
from simgrid.runner import run  # noqa: E402
from simgrid.types import DoNothing  # noqa: E402


def profile_day(nw, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, 86400, 60.0)
    f = diurnal().at(t)[:, None] * rng.uniform(0.95, 1.05, (len(t), nw.n_bus))
    return nw.base_load_p_mw * f, nw.base_load_q_mvar * f


def time_runpp(net, p, q, steps):
    import pandapower as pp

    vm = []
    t0 = time.perf_counter()
    for k in steps:
        net.load["p_mw"] = p[k]
        net.load["q_mvar"] = q[k]
        pp.runpp(net, numba=True)
        vm.append(net.res_bus.vm_pu.to_numpy().copy())
    return (time.perf_counter() - t0) / len(steps), np.array(vm)


def time_run_timeseries(net, p, q, steps):
    import pandapower.control as control
    import pandapower.timeseries as ts
    import pandas as pd

    df_p = pd.DataFrame(p[steps], columns=net.load.index)
    df_q = pd.DataFrame(q[steps], columns=net.load.index)
    control.ConstControl(
        net,
        "load",
        "p_mw",
        element_index=net.load.index,
        data_source=ts.DFData(df_p),
        profile_name=net.load.index,
    )
    control.ConstControl(
        net,
        "load",
        "q_mvar",
        element_index=net.load.index,
        data_source=ts.DFData(df_q),
        profile_name=net.load.index,
    )
    ow = ts.OutputWriter(net, time_steps=range(len(steps)), output_path=None)
    ow.log_variable("res_bus", "vm_pu")
    ow.log_variable("res_line", "loading_percent")
    t0 = time.perf_counter()
    ts.run_timeseries(net, time_steps=range(len(steps)), verbose=False, numba=True)
    return (time.perf_counter() - t0) / len(steps)


def time_bare_lightsim(net, p, q, reps: int = 3):
    from lightsim2grid.network import init_from_pandapower

    grid = init_from_pandapower(net)
    v = np.ones(grid.total_bus(), dtype=complex)
    mask = np.ones(p.shape[1], dtype=bool)
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for k in range(len(p)):
            grid.update_loads_p(mask, p32[k])
            grid.update_loads_q(mask, q32[k])
            v = grid.ac_pf(v, 10, 1e-8)
        best = min(best, (time.perf_counter() - t0) / len(p))
    return best


def time_simgrid(nw, p, q, reps: int = 3):
    engine = PowerFlowEngine(nw)
    vm = np.empty((len(p), nw.n_bus))
    loading = np.empty((len(p), nw.n_line))
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for k in range(len(p)):
            res = engine.solve(p[k], q[k])
            vm[k] = res.vm_pu
            loading[k] = res.line_loading_percent
        best = min(best, (time.perf_counter() - t0) / len(p))
    return best, vm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sample-every",
        type=int,
        default=10,
        help="runpp and run_timeseries solve every Nth step (they are slow)",
    )
    args = ap.parse_args()

    nw = build_network(NetworkConfig())
    p, q = profile_day(nw)
    steps = np.arange(0, len(p), args.sample_every)

    # warm up numba / JIT paths once so no method pays compilation in its timing
    time_runpp(per_bus_load_net(nw), p, q, steps[:2])
    t_runpp, vm_runpp = time_runpp(per_bus_load_net(nw), p, q, steps)
    t_ts = time_run_timeseries(per_bus_load_net(nw), p, q, steps)
    t_bare = time_bare_lightsim(per_bus_load_net(nw), p, q)
    t_sim, vm_sim = time_simgrid(nw, p, q)
    err = float(np.max(np.abs(vm_sim[steps] - vm_runpp)))

    print(
        f"IEEE 33-bus, one day at 60 s ({len(p)} steps; runpp/run_timeseries on "
        f"{len(steps)} of them)"
    )
    print(f"  runpp                 {t_runpp * 1e3:9.3f} ms/step")
    print(f"  run_timeseries        {t_ts * 1e3:9.3f} ms/step")
    print(f"  bare lightsim2grid    {t_bare * 1e6:9.1f} us/step")
    print(f"  simgrid engine+record {t_sim * 1e6:9.1f} us/step")
    print("ratios (target):")
    print(f"  runpp / simgrid           {t_runpp / t_sim:8.1f}x  (>= 50x)")
    print(f"  run_timeseries / simgrid  {t_ts / t_sim:8.1f}x  (>= 10x)")
    print(f"  simgrid / bare            {t_sim / t_bare:8.2f}x  (<= 3x)")
    print(f"  max |vm - vm_runpp|       {err:.2e} pu  (<= 1e-6)")

    cfg = load_config(REPO / "configs" / "ieee33.toml")
    inputs = prepare(cfg)
    t0 = time.perf_counter()
    ds = run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))
    t_day = time.perf_counter() - t0
    print(
        "closed loop without flexible resources, one simulated day at 60 s "
        f"({ds.sizes['time']} steps): {t_day:.2f} s "
        f"({t_day / ds.sizes['time'] * 1e3:.2f} ms/step, network prepared beforehand)"
    )
    out = Path("/tmp") / "simgrid_bench_ieee33.nc"
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simgrid.cli",
            "run",
            str(REPO / "configs/ieee33.toml"),
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    print(
        f"bundled example end to end (simgrid run configs/ieee33.toml, with imports): "
        f"{time.perf_counter() - t0:.2f} s"
    )


if __name__ == "__main__":
    main()
