"""Stage-I planner: solve time and gap against the number of scenarios, both methods side by
side; the effect of integral recourse; the four planners on one scenario set.

    python benchmarks/bench_planner.py [--sizes 10 25 50 100 200] [--limit 900]
        [--only scaling integrality planners]

One set of 2,000 day-long scenarios is drawn from scenarios/ieee33_ai.toml (seed 1) and reduced
to each size S (k-means++ medoids); the bundled example's [planning] table (7 candidate buses,
all four module types, Wasserstein radius 0.1, alpha 0.95, beta 0.5) is solved by multi-cut
L-shaped decomposition and, up to S = 50, as the extensive form, each with the time limit.
Then on S = 10: relaxed against integral recourse (extensive form). Then on S = 50: the
allocations of deterministic, SAA (beta 0), SAA-CVaR and DRO-CVaR planning, with their
investment and in-sample risk (each judged in the DRO-CVaR model).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simgrid.allocate import _problem  # noqa: E402
from simgrid.cli import main as cli  # noqa: E402
from simgrid.config import Ambiguity, load_config  # noqa: E402
from simgrid.errors import ConfigError  # noqa: E402
from simgrid.optimization.benders import Benders  # noqa: E402
from simgrid.optimization.extensive import ExtensiveForm  # noqa: E402
from simgrid.optimization.stage1 import plan  # noqa: E402


def reduced_sets(sizes, folder: Path) -> dict[int, Path]:
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    out = {}
    for s in sizes:
        path = folder / f"set{s}.nc"
        argv = ["scenarios", str(spec), "--n", "2000", "--seed", "1", "--reduce", str(s)]
        assert cli([*argv, "--out", str(path), "--no-progress"]) == 0
        out[s] = path
    return out


def purchases(r) -> str:
    return ", ".join(f"{p.count} {p.module}@{p.bus}" for p in r.purchases) or "none"


def scaling(cfg, sets, limit: float, ef_max: int) -> None:
    print(f"{'S':>5} {'method':>10} {'time (s)':>9} {'gap':>8} {'objective $/yr':>15}  allocation")
    for s, path in sets.items():
        planning = replace(cfg.planning, time_limit_s=limit)
        problem = _problem(cfg, str(path), planning)
        t0 = time.perf_counter()
        r = Benders(problem).solve()
        row(s, "benders", time.perf_counter() - t0, r)
        if s <= ef_max:
            t0 = time.perf_counter()
            r = ExtensiveForm(problem).solve()
            row(s, "extensive", time.perf_counter() - t0, r)


def row(s, method, elapsed, r) -> None:
    print(
        f"{s:>5} {method:>10} {elapsed:9.1f} {r.solve.gap:8.2%} {r.objective:15,.0f}  "
        f"{purchases(r)}",
        flush=True,
    )


def recourse_integrality(cfg, path: Path, limit: float) -> None:
    print("\nrecourse binaries, extensive form (S = 10):")
    for integral in (False, True):
        planning = replace(cfg.planning, integer_recourse=integral, time_limit_s=limit)
        problem = _problem(cfg, str(path), planning)
        t0 = time.perf_counter()
        label = "integral" if integral else "relaxed"
        try:
            r = ExtensiveForm(problem).solve()
        except ConfigError as exc:  # no allocation within the limit
            print(f"  {label:9s} {time.perf_counter() - t0:7.1f} s: {exc}", flush=True)
            continue
        print(
            f"  {label:9s} {time.perf_counter() - t0:7.1f} s, gap {r.solve.gap:6.2%}, "
            f"objective ${r.objective:,.0f}/yr; {purchases(r)}",
            flush=True,
        )


def four_planners(cfg, path: Path, limit: float) -> None:
    print(
        "\nfour planners on S = 50, judged in the DRO-CVaR model (Wasserstein 0.1, "
        "alpha 0.95, beta 0.5):"
    )
    judge = Benders(_problem(cfg, str(path), replace(cfg.planning, time_limit_s=limit)))
    variants = {
        "deterministic": replace(cfg.planning, ambiguity=Ambiguity.DETERMINISTIC),
        "SAA": replace(cfg.planning, ambiguity=Ambiguity.NONE, beta=0.0),
        "SAA-CVaR": replace(cfg.planning, ambiguity=Ambiguity.NONE),
        "DRO-CVaR": cfg.planning,
    }
    print(
        f"  {'planner':14s} {'invest $/yr':>12} {'E[h] $/yr':>12} {'CVaR $/yr':>12} "
        f"{'worst risk':>12} {'objective':>12}  allocation"
    )
    for name, planning in variants.items():
        r = plan(_problem(cfg, str(path), replace(planning, time_limit_s=limit)))
        j = judge.evaluate(r.purchases)
        print(
            f"  {name:14s} {j.investment:12,.0f} {j.expected_recourse:12,.0f} {j.cvar:12,.0f} "
            f"{j.worst_case_risk:12,.0f} {j.objective:12,.0f}  {purchases(r)}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    ap.add_argument("--limit", type=float, default=900.0, help="time limit per solve (s)")
    ap.add_argument("--ef-max", type=int, default=50, help="largest S for the extensive form")
    parts = ("scaling", "integrality", "planners")
    ap.add_argument("--only", choices=parts, nargs="+", default=parts, help="parts to run")
    args = ap.parse_args()
    cfg = load_config(REPO / "configs" / "ieee33.toml")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = set(args.sizes) if "scaling" in args.only else set()
        sets = reduced_sets(sorted(sizes | {10, 50}), Path(tmp))
        if "scaling" in args.only:
            scaling(cfg, {s: sets[s] for s in args.sizes}, args.limit, args.ef_max)
        if "integrality" in args.only:
            recourse_integrality(cfg, sets[10], args.limit)
        if "planners" in args.only:
            four_planners(cfg, sets[50], args.limit)


if __name__ == "__main__":
    main()
