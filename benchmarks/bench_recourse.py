"""Stage-I against operation recourse: the planner's time at S scenarios with window recourse
(before: each scenario's shock windows, half-hour periods, perfect foresight inside) and
operation recourse (after: the window model explores, every allocation it evaluated is judged
on each scenario's whole day chained in blocks of the dispatcher's lookahead), side by side;
then `simgrid allocate` with the VSS solved, reused from a deterministic file and skipped.

    python benchmarks/bench_recourse.py [--sizes 20 50 100] [--workers 2] [--only planner vss]

One set of 2,000 day-long scenarios is drawn from scenarios/ieee33_ai.toml (seed 1) and reduced
to each size S (k-means++ medoids); the bundled example's [planning] table (DRO-CVaR,
Wasserstein 0.1, alpha 0.95, beta 0.5) is solved each way. Operation recourse maps its days on
a local dask cluster of --workers (0: in turn in this process).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_planner import purchases, reduced_sets  # noqa: E402

from simgrid.allocate import _problem  # noqa: E402
from simgrid.cli import main as cli  # noqa: E402
from simgrid.config import load_config  # noqa: E402
from simgrid.optimization.stage1 import solver_for  # noqa: E402
from simgrid.runner.cluster import task_map  # noqa: E402


def planner(cfg, sets: dict[int, Path], workers: int) -> None:
    print(
        f"{'S':>5} {'windows (s)':>12} {'operation (s)':>14} {'ratio':>6} {'judged':>7}  "
        "operation's allocation (objective $/yr)"
    )
    mapping = task_map(workers) if workers else contextlib.nullcontext(None)
    with mapping as scenario_map:
        for s, path in sets.items():
            times = {}
            for recourse in ("windows", "operation"):
                planning = replace(cfg.planning, recourse=recourse)
                problem = _problem(cfg, str(path), planning)
                t0 = time.perf_counter()
                r = solver_for(problem, scenario_map).solve()
                times[recourse] = time.perf_counter() - t0
            print(
                f"{s:>5} {times['windows']:12.1f} {times['operation']:14.1f} "
                f"{times['operation'] / times['windows']:6.1f} {len(r.judged):>7}  "
                f"{purchases(r)} ({r.objective:,.0f})",
                flush=True,
            )


def vss(path: Path, folder: Path, workers: int) -> None:
    print(f"\nsimgrid allocate on S = 20 (DRO-CVaR, --workers {workers}):")
    cfg = str(REPO / "configs" / "ieee33.toml")
    base = ["allocate", cfg, "--scenarios", str(path), "--no-progress"]
    if workers:
        base += ["--workers", str(workers)]
    det = folder / "det.nc"
    runs = {
        "deterministic plan (for --vss-from)": ["--ambiguity", "deterministic"],
        "VSS solved (the deterministic plan again)": [],
        "VSS from the deterministic file": ["--vss-from", str(det)],
        "--no-vss": ["--no-vss"],
    }
    for k, (label, extra) in enumerate(runs.items()):
        out = det if k == 0 else folder / f"run{k}.nc"
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the allocation's summary
            assert cli([*base, *extra, "--out", str(out)]) == 0
        print(f"  {label:44s} {time.perf_counter() - t0:7.1f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100])
    ap.add_argument("--workers", type=int, default=2, help="dask workers (0: none)")
    parts = ("planner", "vss")
    ap.add_argument("--only", choices=parts, nargs="+", default=parts, help="parts to run")
    args = ap.parse_args()
    cfg = load_config(REPO / "configs" / "ieee33.toml")
    with tempfile.TemporaryDirectory() as tmp:
        sets = reduced_sets(sorted(set(args.sizes) | {20}), Path(tmp))
        if "planner" in args.only:
            planner(cfg, {s: sets[s] for s in args.sizes}, args.workers)
        if "vss" in args.only:
            vss(sets[20], Path(tmp), args.workers)


if __name__ == "__main__":
    main()
