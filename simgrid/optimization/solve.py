"""Solving a built model: one result type for both stages and both backends.

`solve(milp)` solves an `ArrayBuilder` model once with HiGHS (highspy); `PersistentModel` keeps
a HiGHS model alive and changes only bounds and costs between solves (Stage-II);
`solve_pyomo(builder)` solves a `PyomoBuilder` model through pyomo's APPSI HiGHS interface.
Every one returns a `SolveResult`: termination, solution, objective, bound, gap, time.
"""

from __future__ import annotations

import enum
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from simgrid.optimization.builder import Milp

# One thread and a fixed seed: reproducible solves. The sub-MIP heuristics (RENS, RINS, root
# reduced cost) are off: on the dispatch model's hard windows they took most of the time (e.g.
# 426 -> 228 ms) while the root LP bound was already at or near the optimum.
BASE_HIGHS_OPTIONS = {"output_flag": False, "threads": 1, "random_seed": 0}
HIGHS_OPTIONS = {
    **BASE_HIGHS_OPTIONS,
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_root_reduced_cost": False,
}


class Termination(enum.StrEnum):
    """How a solve ended (what the caller may do with it: `has_solution`)."""

    OPTIMAL = "optimal"  # within the requested gap
    FEASIBLE = "feasible"  # stopped by a limit with a solution
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"  # stopped by a limit without one
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        return self in (Termination.OPTIMAL, Termination.FEASIBLE)


@dataclass(frozen=True, eq=False)
class SolveResult:
    termination: Termination
    x: np.ndarray | None
    objective: float
    bound: float  # the dual bound (the objective for an LP)
    gap: float  # relative gap between objective and bound (0 at optimality)
    time_s: float


def new_highs(**options):
    """A Highs object with simgrid's options: every one in the process must agree on `threads`
    (HiGHS cannot change it after the first solve)."""
    import highspy

    # HiGHS prints a banner from C++ when constructed, before any option can silence it
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    for key, value in {**HIGHS_OPTIONS, **options}.items():
        h.setOptionValue(key, value)
    return h


def highs_lp(milp: Milp):
    """The model as a highspy LP/MIP (column-wise matrix)."""
    import highspy

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = milp.A.shape[1], milp.A.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = milp.cost, milp.lb, milp.ub
    lp.row_lower_, lp.row_upper_ = milp.row_lo, milp.row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = milp.A.indptr
    lp.a_matrix_.index_ = milp.A.indices
    lp.a_matrix_.value_ = milp.A.data
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
        for i in milp.integer
    ]
    return lp


def run_within(h, time_limit_s: float) -> None:
    """Run a Highs object for at most `time_limit_s` of this run.

    HiGHS compares `time_limit` with the object's cumulative run clock (`getRunTime`), so a
    persistent model given a fixed limit would, once its solves add up to it, stop every later
    solve at once (this made long runs slow down day after day); the limit is set from the
    clock before each run instead.
    """
    h.setOptionValue("time_limit", h.getRunTime() + time_limit_s)
    h.run()


def result_of(h, t0: float, *, mip: bool) -> SolveResult:
    """Read a finished HiGHS run as a SolveResult."""
    import highspy

    status = h.getModelStatus()
    info = h.getInfo()
    elapsed = time.perf_counter() - t0
    has = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if status == highspy.HighsModelStatus.kOptimal:
        term = Termination.OPTIMAL
    elif status == highspy.HighsModelStatus.kInfeasible:
        term = Termination.INFEASIBLE
    elif has:
        term = Termination.FEASIBLE
    elif status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
        term = Termination.NO_SOLUTION
    else:
        term = Termination.ERROR
    if not term.has_solution:
        return SolveResult(term, None, math.nan, math.nan, math.inf, elapsed)
    obj = float(info.objective_function_value)
    bound = float(info.mip_dual_bound) if mip else obj
    gap = float(info.mip_gap) if mip else 0.0
    x = np.asarray(h.getSolution().col_value)
    return SolveResult(term, x, obj, bound, gap, elapsed)


Progress = Callable[[float, float, float, float], None]  # (time_s, objective, bound, gap)


def solve(
    milp: Milp,
    *,
    time_limit_s: float,
    mip_gap: float,
    mip_abs_gap: float = 0.0,
    progress: Progress | None = None,
    **options,
) -> SolveResult:
    """Solve a model once with HiGHS; `progress` is called as the MIP search improves."""
    h = new_highs(mip_rel_gap=mip_gap, mip_abs_gap=mip_abs_gap, **options)
    h.passModel(highs_lp(milp))
    if progress is not None and milp.integer.any():

        def report(event) -> None:
            out = event.data_out
            progress(out.running_time, out.mip_primal_bound, out.mip_dual_bound, out.mip_gap)

        h.cbMipImprovingSolution.subscribe(report)
        h.cbMipLogging.subscribe(report)
    t0 = time.perf_counter()
    run_within(h, time_limit_s)
    return result_of(h, t0, mip=bool(milp.integer.any()))


class PersistentModel:
    """A HiGHS model built once and updated in place: same matrix, new bounds and costs.

    `relaxed=True` keeps the LP relaxation (every column continuous), hot-started from the
    last basis. An update is pushed when the model is next solved or fixed, and only the
    entries that changed: a MILP kept beside an LP that answers most windows is then not
    touched by the windows it does not solve.
    """

    def __init__(self, milp: Milp, *, relaxed: bool = False, **options) -> None:
        model = replace(milp, integer=np.zeros_like(milp.integer)) if relaxed else milp
        self.mip = bool(model.integer.any())
        self.highs = new_highs(**options)
        self.highs.passModel(highs_lp(model))
        self.matrix = milp.A
        self._pushed = {name: getattr(milp, name).astype(float) for name in _PUSHED}
        self._pending: Milp | None = None

    def update(self, milp: Milp) -> None:
        """New bounds and costs (the matrix is fixed); pushed before the next solve or fix."""
        self._pending = milp

    def _push(self) -> None:
        milp, self._pending = self._pending, None
        if milp is None:
            return
        changed = {}
        for name in _PUSHED:
            new, old = getattr(milp, name), self._pushed[name]
            changed[name] = np.flatnonzero(new != old)
            old[changed[name]] = new[changed[name]]
        h, now = self.highs, self._pushed
        cols = np.union1d(changed["lb"], changed["ub"]).astype(np.int32)
        if cols.size:
            h.changeColsBounds(cols.size, cols, now["lb"][cols], now["ub"][cols])
        rows = np.union1d(changed["row_lo"], changed["row_hi"]).astype(np.int32)
        if rows.size:
            h.changeRowsBounds(rows.size, rows, now["row_lo"][rows], now["row_hi"][rows])
        cols = changed["cost"].astype(np.int32)
        if cols.size:
            h.changeColsCost(cols.size, cols, now["cost"][cols])

    def fix(self, cols: np.ndarray, values: np.ndarray) -> None:
        """Fix columns at values (until the next `update`)."""
        self._push()
        idx = np.asarray(cols, dtype=np.int32)
        self.highs.changeColsBounds(len(idx), idx, values, values)
        # what HiGHS holds for these columns is no longer what was pushed: the next update
        # sees them as changed
        self._pushed["lb"][idx] = np.nan

    def solve(self, time_limit_s: float) -> SolveResult:
        self._push()
        t0 = time.perf_counter()
        run_within(self.highs, time_limit_s)
        return result_of(self.highs, t0, mip=self.mip)


_PUSHED = ("lb", "ub", "row_lo", "row_hi", "cost")


def solve_pyomo(builder, *, time_limit_s: float, mip_gap: float, highs_options=None):
    """Solve a PyomoBuilder model with HiGHS through pyomo's APPSI interface."""
    from pyomo.contrib.appsi.base import TerminationCondition
    from pyomo.contrib.appsi.solvers import Highs

    pyo = builder.pyo
    cost = builder.cost
    objective = sum(float(c) * v for c, v in zip(cost, builder.vars, strict=True) if c)
    builder.model.obj = pyo.Objective(expr=objective, sense=pyo.minimize)
    opt = Highs()
    opt.config.load_solution = False
    opt.config.time_limit = time_limit_s
    opt.config.mip_gap = mip_gap
    opt.highs_options = dict(highs_options or {})
    t0 = time.perf_counter()
    res = opt.solve(builder.model)
    elapsed = time.perf_counter() - t0
    if res.best_feasible_objective is None:
        return SolveResult(Termination.NO_SOLUTION, None, math.nan, math.nan, math.inf, elapsed)
    res.solution_loader.load_vars()
    optimal = res.termination_condition == TerminationCondition.optimal
    term = Termination.OPTIMAL if optimal else Termination.FEASIBLE
    x = np.array([v.value or 0.0 for v in builder.vars])
    obj = float(cost @ x)
    bound = float(res.best_objective_bound) if res.best_objective_bound is not None else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-9)
    return SolveResult(term, x, obj, bound, gap, elapsed)
