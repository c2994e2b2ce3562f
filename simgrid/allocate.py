"""`simgrid allocate`: Stage-I from a run config and a ScenarioSet to an Allocation NetCDF.

Reads the set (its campuses, events, probabilities and scenario distance), builds the network
and each scenario's windows, solves the planning MILP (planner.py) for the configured risk and
ambiguity, recovers the worst-case distribution, computes the value of the stochastic solution
against the deterministic (expected-shock) plan, and returns the allocation as the Dataset that
`run`, `stress` and `evaluate` read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist

from simgrid.config import Ambiguity, PlanningConfig, RunConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Catalogue, load_catalogue
from simgrid.inputs import prepare
from simgrid.ncio import DatasetKind, package_versions, variables
from simgrid.optimization.blocks import Weights
from simgrid.optimization.lindistflow import marginal_loss_factors
from simgrid.optimization.network_model import network_model
from simgrid.optimization.planner import PlanningProblem, PlanResult, Purchase
from simgrid.optimization.solve import Progress
from simgrid.optimization.stage1 import solver_for
from simgrid.optimization.windows import (
    PlanContext,
    expected_window,
    scenario_windows,
)
from simgrid.scenarios.reduce import MAX_DISTANCE_SCENARIOS, standardised
from simgrid.scenarios.scenarioset import EventTable, read_set, with_scenario


@dataclass(frozen=True, eq=False)
class Allocation:
    """A solved plan, with its deterministic counterpart and what the stochastic plan saves."""

    result: PlanResult
    deterministic: PlanResult | None
    vss: float


def _problem(cfg: RunConfig, set_path: str, planning: PlanningConfig) -> PlanningProblem:
    ds = read_set(set_path, cfg.source, drop=("ai_load_mw",))
    if cfg.dispatch.catalogue is None:
        raise ConfigError(cfg.source, "dispatch.catalogue", None, "is required to plan modules")
    catalogue = load_catalogue(cfg.dispatch.catalogue)
    base = with_scenario(cfg, set_path, 0)  # the set's campuses and network reference
    inputs = prepare(base)  # checks the set's network against the config's too
    nw = inputs.network
    table = EventTable.of(ds)
    n = ds.sizes["scenario"]
    events = [table.events(i) for i in range(n)]
    p = ds["probability"].to_numpy().astype(float)
    margin = cfg.dispatch.voltage_margin_pu
    ctx = PlanContext(
        nw,
        inputs.profile,
        base.campuses,
        inputs.campus_profiles,
        cfg.upstream,
        (cfg.network.v_min_pu + margin) ** 2,
        (cfg.network.v_max_pu - margin) ** 2,
        float(ds.attrs["horizon_s"]),
    )
    candidates = planning.candidates or tuple(np.flatnonzero(nw.base_load_p_mw > 0).tolist())
    for b in candidates:
        if not 0 <= b < nw.n_bus:
            raise ConfigError(
                cfg.source, "planning.candidates", b, f"must be bus indices (0..{nw.n_bus - 1})"
            )
    if planning.ambiguity is Ambiguity.DETERMINISTIC:
        windows = ((expected_window(ctx, events, p, planning),),)
        p, distance = np.ones(1), np.zeros((1, 1))
    else:
        windows = tuple(scenario_windows(ctx, ev, planning) for ev in events)
        distance = _distance(ds)
    base_p = nw.base_load_p_mw + np.bincount(
        ctx.campus_bus, [c.base_utilisation * c.p_nom_mw for c in ctx.campuses], nw.n_bus
    )
    mlf = marginal_loss_factors(nw, base_p, nw.base_load_q_mvar)
    d = cfg.dispatch
    return PlanningProblem(
        net=network_model(nw, cfg.network.max_loading_percent, ctx.campuses, mlf),
        catalogue=catalogue,
        candidates=tuple(int(b) for b in candidates),
        windows=windows,
        probability=p / p.sum(),
        distance=distance,
        weights=Weights(
            d.voll_per_mwh, d.imbalance_per_mwh, d.voltage_per_pu_h, d.restoration_per_mwh
        ),
        cfg=planning,
        source=cfg.source,
    )


def _distance(ds: xr.Dataset) -> np.ndarray:
    """The scenarios' distance: L2 between standardised features (scenarios/reduce.py).

    Always computed here, on the set's `feature_scale`: a `distance` matrix stored by older
    versions is ignored, so every set is measured the same way. A set of more than
    `MAX_DISTANCE_SCENARIOS` scenarios is refused (the matrix is S x S).
    """
    n = ds.sizes["scenario"]
    if n > MAX_DISTANCE_SCENARIOS:
        raise ConfigError(
            str(ds.encoding.get("source", "the scenario set")),
            "scenarios",
            n,
            f"too many for the planner's scenario-by-scenario distance (at most "
            f"{MAX_DISTANCE_SCENARIOS:,}): reduce the set (simgrid scenarios ... --reduce S)",
        )
    z = np.nan_to_num(standardised(ds), nan=0.0, posinf=0.0)
    return cdist(z, z)


def allocate(
    cfg: RunConfig,
    set_path: str,
    planning: PlanningConfig,
    *,
    progress: Progress | None = None,
) -> Allocation:
    """Plan on the scenario set; with a stochastic plan also the deterministic one and VSS."""
    solver = solver_for(_problem(cfg, set_path, planning))
    result = solver.solve(progress)
    if planning.ambiguity is Ambiguity.DETERMINISTIC:
        return Allocation(result, None, math.nan)
    ev_cfg = replace(planning, ambiguity=Ambiguity.DETERMINISTIC)
    ev = solver_for(_problem(cfg, set_path, ev_cfg)).solve()
    # the deterministic plan, judged like ours (the same scenario LPs when decomposed)
    eev = solver.evaluate(ev.purchases)
    return Allocation(result, ev, eev.objective - result.objective)


def judge(
    cfg: RunConfig, set_path: str, planning: PlanningConfig, purchases: Sequence[Purchase]
) -> PlanResult:
    """A given allocation in the planning model of `set_path`'s scenarios (its recourse)."""
    return solver_for(_problem(cfg, set_path, planning)).evaluate(purchases)


def allocation_result_dataset(
    alloc: Allocation, cfg: RunConfig, catalogue: Catalogue, set_path: str
) -> xr.Dataset:
    """The Allocation NetCDF: units, scenario costs and probabilities, the objective split."""
    r = alloc.result
    pl = r.solve
    purchases = r.purchases
    units = {
        "module": ([p.module for p in purchases], "1", "catalogue module type"),
        "bus": ([p.bus for p in purchases], "1", "pandapower bus index"),
        "count": ([p.count for p in purchases], "1", "modules placed"),
        "supplier": ([p.supplier for p in purchases], "1", "supplier of the modules"),
        "unit_cost": ([p.unit_cost for p in purchases], "$", "purchase cost per module"),
    }
    data = variables(
        "unit",
        {
            name: (np.array(v, dtype=str if name in ("module", "supplier") else None), u, ln)
            for name, (v, u, ln) in units.items()
        },
    )
    data["count"] = data["count"].astype(np.int32)
    data["bus"] = data["bus"].astype(np.int32)
    per_scenario = {
        "probability": (r.probability, "1", "nominal scenario probability"),
        "worst_case_probability": (
            r.worst_case_probability,
            "1",
            "worst-case distribution over the ambiguity set at this allocation",
        ),
        "recourse_cost": (r.recourse, "$/yr", "annual recourse cost of the scenario"),
    }
    data.update(variables("scenario", per_scenario))
    scalars = {
        "investment_cost": (r.investment, "$/yr", "annualised investment"),
        "expected_recourse": (r.expected_recourse, "$/yr", "expected recourse (nominal)"),
        "cvar": (r.cvar, "$/yr", "CVaR of the recourse at alpha (nominal)"),
        "var": (r.var, "$/yr", "value at risk of the recourse at alpha (nominal)"),
        "nominal_risk": (r.nominal_risk, "$/yr", "(1 - beta) E + beta CVaR (nominal)"),
        "worst_case_risk": (
            r.worst_case_risk,
            "$/yr",
            "(1 - beta) E + beta CVaR at the worst-case distribution",
        ),
        "worst_case_premium": (
            r.premium,
            "$/yr",
            "worst-case risk over the nominal risk (what the ambiguity set adds)",
        ),
        "objective": (r.objective, "$/yr", "investment + worst-case risk (the MILP objective)"),
        "solver_gap": (pl.gap, "1", "relative MIP gap at the end of the solve"),
        "solve_time_s": (pl.time_s, "s", "solver wall time"),
        "vss": (
            alloc.vss,
            "$/yr",
            "value of the stochastic solution: the deterministic plan's objective judged in "
            "this model minus this plan's (NaN for a deterministic plan)",
        ),
    }
    data.update(variables((), {k: (float(v), u, ln) for k, (v, u, ln) in scalars.items()}))
    pc = cfg.planning
    attrs = {
        "title": "simgrid FCM allocation (Stage-I)",
        "simgrid_kind": DatasetKind.ALLOCATION.value,
        "ambiguity": pc.ambiguity.value,
        "radius": pc.radius,
        "alpha": pc.alpha,
        "beta": pc.beta,
        "scenarios_file": str(set_path),
        "solver_status": pl.termination.value,
        "config_source": cfg.source,
        "config_toml": cfg.text,
        "catalogue_source": catalogue.source,
        "catalogue_sha256": catalogue.text_sha256,
        "catalogue_toml": catalogue.text,
    }
    attrs.update({f"planning_{k}": str(v) for k, v in dataclasses.asdict(pc).items()})
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    coords = {
        "unit": (
            "unit",
            np.arange(len(purchases)),
            {"long_name": "purchase (module, bus, supplier)"},
        ),
        "scenario": (
            "scenario",
            np.arange(len(r.probability)),
            {"long_name": "scenario of the set (deterministic: the expected-shock scenario)"},
        ),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
