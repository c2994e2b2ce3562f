"""Long horizons with dispatch: wall time, peak memory and dispatch time per simulated day.

    python benchmarks/bench_long.py [--days 1 7]      # add 30 for a month (about 10 minutes)
    python benchmarks/bench_long.py --calm [--days 10]
    python benchmarks/bench_long.py --no-dispatch --days 1 365   # a year of streaming, ~15 min

`--calm`: the bundled example (configs/ieee33.toml) with its horizon stretched to N days: its
shocks all fall on day 1, the later days repeat the same calm load shape, so the dispatcher's
solve time per calm day should not change from day 2 to day N.

`--no-dispatch`: the same runs with `[dispatch] policy = "none"`, so that a whole year's
streaming (time series, checkpoints, joining the blocks, metrics over the year) can be measured
in minutes; a year with dispatch takes about 365 x the day's wall time.

For each horizon, in a fresh process: one scenario of scenarios/ieee33_ai.toml drawn over that
many days (seed 1), run in closed loop with the bundled example's allocation and rolling
dispatcher (configs/ieee33.toml) as `simgrid run` does: streamed to disk a day at a time, the
do-nothing baseline too, metrics over the whole run, one output file. Prints wall time, peak
resident memory (ru_maxrss, whole process) and the dispatcher's solve time on the first and the
last simulated day, and for runs of two days or more the mean per day over the first and the
last 30 days (target: the last month within 1.2x the first; shocks differ from day to day, so
single days are noisy): a dispatcher whose per-day cost grows with the run (as it did when
HiGHS' time limit was compared with a persistent model's cumulative clock) shows a ratio above
1. A year (`--days 365`) takes about as many times a day's wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DAY_S = 86400.0


def _one(days: float, calm: bool, dispatch: bool) -> dict:
    import numpy as np
    import xarray as xr

    from simgrid.cli import main
    from simgrid.config import load_config
    from simgrid.inputs import prepare
    from simgrid.runner import build_policy
    from simgrid.runner.blocks import run_to_file
    from simgrid.scenarios.scenarioset import with_scenario
    from simgrid.types import DoNothing

    source = REPO / ("configs/ieee33.toml" if calm else "scenarios/ieee33_ai.toml")
    text = source.read_text().replace("horizon_s = 86400 ", f"horizon_s = {days * DAY_S:.0f} ", 1)
    with tempfile.TemporaryDirectory() as tmp:
        if calm:
            path = Path(tmp) / "calm.toml"
            path.write_text(text.replace('catalogue = "', f'catalogue = "{REPO / "configs"}/', 1))
            cfg = load_config(path)
        else:
            spec, set_path = Path(tmp) / "spec.toml", Path(tmp) / "set.nc"
            spec.write_text(text)
            args = ["scenarios", str(spec), "--n", "1", "--seed", "1", "--out", str(set_path)]
            assert main([*args, "--no-progress"]) == 0
            cfg = with_scenario(load_config(REPO / "configs" / "ieee33.toml"), set_path, 0)
        if not dispatch:
            cfg = replace(cfg, dispatch=replace(cfg.dispatch, policy="none"))
        t0 = time.perf_counter()
        inputs = prepare(cfg)
        policy = build_policy(cfg, inputs)
        out = Path(tmp) / "run.nc"
        baseline = DoNothing(inputs.network.n_bus) if dispatch else None
        run_to_file(inputs, policy, out, baseline=baseline)
        wall = time.perf_counter() - t0
        with xr.open_dataset(out) as ds:
            solve = ds["dispatch_solve_s"].to_numpy()
            day = (ds["time"].to_numpy() // DAY_S).astype(int)
            n_events = int(ds.sizes["event"])
            size_mb = out.stat().st_size / 2**20
    per_day = np.bincount(day, weights=solve)
    month = min(30, len(per_day) // 2) or 1
    return {
        "days": days,
        "first_month_dispatch_s": float(per_day[:month].mean()),
        "last_month_dispatch_s": float(per_day[-month:].mean()),
        "wall_s": wall,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_day_dispatch_s": float(solve[day == (1 if calm else 0)].sum()),
        "last_day_dispatch_s": float(solve[day == day.max()].sum()),
        "events": n_events,
        "file_mb": size_mb,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--days", type=float, nargs="+", default=[1, 7])
    p.add_argument("--calm", action="store_true", help="the example stretched: calm after day 1")
    p.add_argument("--no-dispatch", action="store_true", help="policy = 'none' (streaming only)")
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        print(json.dumps(_one(a.child, a.calm, not a.no_dispatch)))
        return
    if a.calm:
        print("calm days after the example's day: dispatch time on day 2 against the last day")
    print(
        f"{'days':>5} {'events':>6} {'wall (s)':>9} {'peak (MB)':>9} {'file (MB)':>9} "
        "dispatch day 1 / last (s)"
    )
    for days in a.days:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                *("--child", str(days)),
                *(["--calm"] if a.calm else []),
                *(["--no-dispatch"] if a.no_dispatch else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        first, last = r["first_day_dispatch_s"], r["last_day_dispatch_s"]
        ratio = f"({last / first:.2f}x)" if first > 0 else ""
        print(
            f"{days:5.0f} {r['events']:6d} {r['wall_s']:9.1f} {r['peak_mb']:9.0f} "
            f"{r['file_mb']:9.1f} "
            f"{first:12.2f} / {last:.2f} {ratio}"
        )
        if days >= 2 and not a.calm:
            first, last = r["first_month_dispatch_s"], r["last_month_dispatch_s"]
            if first > 0:
                n = min(30, int(days) // 2)
                print(
                    f"      dispatch per day, mean of the first / last {n} days: "
                    f"{first:.2f} / {last:.2f} s ({last / first:.2f}x; target <= 1.2x)"
                )


if __name__ == "__main__":
    main()
