"""The Stage-I problem: a two-stage DRO-CVaR allocation of Flexible Capacity Modules.

First stage: integer modules of each catalogue type from each supplier at each candidate bus,
within the suppliers' inventories, a budget, per-bus hosting limits and per-type minimums and
maximums; investment is annualised (capital recovery factor). Second stage, per scenario: the
dispatch model (the very blocks Stage-II dispatches with) over the scenario's shock windows,
with perfect foresight inside them and each unit's size a first-stage column; the recourse
cost h_s (VoLL x unserved + imbalance penalty + restoration penalty + operating cost) is scaled
to a year (this is the window model; the operation recourse that judges its allocations,
operation.py, leaves the restoration penalty out: no run pays it). Objective: investment + the
worst-case risk of h (risk.py).

This module is the problem and what its solvers share: the first stage, one builder of a
scenario's recourse (`define_recourse`), the objective of an allocation (`objective_at`) and
the result. The solvers -- the extensive form (extensive.py) and Benders decomposition
(benders.py) -- each offer `solve` and `evaluate` (stage1.py chooses).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.config import PlanningConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Catalogue, Module
from simgrid.optimization.blocks import ModelOptions, ScenarioData, Weights
from simgrid.optimization.builder import INF
from simgrid.optimization.dispatch_model import Sizes, UnitData, assemble, idle_state, unit_data
from simgrid.optimization.network_model import NetworkModel
from simgrid.optimization.risk import RiskSpec, cvar, nominal_risk, worst_case
from simgrid.optimization.solve import SolveResult, Termination
from simgrid.units.base import Capacity


@dataclass(frozen=True, eq=False)
class PlanningProblem:
    """Everything Stage-I needs: network, catalogue, candidates, scenario windows, risk."""

    net: NetworkModel
    catalogue: Catalogue
    candidates: tuple[int, ...]
    windows: tuple[tuple[ScenarioData, ...], ...]  # per scenario: its shock windows
    probability: np.ndarray
    distance: np.ndarray | None
    weights: Weights
    cfg: PlanningConfig
    source: str = "<config>"
    # per scenario: its day in blocks of the dispatcher's lookahead (operation recourse)
    days: tuple[tuple[ScenarioData, ...], ...] = ()

    @property
    def spec(self) -> RiskSpec:
        return RiskSpec(self.cfg.alpha, self.cfg.beta, self.cfg.ambiguity, self.cfg.radius)


@dataclass(frozen=True, eq=False)
class FirstStage:
    """The first-stage columns: modules bought per (supplier, bus) and unit sizes."""

    supplier: np.ndarray  # (K,) supplier index of each purchase column
    bus: np.ndarray  # (K,) bus of each purchase column
    buy: np.ndarray  # (K,) column ids
    units: tuple[tuple[Module, int], ...]  # (module, bus) of each sized unit
    size: np.ndarray  # (U,) column ids: modules of the unit
    max_size: np.ndarray  # (U,)
    invest: list  # cost terms (annualised)

    def counts_of(self, purchases: Sequence[Purchase], catalogue: Catalogue) -> np.ndarray:
        """Modules bought per purchase column."""
        by_key = {(p.supplier, p.bus): p.count for p in purchases}
        names = [catalogue.suppliers[k].name for k in self.supplier]
        return np.array(
            [by_key.get((n, int(b)), 0) for n, b in zip(names, self.bus, strict=True)], dtype=int
        )

    def sizes_at(self, counts: np.ndarray, catalogue: Catalogue) -> np.ndarray:
        """Modules of each unit at purchase `counts`."""
        module = np.array([catalogue.suppliers[k].module for k in self.supplier])
        return np.array(
            [counts[(self.bus == bus) & (module == m.name)].sum() for m, bus in self.units],
            dtype=float,
        )


@dataclass(frozen=True)
class Purchase:
    module: str
    bus: int
    count: int
    supplier: str
    unit_cost: float


@dataclass(frozen=True, eq=False)
class PlanResult:
    """An allocation and what it costs, with the solver's outcome."""

    purchases: tuple[Purchase, ...]
    investment: float  # annualised $/yr
    recourse: np.ndarray  # (S,) annual recourse cost per scenario
    probability: np.ndarray
    worst_case_probability: np.ndarray
    expected_recourse: float
    var: float
    cvar: float
    nominal_risk: float  # (1 - beta) E + beta CVaR at the nominal distribution
    worst_case_risk: float
    objective: float
    solve: SolveResult
    vss: float = math.nan  # value of the stochastic solution against the deterministic plan
    # operation recourse: what the screening model (the shock windows) said of this plan, and
    # every plan judged on the chained days (purchases, operation objective, screening one)
    screening_objective: float = math.nan
    judged: tuple = ()
    # plans the solver evaluated on its way: (purchases, its model's objective)
    explored: tuple = ()

    @property
    def premium(self) -> float:
        """What the ambiguity set adds to the nominal risk."""
        return self.worst_case_risk - self.nominal_risk


def _limit(pairs: tuple[tuple[str, int], ...], name: str, default: float) -> float:
    return float(dict(pairs).get(name, default))


def define_first_stage(b, problem: PlanningProblem, fixed: Sequence[Purchase] | None = None):
    """Purchases within inventories, budget, hosting and per-type limits; unit sizes."""
    cat, cfg = problem.catalogue, problem.cfg
    modules = {m.name: m for m in cat.modules}
    sup = [(k, s) for k, s in enumerate(cat.suppliers) if s.module in modules]
    fixed_counts = {(p.supplier, p.bus): p.count for p in fixed or ()}
    supplier, bus, lb, ub, cost, most_of = [], [], [], [], [], []
    for b_ in problem.candidates:
        for k, s in sup:
            supplier.append(k)
            bus.append(b_)
            n = float(fixed_counts.get((s.name, b_), 0)) if fixed is not None else None
            lb.append(0.0 if n is None else n)
            ub.append(float(s.available) if n is None else n)
            cost.append(s.unit_cost * cfg.annuity)
            # the big-M of gated limits is what could be bought, fixed purchases or not: an
            # allocation judged in the model is priced as the plan that chose it was
            most_of.append(max(float(s.available), ub[-1]))
    supplier, bus = np.array(supplier, dtype=int), np.array(bus, dtype=int)
    buy = b.add_vars(len(supplier), np.array(lb), np.array(ub), integer=True)
    units, size_cols, max_size = [], [], []
    for b_ in problem.candidates:
        for name, m in modules.items():
            mine = [
                i
                for i in range(len(buy))
                if bus[i] == b_ and cat.suppliers[supplier[i]].module == name
            ]
            if not mine:
                continue
            most = sum(most_of[i] for i in mine)
            col = b.add_vars(1, 0.0, most)
            b.add_rows([(1.0, col), *[(-1.0, buy[i : i + 1]) for i in mine]], lo=0.0, hi=0.0)
            units.append((m, b_))
            size_cols.append(col[0])
            max_size.append(most)
    size = np.array(size_cols, dtype=int)
    _first_stage_limits(b, problem, supplier, bus, buy, units, size, np.array(cost))
    invest = [(np.array(cost), buy)]
    return FirstStage(supplier, bus, buy, tuple(units), size, np.array(max_size), invest)


def _first_stage_limits(b, problem, supplier, bus, buy, units, size, cost) -> None:
    cat, cfg = problem.catalogue, problem.cfg
    for k, s in enumerate(cat.suppliers):
        mine = np.flatnonzero(supplier == k)
        if mine.size:
            b.add_sum_rows(buy[mine][None, :], hi=float(s.available))
    if math.isfinite(cfg.budget) and len(buy):
        b.add_sum_rows(buy[None, :], (cost / cfg.annuity)[None, :], hi=cfg.budget)
    limits = {h.bus: h.mw for h in cfg.hosting}
    for b_ in problem.candidates:
        mine = [u for u, (m, ub) in enumerate(units) if ub == b_]
        mw = min(limits.get(b_, cfg.hosting_mw), cfg.hosting_mw)
        if mine and math.isfinite(mw):
            rated = np.array([units[u][0].p_mw for u in mine])
            b.add_sum_rows(size[mine][None, :], rated[None, :], hi=mw)
    for m in cat.modules:
        mine = [u for u, (mod, _) in enumerate(units) if mod.name == m.name]
        lo = _limit(cfg.min_modules, m.name, 0.0)
        hi = _limit(cfg.max_modules, m.name, INF)
        if lo > 0 and not mine:
            raise ConfigError(
                problem.source,
                "planning.min_modules",
                f"{m.name} = {int(lo)}",
                "no supplier offers this module at a candidate bus",
            )
        if mine and (lo > 0 or math.isfinite(hi)):
            b.add_sum_rows(size[mine][None, :], lo=lo, hi=hi)


def define_recourse(
    b,
    problem: PlanningProblem,
    units: tuple[tuple[Module, int], ...],
    size: np.ndarray,
    max_size: np.ndarray,
    windows: Sequence[ScenarioData],
    options: ModelOptions,
) -> list:
    """One scenario's recourse over its windows, each unit sized by its column in `size`
    (at most `max_size` modules: the big-M of gated limits); returns its cost as terms, per
    day (the caller scales them to a year and puts them in a row or an objective)."""
    modules = [m for m, _ in units]
    buses = [bus for _, bus in units]
    terms = []
    for data in windows:
        ud = unit_data(modules, buses, problem.cfg.period_s, data.periods)
        sizes = sizes_of(ud, units, size, max_size)
        _, cost = assemble(
            b, problem.net, ud, sizes, data, idle_state(ud, data), problem.weights, options
        )
        terms += cost
    return terms


def sizes_of(
    ud: UnitData, units: tuple[tuple[Module, int], ...], size: np.ndarray, max_size: np.ndarray
) -> Sizes:
    """Each family's units (in unit_data's order) sized by their first-stage columns."""
    return Sizes(tuple(Capacity(max_size[idx], size[idx]) for idx in ud.index))


def check_solved(problem: PlanningProblem, res: SolveResult) -> None:
    """An infeasible or unsolved planning problem is the user's to fix: one clear line."""
    if res.termination is Termination.INFEASIBLE:
        raise ConfigError(
            problem.source,
            "planning",
            "infeasible",
            "no allocation meets the limits: check planning.budget against planning."
            "min_modules, the suppliers' inventories and the hosting limits",
        )
    if not res.termination.has_solution:
        raise ConfigError(
            problem.source,
            "planning.time_limit_s",
            problem.cfg.time_limit_s,
            f"no allocation found in time ({res.termination.value}): allow more time, fewer "
            "scenarios or candidates, or a longer planning.period_s",
        )


def objective_at(problem: PlanningProblem, first: FirstStage, counts, recourse) -> float:
    """An allocation's objective: investment at purchase `counts` + the worst-case risk of the
    scenarios' annual `recourse` (an upper bound of the optimum for any feasible counts)."""
    wc = worst_case(np.asarray(recourse), problem.probability, problem.spec, problem.distance)
    return float(first.invest[0][0] @ counts) + wc.value


def purchases_of(problem: PlanningProblem, first: FirstStage, counts) -> tuple[Purchase, ...]:
    """The purchases of purchase-column `counts`."""
    cat = problem.catalogue
    return tuple(
        Purchase(
            cat.suppliers[first.supplier[i]].module,
            int(first.bus[i]),
            int(counts[i]),
            cat.suppliers[first.supplier[i]].name,
            cat.suppliers[first.supplier[i]].unit_cost,
        )
        for i in np.flatnonzero(np.asarray(counts) > 0)
    )


def result(
    problem: PlanningProblem, first: FirstStage, counts: np.ndarray, h: np.ndarray, res
) -> PlanResult:
    """The plan's purchases, costs and risks at purchase `counts` with recourse `h`."""
    purchases = purchases_of(problem, first, counts)
    invest = float(first.invest[0][0] @ counts)
    p, spec = problem.probability, problem.spec
    var, cv = cvar(h, p, spec.alpha)
    wc = worst_case(h, p, spec, problem.distance)
    return PlanResult(
        purchases=purchases,
        investment=invest,
        recourse=h,
        probability=p,
        worst_case_probability=wc.probability,
        expected_recourse=float(p @ h),
        var=var,
        cvar=cv,
        nominal_risk=nominal_risk(h, p, spec),
        worst_case_risk=wc.value,
        objective=res.objective,
        solve=res,
    )
