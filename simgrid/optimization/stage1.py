"""Stage-I's solvers behind one interface: `solve` plans, `evaluate` judges a given allocation
in the same model. The configuration chooses the extensive form (one MILP; needed for integral
recourse) or Benders decomposition (one LP per scenario; the default for relaxed recourse)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from simgrid.config import PlanningConfig
from simgrid.optimization.benders import Benders
from simgrid.optimization.extensive import ExtensiveForm
from simgrid.optimization.planner import PlanningProblem, PlanResult, Purchase
from simgrid.optimization.solve import Progress


class Stage1Solver(Protocol):
    problem: PlanningProblem

    def solve(self, progress: Progress | None = None) -> PlanResult:
        """The allocation that minimises investment + worst-case risk."""
        ...

    def evaluate(self, purchases: Sequence[Purchase]) -> PlanResult:
        """`purchases` judged in this problem (its recourse, risk and objective)."""
        ...


def uses_benders(cfg: PlanningConfig) -> bool:
    return cfg.method == "benders" or (cfg.method == "auto" and not cfg.integer_recourse)


def solver_for(problem: PlanningProblem) -> Stage1Solver:
    """The solver the problem's configuration asks for."""
    return Benders(problem) if uses_benders(problem.cfg) else ExtensiveForm(problem)


def plan(
    problem: PlanningProblem,
    *,
    fixed: Sequence[Purchase] | None = None,
    progress: Progress | None = None,
) -> PlanResult:
    """Solve the planning problem (or, with `fixed`, evaluate that allocation in it)."""
    solver = solver_for(problem)
    return solver.evaluate(fixed) if fixed is not None else solver.solve(progress)
