"""Stage-I's solvers behind one interface: `solve` plans, `evaluate` judges a given allocation
in the same model. The configuration chooses: operation recourse (the default: the window model
explores, the chained days judge; operation.py), or window recourse by the extensive form (one
MILP; needed for integral recourse) or Benders decomposition (one LP per scenario)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from simgrid.config import PlanningConfig
from simgrid.optimization.benders import Benders
from simgrid.optimization.extensive import ExtensiveForm
from simgrid.optimization.operation import OperationPlanner, ScenarioMap
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


def solver_for(problem: PlanningProblem, scenario_map: ScenarioMap | None = None) -> Stage1Solver:
    """The solver the problem's configuration asks for (`scenario_map`: how operation
    recourse maps its independent days, e.g. over a dask cluster; in turn by default)."""
    if problem.cfg.recourse == "operation":
        if scenario_map is None:
            return OperationPlanner(problem)
        return OperationPlanner(problem, scenario_map)
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
