"""Stage-I as one MILP (the extensive form): the first stage, every scenario's recourse as a
row h_s = its annual cost, and the risk rows over h, solved by HiGHS. Needed for integral
recourse; with relaxed recourse Benders decomposition (benders.py) scales further."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simgrid.optimization.blocks import ModelOptions
from simgrid.optimization.builder import INF, ArrayBuilder
from simgrid.optimization.planner import (
    FirstStage,
    PlanningProblem,
    PlanResult,
    Purchase,
    check_solved,
    define_first_stage,
    define_recourse,
    result,
)
from simgrid.optimization.risk import define_risk
from simgrid.optimization.solve import Progress, solve

# Stage-I is one large solve: HiGHS' own heuristics help it find incumbents early
MIP_OPTIONS = {"mip_heuristic_effort": 0.05, "mip_heuristic_run_rins": True}


class ExtensiveForm:
    """The planning problem as one MILP; `evaluate` fixes the purchases and solves again."""

    def __init__(self, problem: PlanningProblem) -> None:
        self.problem = problem

    def solve(self, progress: Progress | None = None) -> PlanResult:
        return self._solve(None, progress)

    def evaluate(self, purchases: Sequence[Purchase]) -> PlanResult:
        return self._solve(purchases, None)

    def _solve(self, fixed: Sequence[Purchase] | None, progress: Progress | None) -> PlanResult:
        problem = self.problem
        b = ArrayBuilder()
        first = define_first_stage(b, problem, fixed)
        h = _recourse_rows(b, problem, first)
        _, risk_cost = define_risk(b, h, problem.probability, problem.spec, problem.distance)
        b.add_cost([*first.invest, *risk_cost])
        milp = b.build()
        res = solve(
            milp,
            time_limit_s=problem.cfg.time_limit_s,
            mip_gap=problem.cfg.mip_gap,
            progress=progress,
            **MIP_OPTIONS,
        )
        check_solved(problem, res)
        x = res.x
        return result(problem, first, np.round(x[first.buy]).astype(int), x[h], res)


def _recourse_rows(b, problem: PlanningProblem, first: FirstStage) -> np.ndarray:
    """Columns h (S,) with h_s = days_per_year x scenario s's recourse over its windows."""
    cfg = problem.cfg
    options = ModelOptions(integer_periods=None if cfg.integer_recourse else 0, discount=1.0)
    h = b.add_vars(len(problem.windows), -INF, INF)
    for s, windows in enumerate(problem.windows):
        cost = define_recourse(
            b, problem, first.units, first.size, first.max_size, windows, options
        )
        terms = [(-cfg.days_per_year * np.asarray(coef), cols) for coef, cols in cost]
        _sum_row(b, h[s : s + 1], terms)
    return h


def _sum_row(b, col: np.ndarray, terms) -> None:
    """col - sum(terms) = 0, one row whose terms come from blocks of any shape."""
    flat_cols = [np.asarray(c).ravel() for _, c in terms]
    flat_coef = [np.broadcast_to(k, np.shape(c)).ravel() for k, c in terms]
    cols = np.concatenate([col, *flat_cols])
    coef = np.concatenate([np.ones(1), *flat_coef])
    keep = coef != 0
    b.add_sum_rows(cols[keep][None, :], coef[keep][None, :], lo=0.0, hi=0.0)
