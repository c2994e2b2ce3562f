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
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist

from simgrid import stats
from simgrid.config import Ambiguity, PlanningConfig, RunConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Catalogue, allocation_dataset, load_catalogue
from simgrid.inputs import prepare
from simgrid.ncio import DatasetKind, package_versions, variables, write_dataset
from simgrid.optimization.blocks import Weights
from simgrid.optimization.dispatch_window import VoltageLimits
from simgrid.optimization.network_model import network_model
from simgrid.optimization.operation import ScenarioMap
from simgrid.optimization.planner import PlanningProblem, PlanResult, Purchase
from simgrid.optimization.solve import Progress
from simgrid.optimization.stage1 import solver_for
from simgrid.optimization.windows import (
    DayBlocks,
    PlanContext,
    expected_day,
    expected_window,
    scenario_days,
    scenario_windows,
)
from simgrid.provenance import file_sha256
from simgrid.scenarios.reduce import MAX_DISTANCE_SCENARIOS, standardised
from simgrid.scenarios.scenarioset import EventTable, read_set, with_scenario


@dataclass(frozen=True, eq=False)
class Validation:
    """The best allocations of a plan run in closed loop on held-out days (common random
    numbers: day d is the same day for all of them). Per candidate: its description, its
    planned objective, its closed-loop objective (investment + (1 - beta) mean + beta CVaR of
    the annual closed-loop cost over the days) and its closed-loop cost ($/yr) minus that of
    the planner's choice (candidate 0), day by day."""

    scenarios: str
    days: int
    labels: tuple[str, ...]
    planned: np.ndarray
    closed_loop: np.ndarray
    versus_planned_choice: tuple[stats.PairedDifference, ...]
    chosen: int


@dataclass(frozen=True, eq=False)
class Allocation:
    """A solved plan, with its deterministic counterpart and what the stochastic plan saves,
    and what validating it in closed loop chose (if asked)."""

    result: PlanResult
    deterministic: PlanResult | None
    vss: float
    validation: Validation | None = None


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
    campus_bus = [c.bus for c in base.campuses]
    base_p = nw.base_load_p_mw + np.bincount(
        campus_bus, [c.base_utilisation * c.p_nom_mw for c in base.campuses], nw.n_bus
    )
    loss_point = (base_p, nw.base_load_q_mvar)
    model = network_model(
        nw, cfg.network.max_loading_percent, base.campuses, loss_point, cfg.network.model
    )
    v2 = VoltageLimits(
        cfg.network.v_min_pu, cfg.network.v_max_pu, cfg.dispatch.voltage_margin_pu
    ).v2  # the dispatcher's band
    ctx = PlanContext(
        nw,
        inputs.profile,
        base.campuses,
        inputs.campus_profiles,
        cfg.upstream,
        *v2,
        float(ds.attrs["horizon_s"]),
        cfg.dt_s,
        at_point=not model.fixed_matrix,
    )
    candidates = planning.candidates or tuple(np.flatnonzero(nw.base_load_p_mw > 0).tolist())
    for b in candidates:
        if not 0 <= b < nw.n_bus:
            raise ConfigError(
                cfg.source, "planning.candidates", b, f"must be bus indices (0..{nw.n_bus - 1})"
            )
    d = cfg.dispatch
    # operation recourse: blocks of the dispatcher's lookahead, in its period (the plant's step
    # where an oscillation is live)
    day = DayBlocks(d.horizon_steps * d.redispatch_s, d.redispatch_s, cfg.dt_s)
    operation = planning.recourse == "operation"
    days: tuple = ()
    if planning.ambiguity is Ambiguity.DETERMINISTIC:
        windows = ((expected_window(ctx, events, p, planning),),)
        if operation:
            days = (expected_day(ctx, events, p, day),)
        p, distance = np.ones(1), np.zeros((1, 1))
    else:
        windows = tuple(scenario_windows(ctx, ev, planning) for ev in events)
        if operation:
            days = tuple(scenario_days(ctx, ev, day) for ev in events)
        distance = _distance(ds)
    return PlanningProblem(
        net=model,
        catalogue=catalogue,
        candidates=tuple(int(b) for b in candidates),
        windows=windows,
        days=days,
        probability=p / p.sum(),
        distance=distance,
        weights=Weights(
            d.voll_per_mwh, d.imbalance_per_mwh, d.voltage_per_pu_h, d.restoration_per_mwh
        ),
        cfg=planning,
        source=cfg.source,
    )


def _describe(purchases: Sequence[Purchase]) -> str:
    return ", ".join(f"{p.count} x {p.module}@{p.bus}" for p in purchases) or "nothing"


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
    vss: str = "solve",
    scenario_map: ScenarioMap | None = None,
    validation: ValidationRequest | None = None,
) -> Allocation:
    """Plan on the scenario set; with a stochastic plan also the value of the stochastic
    solution against the deterministic plan: solved here (`vss` "solve"), read from a
    deterministic allocation file (`vss` its path), or not at all ("none"); with
    `validation`, the best candidates run in closed loop on held-out days (`validate`)."""
    cfg = replace(cfg, planning=planning)
    reused = None  # a deterministic plan's file, checked before any solving
    if vss not in ("solve", "none") and planning.ambiguity is not Ambiguity.DETERMINISTIC:
        reused = read_purchases(vss, cfg, key="--vss-from", deterministic=set_path)
    solver = solver_for(_problem(cfg, set_path, planning), scenario_map)
    alloc = Allocation(solver.solve(progress), None, math.nan)
    alloc = _with_vss(alloc, cfg, set_path, solver, vss, scenario_map, reused)
    if validation is not None:
        alloc = validate(alloc, cfg, solver, validation)
    return alloc


@dataclass(frozen=True)
class ValidationRequest:
    """Held-out days to validate on (`days` of `scenarios`; None: all), where the episodes'
    files go meanwhile, and how they run (`run_episodes(jobs)`: the stress runner's)."""

    scenarios: str
    folder: Path
    run_episodes: Callable
    days: int | None = None


def _with_vss(
    alloc: Allocation, cfg: RunConfig, set_path: str, solver, vss: str, scenario_map, reused
) -> Allocation:
    planning, result = cfg.planning, alloc.result
    if planning.ambiguity is Ambiguity.DETERMINISTIC or vss == "none":
        return alloc
    if vss == "solve":
        ev_cfg = replace(planning, ambiguity=Ambiguity.DETERMINISTIC)
        ev = solver_for(_problem(cfg, set_path, ev_cfg), scenario_map).solve()
        purchases = ev.purchases
    else:
        ev, purchases = None, reused
    # the deterministic plan, judged like ours (the same scenario models)
    eev = solver.evaluate(purchases)
    return Allocation(result, ev, eev.objective - result.objective)


VALIDATED = 3  # candidates run in closed loop by --validate: the planner's best three


def validate(alloc: Allocation, cfg: RunConfig, solver, request: ValidationRequest) -> Allocation:
    """Run the plan's best candidates (by planned objective: the planner's choice first) in
    closed loop on the held-out days of `set_path`, with the config's rolling dispatcher and AC
    plant, and keep the one with the best closed-loop objective (see `Validation`).
    `run_episodes(jobs)` runs the episodes (the stress runner's, on dask); the episodes'
    files go to `folder`, which is removed after."""
    from simgrid.runner.episode import StressSpec
    from simgrid.runner.stress import combine

    set_path, folder, days = request.scenarios, request.folder, request.days
    r = alloc.result
    judged = sorted(r.judged or ((r.purchases, r.objective, math.nan),), key=lambda j: j[1])
    chosen_first = [j for j in judged if tuple(j[0]) == tuple(r.purchases)]
    others = [j for j in judged if tuple(j[0]) != tuple(r.purchases)]
    candidates = (chosen_first + others)[:VALIDATED]
    n = read_set(set_path, cfg.source).sizes["scenario"]
    days = n if days is None else days
    if not 1 <= days <= n:
        raise ConfigError(cfg.source, "--validate-days", days, f"must be in 1..{n} (the set's)")
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for k, (purchases, _, _) in enumerate(candidates):
        path = folder / f"candidate_{k}.nc"
        write_dataset(allocation_dataset(_entries(purchases)), path)
        specs.append(StressSpec(cfg.source, set_path, str(folder / f"candidate_{k}"), str(path)))
    indices = list(range(days))
    request.run_episodes([(spec, indices) for spec in specs])
    p = np.ones(days)
    a, b = cfg.planning.alpha, cfg.planning.beta
    annual = cfg.planning.days_per_year
    costs, objectives = [], []
    for (purchases, _, _), spec in zip(candidates, specs, strict=True):
        ds = combine(spec, indices)
        cost = annual * ds["closed_loop_cost"].to_numpy()
        invest = cfg.planning.annuity * sum(pu.count * pu.unit_cost for pu in purchases)
        ok = np.isfinite(cost)
        risk = (1 - b) * stats.mean(cost[ok], p[ok]) + b * stats.var_cvar(cost[ok], p[ok], a)[1]
        costs.append(cost + invest)
        objectives.append(invest + risk)
    shutil.rmtree(folder, ignore_errors=True)
    diffs = tuple(stats.paired_difference(c, costs[0], p) for c in costs)
    chosen = int(np.argmin(objectives))
    validation = Validation(
        set_path,
        days,
        tuple(_describe(c[0]) for c in candidates),
        np.array([c[1] for c in candidates]),
        np.array(objectives),
        diffs,
        chosen,
    )
    result = r if chosen == 0 else solver.evaluate(candidates[chosen][0])
    if chosen != 0:
        result = replace(result, judged=r.judged, screening_objective=candidates[chosen][2])
    return replace(alloc, result=result, validation=validation)


def _entries(purchases: Sequence[Purchase]):
    from simgrid.config import AllocationEntry

    return tuple(AllocationEntry(p.module, p.bus, p.count) for p in purchases)


# what a deterministic plan may differ in from the plan whose VSS it gives: the risk measure
_RISK = ("ambiguity", "radius", "alpha", "beta")


def read_purchases(
    path: str, cfg: RunConfig, *, key: str, deterministic: str | None = None
) -> tuple[Purchase, ...]:
    """The purchases of a Stage-I allocation file (module, bus, count, supplier, unit cost);
    `deterministic` (a scenario set's path): it must be the deterministic plan of that set,
    this config's planning (but for the risk measure) and catalogue."""
    from simgrid.fcm import read_allocation_dataset

    ds = read_allocation_dataset(path, str(path), key=key)
    if "supplier" not in ds or "unit_cost" not in ds:
        raise ConfigError(str(path), key, str(path), "is not a Stage-I allocation (no supplier)")
    if deterministic is not None:
        _check_deterministic(ds, path, cfg, deterministic, key)
    return purchases_in(ds, ds["unit_cost"].to_numpy())


def purchases_in(ds: xr.Dataset, unit_cost: np.ndarray) -> tuple[Purchase, ...]:
    """The purchases a Stage-I allocation dataset lists, at `unit_cost` per module."""
    return tuple(
        Purchase(str(m), int(b), int(c), str(sup), float(u))
        for m, b, c, sup, u in zip(
            ds["module"].to_numpy(),
            ds["bus"].to_numpy(),
            ds["count"].to_numpy(),
            ds["supplier"].to_numpy(),
            unit_cost,
            strict=True,
        )
    )


def _check_deterministic(ds: xr.Dataset, path: str, cfg: RunConfig, set_path: str, key: str):
    """A deterministic plan reused for a VSS was planned in the same problem (one line each)."""
    found = ds.attrs.get("ambiguity", "?")
    if found != Ambiguity.DETERMINISTIC.value:
        why = "must be a deterministic plan (simgrid allocate --ambiguity deterministic)"
        raise ConfigError(str(path), key, found, why)
    same = {
        "scenarios_sha256": file_sha256(set_path),
        "catalogue_sha256": load_catalogue(cfg.dispatch.catalogue).text_sha256,
        **{
            f"planning_{k}": str(v)
            for k, v in dataclasses.asdict(cfg.planning).items()
            if k not in _RISK
        },
    }
    for name, want in same.items():
        if ds.attrs.get(name) != want:
            raise ConfigError(
                str(path),
                name,
                str(ds.attrs.get(name, "missing"))[:64],
                f"must be this plan's ({str(want)[:64]}): a deterministic plan of the same "
                "scenarios, catalogue and planning settings (all but the risk measure)",
            )


def judge(
    cfg: RunConfig,
    set_path: str,
    planning: PlanningConfig,
    purchases: Sequence[Purchase],
    scenario_map: ScenarioMap | None = None,
) -> PlanResult:
    """A given allocation in the planning model of `set_path`'s scenarios (its recourse)."""
    return solver_for(_problem(cfg, set_path, planning), scenario_map).evaluate(purchases)


def allocation_result_dataset(
    alloc: Allocation, cfg: RunConfig, catalogue: Catalogue, set_path: str, vss_source: str = ""
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
        "objective": (r.objective, "$/yr", "investment + worst-case risk of the recourse"),
        "screening_objective": (
            r.screening_objective,
            "$/yr",
            "the window model's objective of this allocation (operation recourse: the model "
            "that explored; NaN otherwise)",
        ),
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
    v = alloc.validation
    if v is not None:  # the closed-loop validation: what ran, on what, and what it showed
        d = v.versus_planned_choice
        data.update(
            variables(
                "validated",
                {
                    "validated_allocation": (np.array(v.labels, dtype=str), "1", "allocation"),
                    "validated_planned_objective": (
                        v.planned,
                        "$/yr",
                        "investment + worst-case risk of its planned recourse",
                    ),
                    "validated_closed_loop_objective": (
                        v.closed_loop,
                        "$/yr",
                        "investment + (1 - beta) mean + beta CVaR_alpha of its annual closed-loop "
                        "cost on the validation days",
                    ),
                    "validated_difference": (
                        np.array([x.mean for x in d]),
                        "$/yr",
                        "mean closed-loop total cost minus the planner's choice's, day by day",
                    ),
                    "validated_difference_ci_low": (
                        np.array([x.ci_low for x in d]),
                        "$/yr",
                        "bootstrap 95 % interval of that difference, low end",
                    ),
                    "validated_difference_ci_high": (
                        np.array([x.ci_high for x in d]),
                        "$/yr",
                        "bootstrap 95 % interval of that difference, high end",
                    ),
                    "validated_wins": (
                        np.array([x.wins for x in d], dtype=np.int32),
                        "1",
                        "days it cost less than the planner's choice",
                    ),
                },
            )
        )
    if r.judged:  # operation recourse: every allocation judged on the chained days
        data.update(
            variables(
                "candidate",
                {
                    "candidate_allocation": (
                        np.array([_describe(p) for p, _, _ in r.judged], dtype=str),
                        "1",
                        "allocation the window model explored (count x module@bus)",
                    ),
                    "candidate_objective": (
                        np.array([v for _, v, _ in r.judged]),
                        "$/yr",
                        "investment + worst-case risk of its recourse on the chained days",
                    ),
                    "candidate_screening_objective": (
                        np.array([w for _, _, w in r.judged]),
                        "$/yr",
                        "investment + worst-case risk in the window model",
                    ),
                },
            )
        )
    pc = cfg.planning
    attrs = {
        "title": "simgrid FCM allocation (Stage-I)",
        "simgrid_kind": DatasetKind.ALLOCATION.value,
        "ambiguity": pc.ambiguity.value,
        "radius": pc.radius,
        "alpha": pc.alpha,
        "beta": pc.beta,
        "scenarios_file": str(set_path),
        "scenarios_sha256": file_sha256(set_path),
        "solver_status": pl.termination.value,
        "config_source": cfg.source,
        "config_toml": cfg.text,
        "catalogue_source": catalogue.source,
        "catalogue_sha256": catalogue.text_sha256,
        "catalogue_toml": catalogue.text,
        "vss_source": vss_source,
    }
    if v is not None:
        attrs.update(
            validation_scenarios=v.scenarios,
            validation_days=v.days,
            validation_chosen=v.labels[v.chosen],
            validation="the best allocations by planned objective run in closed loop (the "
            "config's dispatcher, AC plant) on the validation days with common random numbers; "
            "the one with the best closed-loop objective kept",
        )
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
