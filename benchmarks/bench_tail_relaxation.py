"""Closed-loop effect of relaxing the dispatcher's binaries in the lookahead tail.

    python benchmarks/bench_tail_relaxation.py [--config configs/ieee33.toml]

Runs the bundled example day twice, side by side on the same shocks: binaries integral only
in the first `integer_periods` (the default) and in every period of the lookahead. Prints the
realised closed-loop cost in the dispatcher's own prices (VoLL x unserved + imbalance penalty
x imbalance energy + FCM operating cost), the unserved and imbalance energy, violations and
the dispatch time of both.
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


def islanded_cost(ds, cfg) -> float:
    """VoLL x the load cut off by outages: no dispatch decision changes it."""
    dur_h = np.diff(ds["time"].to_numpy(), append=float(ds.attrs["horizon_s"])) / 3600
    return cfg.dispatch.voll_per_mwh * float(np.sum(ds["islanded_mw"].to_numpy() * dur_h))


def measure(cfg):
    inputs = prepare(cfg)
    policy = build_policy(cfg, inputs)
    t0 = time.perf_counter()
    ds = run(cfg, inputs=inputs, policy=policy)
    return ds, time.perf_counter() - t0, np.array(policy.step_wall_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "ieee33.toml"))
    args = ap.parse_args()
    base = load_config(args.config)
    variants = {
        f"integer_periods = {base.dispatch.integer_periods}": base,
        f"all {base.dispatch.horizon_steps} integral": replace(
            base, dispatch=replace(base.dispatch, integer_periods=base.dispatch.horizon_steps)
        ),
    }
    rows = {name: measure(cfg) for name, cfg in variants.items()}
    names = list(rows)
    print(f"{Path(args.config).name}: one day, H = {base.dispatch.horizon_steps} periods")
    print(f"  {'':30s}" + "".join(f"{n:>24s}" for n in names))
    lines = [
        ("closed-loop cost ($)", lambda ds, w, s: f"{closed_loop_cost(ds, base):.1f}"),
        ("  of which islanded load ($)", lambda ds, w, s: f"{islanded_cost(ds, base):.1f}"),
        ("unserved energy (MWh)", lambda ds, w, s: f"{float(ds['unserved_energy_mwh']):.4f}"),
        ("imbalance energy (MWh)", lambda ds, w, s: f"{float(ds['imbalance_energy_mwh']):.4f}"),
        ("voltage violation (s)", lambda ds, w, s: f"{float(ds['voltage_violation_s']):.0f}"),
        ("FCM operating cost ($)", lambda ds, w, s: f"{float(ds['fcm_cost']):.1f}"),
        ("run wall time (s)", lambda ds, w, s: f"{w:.1f}"),
        ("dispatch median (ms)", lambda ds, w, s: f"{np.median(s) * 1e3:.1f}"),
        ("dispatch p90 (ms)", lambda ds, w, s: f"{np.percentile(s, 90) * 1e3:.1f}"),
        ("dispatch total (s)", lambda ds, w, s: f"{s.sum():.1f}"),
    ]
    for label, fn in lines:
        print(f"  {label:30s}" + "".join(f"{fn(*rows[n]):>24s}" for n in names))
    c0, c1 = (closed_loop_cost(rows[n][0], base) - islanded_cost(rows[n][0], base) for n in names)
    print(
        f"  difference in the cost dispatch controls (all but islanded load): "
        f"{100 * (c0 - c1) / c1:+.2f} % of the all-integral run"
    )


if __name__ == "__main__":
    main()
