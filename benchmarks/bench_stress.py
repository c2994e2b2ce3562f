"""Stress-testing cost: one episode with and without dispatch, and episodes on 1 and 2 workers.

    python benchmarks/bench_stress.py episode [--gaps 0.005 0.05]   # about 5 minutes
    python benchmarks/bench_stress.py workers [--n 12]  # about 5 minutes with --n 12

`episode`: the bundled example's day (configs/ieee33.toml, 1,440 steps at 60 s) in one process,
without dispatch and with the rolling dispatcher, alternated twice so both see the same machine,
for each MIP gap of `--gaps`; prints the ratio and where the dispatcher's time goes (LP
relaxations, dives with the binaries fixed, MILPs, building the windows, the rest). Then the same
day under an exact dispatcher (every binary integral over the whole lookahead, no LP-first path,
0.01 % gap): the closed-loop cost (VoLL x unserved + imbalance and voltage penalties + FCM
operation) of each gap against it.

`workers`: N day-long scenarios of scenarios/ieee33_ai.toml through `simgrid stress`'s runner
(dask LocalCluster), on 1 worker then on 2, each from scratch (cluster start and the workers'
one-time build included): throughput ratio, scheduling overhead (workers x wall - episode compute,
over episode compute) and the projected wall time of 1,000 day-long episodes on this machine and
on a 64-core cluster from the measured per-episode cost and overhead.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simgrid.config import load_config  # noqa: E402
from simgrid.cosim.simulation import simulate  # noqa: E402
from simgrid.inputs import prepare  # noqa: E402
from simgrid.runner import build_policy, run_dataset  # noqa: E402
from simgrid.runner.episode import closed_loop_cost  # noqa: E402
from simgrid.types import DoNothing  # noqa: E402

CONFIG = REPO / "configs" / "ieee33.toml"
SPEC = REPO / "scenarios" / "ieee33_ai.toml"


class SolveTimer:
    """Wall time of HiGHS solves by kind (LP, dive with binaries fixed, MILP)."""

    def __init__(self) -> None:
        from simgrid.optimization import solve

        self.acc = collections.defaultdict(lambda: [0, 0.0])
        cls = solve.PersistentModel
        solve_, fix, update = cls.solve, cls.fix, cls.update
        timer = self

        def timed(model, limit):
            t0 = time.perf_counter()
            res = solve_(model, limit)
            kind = "MILP" if model.mip else ("dive" if getattr(model, "_fixed", 0) else "LP")
            timer.acc[kind][0] += 1
            timer.acc[kind][1] += time.perf_counter() - t0
            return res

        def fixed(model, cols, values):
            model._fixed = True
            return fix(model, cols, values)

        def updated(model, milp):
            model._fixed = False
            return update(model, milp)

        cls.solve, cls.fix, cls.update = timed, fixed, updated


def episode(gaps: list[float]) -> None:
    cfg = load_config(CONFIG)
    inputs = prepare(cfg)
    timer = SolveTimer()
    simulate(inputs, DoNothing(inputs.network.n_bus))  # warm-up: numba, imports
    costs = {}
    for gap in gaps:
        vcfg = replace(cfg, dispatch=replace(cfg.dispatch, mip_gap=gap))
        vin = replace(inputs, config=vcfg)
        policy = build_policy(vcfg, vin)
        without, with_ = [], []
        for _ in range(2):  # alternated: both see the same machine
            t0 = time.perf_counter()
            simulate(vin, DoNothing(inputs.network.n_bus))
            without.append(time.perf_counter() - t0)
            policy.reset()
            timer.acc.clear()
            build0 = _build_time(policy)
            t0 = time.perf_counter()
            ds = simulate(vin, policy)
            with_.append(time.perf_counter() - t0)
        t_without, t_with = min(without), min(with_)
        costs[gap] = _cost(ds, vin, policy, vcfg)
        print(
            f"mip_gap {gap:g}: day episode without dispatch {t_without:.2f} s, with {t_with:.2f} s"
        )
        print(
            f"  ratio {t_with / t_without:.1f}x (target <= 8x); closed-loop cost ${costs[gap]:,.2f}"
        )
        print(
            f"  dispatch calls {len(policy.solver_s)}, answered by the LP path {policy.lp_accepted}"
        )
        spent = 0.0
        for kind, (n, sec) in sorted(timer.acc.items()):
            spent += sec
            print(f"  {kind:5s} {n:4d} solves {sec:6.2f} s ({1000 * sec / n:.0f} ms each)")
        build = _build_time(policy) - build0
        print(f"  building windows {build:6.2f} s; the rest {t_with - spent - build:6.2f} s")

    exact_cfg = replace(
        cfg,
        dispatch=replace(
            cfg.dispatch,
            integer_periods=cfg.dispatch.horizon_steps,
            mip_gap=1e-4,
            mip_abs_gap=0.0,
            time_limit_s=30.0,
        ),
    )
    exact = build_policy(exact_cfg, replace(inputs, config=exact_cfg))
    exact.lp_first = False
    t0 = time.perf_counter()
    ds_exact = simulate(replace(inputs, config=exact_cfg), exact)
    t_exact = time.perf_counter() - t0
    cost_exact = _cost(ds_exact, inputs, exact, exact_cfg)
    print(
        f"exact dispatcher (all {cfg.dispatch.horizon_steps} periods integral, no LP path, "
        f"0.01 % gap): {t_exact:.1f} s; closed-loop cost ${cost_exact:,.2f}"
    )
    for gap, cost in costs.items():
        print(
            f"  mip_gap {gap:g}: {100 * (cost - cost_exact) / cost_exact:+.3f} % against exact "
            "(target within 0.5 %)"
        )


def _build_time(policy) -> float:
    return getattr(policy, "_bench_build_s", 0.0)


def _cost(ds, inputs, policy, cfg) -> float:
    return closed_loop_cost(run_dataset(ds, cfg, inputs.network, policy), cfg)


def _time_builds() -> None:
    """Accumulate the dispatcher's window-building time on the policy (`_bench_build_s`)."""
    from simgrid.optimization.dispatcher import RollingDispatcher

    build = RollingDispatcher._build

    def timed(self, b, data, start):
        t0 = time.perf_counter()
        out = build(self, b, data, start)
        self._bench_build_s = getattr(self, "_bench_build_s", 0.0) + time.perf_counter() - t0
        return out

    RollingDispatcher._build = timed


def workers(n: int) -> None:
    from simgrid.cli import main
    from simgrid.runner.cluster import run_episodes
    from simgrid.runner.episode import StressSpec

    with tempfile.TemporaryDirectory() as tmp:
        set_path = Path(tmp) / "set.nc"
        args = ["scenarios", str(SPEC), "--n", str(n), "--seed", "5", "--out", str(set_path)]
        assert main([*args, "--no-progress"]) == 0
        rows = []
        for w in (1, 2):
            spec = StressSpec(str(CONFIG), str(set_path), str(Path(tmp) / f"w{w}"))
            t0 = time.perf_counter()
            walls = run_episodes([(spec, range(n))], workers=w)
            wall = time.perf_counter() - t0
            compute = sum(walls.values())
            rows.append((w, wall, compute, (w * wall - compute) / compute))
    (_, wall1, compute1, _), (_, wall2, compute2, over2) = rows
    for w, wall, compute, over in rows:
        print(
            f"{w} worker(s): {n} episodes in {wall:6.1f} s ({n / wall * 60:.1f}/min); "
            f"episode compute {compute:6.1f} s (mean {compute / n:.2f} s); "
            f"overhead {100 * over:.1f} %"
        )
    print(f"throughput 2 vs 1 worker: {wall1 / wall2:.2f}x (target >= 1.7x)")
    mean = compute2 / n
    start_s = max(wall1 - compute1, 0.0)  # cluster start, one worker's build, the last result
    # beyond start-up, how far 2 workers fall short of 2 x the episode compute
    steady = max(2 * (wall2 - start_s) / compute2 - 1.0, 0.0)
    print(f"start-up {start_s:.1f} s; steady-state overhead on 2 workers {100 * steady:.1f} %")
    for cores in (2, 64):
        t = start_s + 1000 * mean * (1 + steady) / cores
        print(f"1,000 day-long episodes on {cores} cores: about {t / 60:.0f} min (projected)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("part", choices=("episode", "workers"))
    p.add_argument("--n", type=int, default=12, help="episodes for `workers`")
    p.add_argument(
        "--gaps", type=float, nargs="+", default=[0.005, 0.05], help="MIP gaps for `episode`"
    )
    a = p.parse_args()
    if a.part == "episode":
        _time_builds()
        episode(a.gaps)
    else:
        workers(a.n)
