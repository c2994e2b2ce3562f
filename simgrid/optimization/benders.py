"""The planning problem by multi-cut L-shaped (Benders) decomposition, for relaxed recourse.

The master holds the first stage (purchases and unit sizes with every limit), one column
theta_s per scenario standing for its annual recourse cost, and the risk rows over theta
(risk.py): min investment + worst-case risk(theta). Each scenario is an LP over its shock
windows with the unit sizes fixed: its optimal value Q_s(N) is convex in the sizes N, and the
reduced costs of the fixed size columns are its slope, so theta_s >= Q_s(N^) + g_s (N - N^) is
a valid cut. Each iteration solves the master (a small MILP), evaluates every scenario at its
sizes (persistent LPs, hot-started), and adds one cut per scenario. A first phase runs the
same loop on the master's LP relaxation (fractional sizes: cheap iterations whose cuts stay
valid) until its bound stalls. The master's bound is a
lower bound on the optimum; investment + worst-case risk of the evaluated Q at the best sizes
is an upper bound; the loop stops at the MIP gap, when the master repeats its sizes, or at
the time limit (then the best plan found is returned with its gap).

The scenario LPs are independent: they can be evaluated anywhere (the stress runner's dask
cluster), here in turn.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from simgrid.optimization.blocks import ModelOptions, ScenarioData
from simgrid.optimization.builder import INF, ArrayBuilder
from simgrid.optimization.planner import (
    FirstStage,
    PlanningProblem,
    PlanResult,
    Purchase,
    check_solved,
    define_first_stage,
    define_recourse,
    objective_at,
    purchases_of,
    result,
)
from simgrid.optimization.risk import define_risk
from simgrid.optimization.solve import (
    PersistentModel,
    Progress,
    SolveResult,
    Termination,
    highs_lp,
    new_highs,
    result_of,
    run_within,
)

CUT_TOL = 1e-9  # slopes smaller than this are dropped from a cut
MIN_LP_S = 60.0  # a scenario's LP's time limit at least (a loaded machine, an hour's window)
log = logging.getLogger(__name__)


@dataclass(eq=False)
class ScenarioLP:
    """One scenario's recourse over its windows as an LP with the unit sizes as fixed columns."""

    model: PersistentModel | None  # None: no window (a quiet day costs nothing)
    size: np.ndarray

    def evaluate(self, sizes: np.ndarray, time_limit_s: float) -> tuple[float, np.ndarray]:
        """Q_s at `sizes` and its slope with respect to them."""
        if self.model is None:
            return 0.0, np.zeros(len(sizes))
        self.model.fix(self.size, sizes)
        res = self.model.solve(time_limit_s)
        if res.termination is not Termination.OPTIMAL:
            raise RuntimeError(f"a scenario's recourse LP ended {res.termination.value}")
        slope = np.asarray(self.model.highs.getSolution().col_dual)[self.size]
        return res.objective, slope


def scenario_lp(
    problem: PlanningProblem, first: FirstStage, windows: Sequence[ScenarioData], scale: float
) -> ScenarioLP:
    """Build one scenario's LP (relaxed recourse), cost scaled to a year."""
    if not windows:
        return ScenarioLP(None, np.zeros(0, dtype=int))
    b = ArrayBuilder()
    size = b.add_vars(len(first.units), 0.0, first.max_size)
    options = ModelOptions(integer_periods=0, discount=1.0)
    cost = define_recourse(b, problem, first.units, size, first.max_size, windows, options)
    b.add_cost([(scale * np.asarray(coef), cols) for coef, cols in cost])
    return ScenarioLP(PersistentModel(b.build(), relaxed=True), size)


class Master:
    """First stage, theta per scenario, risk rows; cuts are added in place."""

    def __init__(self, problem: PlanningProblem, fixed: Sequence[Purchase] | None) -> None:
        b = ArrayBuilder()
        self.first = define_first_stage(b, problem, fixed)
        n = len(problem.windows)
        self.theta = b.add_vars(n, 0.0, INF)  # recourse costs are penalties and costs: >= 0
        _, risk_cost = define_risk(
            b, self.theta, problem.probability, problem.spec, problem.distance
        )
        b.add_cost([*self.first.invest, *risk_cost])
        self.milp = b.build()
        self.highs = new_highs(mip_rel_gap=problem.cfg.mip_gap / 10, mip_abs_gap=0.0)
        self.highs.passModel(highs_lp(self.milp))
        self.integral = True

    def relax(self, relaxed: bool) -> None:
        """Solve the master's LP relaxation (phase 1: cheap cuts) or the MILP again."""
        import highspy

        ints = np.flatnonzero(self.milp.integer).astype(np.int32)
        kind = highspy.HighsVarType.kContinuous if relaxed else highspy.HighsVarType.kInteger
        self.highs.changeColsIntegrality(len(ints), ints, np.full(len(ints), kind))
        self.integral = not relaxed

    def solve(self, time_limit_s: float) -> SolveResult:
        t0 = time.perf_counter()
        run_within(self.highs, time_limit_s)
        return result_of(self.highs, t0, mip=self.integral)

    def add_cut(self, s: int, value: float, slope: np.ndarray, at: np.ndarray) -> None:
        """theta_s - slope . N >= value - slope . at."""
        keep = np.abs(slope) > CUT_TOL
        idx = np.concatenate([[self.theta[s]], self.first.size[keep]]).astype(np.int32)
        coef = np.concatenate([[1.0], -slope[keep]])
        self.highs.addRow(value - float(slope @ at), math.inf, len(idx), idx, coef)


PHASE1_ITERATIONS = 50
PHASE1_TOL = 1e-3  # relative gain of the relaxed master's bound below which phase 1 ends


def _relaxed_cuts(master: Master, lps, problem: PlanningProblem, t_start: float) -> None:
    """Phase 1: cuts at the relaxed master's fractional sizes, until its bound stalls (each
    iteration costs an LP master instead of a MILP one; the cuts stay valid for phase 2)."""
    master.relax(True)
    last = -math.inf
    for _ in range(PHASE1_ITERATIONS):
        left = problem.cfg.time_limit_s - (time.perf_counter() - t_start)
        res = master.solve(max(left, 1.0))
        if res.x is None or left <= 0:
            break
        sizes = res.x[master.first.size]
        for s, lp in enumerate(lps):
            value, slope = lp.evaluate(sizes, max(left, 1.0))
            master.add_cut(s, value, slope, sizes)
        if res.objective - last <= PHASE1_TOL * max(abs(res.objective), 1e-9):
            break
        last = res.objective
    master.relax(False)


class Benders:
    """The decomposition of one planning problem: its scenario LPs are built once and serve
    the solve and the evaluation of other allocations (the deterministic plan's, for VSS)."""

    def __init__(self, problem: PlanningProblem) -> None:
        self.problem = problem
        self._lps: list[ScenarioLP] | None = None
        self._first: FirstStage | None = None

    def lps(self, first: FirstStage) -> list[ScenarioLP]:
        if self._lps is None:
            problem, scale = self.problem, self.problem.cfg.days_per_year
            self._lps = [scenario_lp(problem, first, w, scale) for w in problem.windows]
        return self._lps

    def solve(self, progress: Progress | None = None) -> PlanResult:
        return _solve(self, Master(self.problem, None), progress)

    def evaluate(self, purchases: Sequence[Purchase]) -> PlanResult:
        """An allocation judged in this problem: each scenario's recourse at its sizes."""
        t0 = time.perf_counter()
        problem = self.problem
        first = Master(problem, purchases).first
        counts = first.counts_of(purchases, problem.catalogue)
        sizes = first.sizes_at(counts, problem.catalogue)
        q = np.array([lp.evaluate(sizes, problem.cfg.time_limit_s)[0] for lp in self.lps(first)])
        upper = objective_at(problem, first, counts, q)
        solved = SolveResult(Termination.OPTIMAL, None, upper, upper, 0.0, time.perf_counter() - t0)
        return result(problem, first, counts, q, solved)


def _solve(solver: Benders, master: Master, progress: Progress | None) -> PlanResult:
    t_start = time.perf_counter()
    problem = solver.problem
    cfg = problem.cfg
    first = master.first
    lps = solver.lps(first)
    _relaxed_cuts(master, lps, problem, t_start)
    best: tuple[float, np.ndarray, np.ndarray] | None = None  # (upper bound, counts, Q)
    lower, seen, explored = -math.inf, set(), []
    while True:
        left = cfg.time_limit_s - (time.perf_counter() - t_start)
        res = master.solve(max(left, 1.0))
        if best is None:
            check_solved(problem, res)
        if res.x is None:
            break
        lower = max(lower, res.bound)
        counts = np.round(res.x[first.buy]).astype(int)
        sizes = np.round(res.x[first.size], 9)
        key = tuple(counts)
        if key in seen:
            # its cuts are tight there: the master's optimum is that plan's known cost, so
            # its bound has met the best plan's (up to the master's own gap)
            break
        seen.add(key)
        try:  # an LP gets what is left of the time, and at least MIN_LP_S (a cut must be exact)
            values, slopes = zip(
                *(lp.evaluate(sizes, max(left, MIN_LP_S)) for lp in lps), strict=True
            )
        except RuntimeError as exc:  # a recourse LP that did not solve: keep the best so far
            if best is None:
                check_solved(problem, SolveResult(Termination.NO_SOLUTION, None, 0, 0, 0, 0))
            log.warning("Benders stopped early: %s", exc)
            break
        q = np.array(values)
        upper = objective_at(problem, first, counts, q)
        explored.append((purchases_of(problem, first, counts), upper))
        if best is None or upper < best[0]:
            best = (upper, counts, q)
        for s, (value, slope) in enumerate(zip(values, slopes, strict=True)):
            master.add_cut(s, value, slope, sizes)
        gap = (best[0] - lower) / max(abs(best[0]), 1e-9)
        if progress is not None:
            progress(time.perf_counter() - t_start, best[0], lower, gap)
        if gap <= cfg.mip_gap or time.perf_counter() - t_start > cfg.time_limit_s:
            break
    upper, counts, q = best
    gap = max((upper - lower) / max(abs(upper), 1e-9), 0.0)
    term = Termination.OPTIMAL if gap <= cfg.mip_gap + 1e-12 else Termination.FEASIBLE
    solved = SolveResult(term, None, upper, min(lower, upper), gap, time.perf_counter() - t_start)
    return replace(result(problem, first, counts, q, solved), explored=tuple(explored))
