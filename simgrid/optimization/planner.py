"""Stage-I planner: a two-stage DRO-CVaR MILP that allocates Flexible Capacity Modules.

First stage: integer modules of each catalogue type from each supplier at each candidate bus,
within the suppliers' inventories, a budget, per-bus hosting limits and per-type minimums and
maximums; investment is annualised (capital recovery factor). Second stage, per scenario: the
dispatch model (the very blocks Stage-II dispatches with) over the scenario's shock windows,
with perfect foresight inside them and each unit's size a first-stage column; the recourse
cost h_s (VoLL x unserved + imbalance penalty + restoration penalty + operating cost) is scaled
to a year. Objective: investment + the worst-case risk of h (risk.py), one MILP (extensive
form) solved by HiGHS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.config import PlanningConfig
from simgrid.errors import ConfigError
from simgrid.fcm import STORAGE, Catalogue, Module, UnitType
from simgrid.optimization.blocks import Capacity, ModelOptions, NetworkData, ScenarioData, Weights
from simgrid.optimization.builder import INF, ArrayBuilder
from simgrid.optimization.dispatch_model import Sizes, assemble, idle_state, unit_data
from simgrid.optimization.risk import RiskSpec, cvar, define_risk, nominal_risk, worst_case
from simgrid.optimization.solve import Progress, SolveResult, Termination, solve


@dataclass(frozen=True, eq=False)
class PlanningProblem:
    """Everything Stage-I needs: network, catalogue, candidates, scenario windows, risk."""

    net: NetworkData
    catalogue: Catalogue
    candidates: tuple[int, ...]
    windows: tuple[tuple[ScenarioData, ...], ...]  # per scenario
    probability: np.ndarray
    distance: np.ndarray | None
    weights: Weights
    cfg: PlanningConfig
    source: str = "<config>"

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
    supplier, bus, lb, ub, cost = [], [], [], [], []
    for b_ in problem.candidates:
        for k, s in sup:
            supplier.append(k)
            bus.append(b_)
            n = float(fixed_counts.get((s.name, b_), 0)) if fixed is not None else None
            lb.append(0.0 if n is None else n)
            ub.append(float(s.available) if n is None else n)
            cost.append(s.unit_cost * cfg.annuity)
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
            most = sum(ub[i] for i in mine)
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


def define_second_stage(b, problem: PlanningProblem, first: FirstStage, windows, scale: float):
    """Each scenario's dispatch over its windows with the chosen sizes; returns the recourse
    columns h (S,) with h_s = scale x the scenario's cost."""
    cfg = problem.cfg
    period_s = cfg.period_s
    modules = [m for m, _ in first.units]
    buses = [b_ for _, b_ in first.units]
    options = ModelOptions(integer_periods=None if cfg.integer_recourse else 0, discount=1.0)
    h = b.add_vars(len(windows), -INF, INF)
    for s, scenario in enumerate(windows):
        terms = []
        for data in scenario:
            ud = unit_data(modules, buses, period_s, data.periods)
            sizes = sizes_of(ud, first)
            _, cost = assemble(
                b, problem.net, ud, sizes, data, idle_state(ud, data), problem.weights, options
            )
            terms += [(-scale * np.asarray(coef), cols) for coef, cols in cost]
        _sum_row(b, h[s : s + 1], terms)
    return h


def sizes_of(ud, first: FirstStage) -> Sizes:
    """Each block's units (in unit_data's order: storage, generators, DR) sized by columns."""
    kinds = [m.type for m, _ in first.units]
    groups = (
        [i for i, k in enumerate(kinds) if k in STORAGE],
        [i for i, k in enumerate(kinds) if k is UnitType.FAST_GEN],
        [i for i, k in enumerate(kinds) if k is UnitType.DR],
    )
    caps = [Capacity(first.max_size[g], first.size[g]) for g in groups]
    return Sizes(*caps)


def _sum_row(b, col: np.ndarray, terms) -> None:
    """col - sum(terms) = 0, one row whose terms come from blocks of any shape."""
    flat_cols = [np.asarray(c).ravel() for _, c in terms]
    flat_coef = [np.broadcast_to(k, np.shape(c)).ravel() for k, c in terms]
    cols = np.concatenate([col, *flat_cols])
    coef = np.concatenate([np.ones(1), *flat_coef])
    keep = coef != 0
    b.add_sum_rows(cols[keep][None, :], coef[keep][None, :], lo=0.0, hi=0.0)


def build(problem: PlanningProblem, fixed: Sequence[Purchase] | None = None):
    """The extensive form: first stage, every scenario's recourse, the risk rows."""
    b = ArrayBuilder()
    first = define_first_stage(b, problem, fixed)
    h = define_second_stage(b, problem, first, problem.windows, problem.cfg.days_per_year)
    risk, risk_cost = define_risk(b, h, problem.probability, problem.spec, problem.distance)
    b.add_cost([*first.invest, *risk_cost])
    return b.build(), first, h


def plan(
    problem: PlanningProblem,
    *,
    fixed: Sequence[Purchase] | None = None,
    progress: Progress | None = None,
) -> PlanResult:
    """Solve the planning problem (or, with `fixed`, evaluate that allocation in it).

    With relaxed recourse (the default) by Benders decomposition, else as the extensive form.
    """
    if uses_benders(problem.cfg):
        from simgrid.optimization.benders import solve_benders

        return solve_benders(problem, fixed=fixed, progress=progress)
    return solve_extensive(problem, fixed=fixed, progress=progress)


def uses_benders(cfg: PlanningConfig) -> bool:
    return cfg.method == "benders" or (cfg.method == "auto" and not cfg.integer_recourse)


def solve_extensive(
    problem: PlanningProblem,
    *,
    fixed: Sequence[Purchase] | None = None,
    progress: Progress | None = None,
) -> PlanResult:
    """The extensive form: every scenario's recourse in one MILP."""
    milp, first, h = build(problem, fixed)
    res = solve(
        milp,
        time_limit_s=problem.cfg.time_limit_s,
        mip_gap=problem.cfg.mip_gap,
        progress=progress,
        **_mip_options(),
    )
    check_solved(problem, res)
    x = res.x
    return result(problem, first, np.round(x[first.buy]).astype(int), x[h], res)


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


def _mip_options() -> dict:
    """Stage-I is one large solve: HiGHS' own heuristics help it find incumbents early."""
    return {"mip_heuristic_effort": 0.05, "mip_heuristic_run_rins": True}


def result(
    problem: PlanningProblem, first: FirstStage, counts: np.ndarray, h: np.ndarray, res
) -> PlanResult:
    """The plan's purchases, costs and risks at purchase `counts` with recourse `h`."""
    cat = problem.catalogue
    purchases = tuple(
        Purchase(
            cat.suppliers[first.supplier[i]].module,
            int(first.bus[i]),
            int(counts[i]),
            cat.suppliers[first.supplier[i]].name,
            cat.suppliers[first.supplier[i]].unit_cost,
        )
        for i in np.flatnonzero(counts > 0)
    )
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
