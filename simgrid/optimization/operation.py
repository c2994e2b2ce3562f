"""Operation recourse: what a scenario's day costs an allocation as the rolling dispatcher meets
it, and Stage-I planning against it.

A day is cut into blocks of the dispatcher's lookahead, in its period (the plant's step where
an oscillation is live: its swings are resolved as the plant meets them) over the whole day --
what happens outside the shocks costs too. The blocks are solved one after the other, each from
where the one before ended (units' energy, output and commitment, budgets left, rebound owed,
the upstream's follow) and the day starts at rest at the targets, as a run does: no block sees
beyond its lookahead, so storage and demand response are rationed over an hour as the
dispatcher rations them, not over the day with hindsight. Nor does a block see an event
coming: a block ends where an event changes the system and the next begins with that news
(windows.DayBlocks), as the dispatcher, forecasting by persistence, learns of a step when it
happens; within a block its hour is seen as it will be. Generators commit integrally, their
minimum up and down times carried from block to block: a start costs its start cost and the
unit's minimum output for as long as the plant keeps it on (relaxed, a tenth of a unit would
run at a tenth of its minimum output, a flexible resource the plant does not have); demand
response's activation is integral too (relaxed, a unit curtailed part-way for hours while
paying back, and spent its day's budget on ramps a generator meets for less); storage's mode
stays relaxed. A start-up delay or a DR notice binds from the day's start, within each block
and from a block that begins with an event, not at a block's edge on the hour: the
dispatcher, rolling every period, decides a start one delay ahead with its lookahead in view,
but only once the event has happened.
A day costs what a run pays: the restoration terms that steer the dispatcher (`Regulariser`)
are left out, as the closed loop's cost leaves them out.

The chained day is not one optimisation problem: its cost is not convex in the sizes and has
no valid Benders cut (the slope of a block with its start held fixed misses how a larger unit
changes every later block's start; at the sizes of the bundled example such slopes differed
from finite differences by orders of magnitude). So Stage-I plans in two steps: the window
model (the shock windows, convex, exact cuts: benders.py) explores allocations, and every
allocation it evaluated is judged on the chained days of every scenario, the best by
investment + worst-case risk of the chained recourse kept (`OperationPlanner`). The days are
independent: a caller may map them over workers (`scenario_map`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from simgrid.errors import ConfigError
from simgrid.optimization.benders import Benders, Master
from simgrid.optimization.blocks import InitialState, ModelOptions, ScenarioData
from simgrid.optimization.builder import ArrayBuilder
from simgrid.optimization.dispatch_model import assemble, idle_state, unit_data
from simgrid.optimization.planner import (
    FirstStage,
    PlanningProblem,
    PlanResult,
    Purchase,
    objective_at,
    result,
    sizes_of,
)
from simgrid.optimization.solve import PersistentModel, Progress, SolveResult, Termination
from simgrid.units import FAMILIES
from simgrid.units.base import Window, value_of

# How many of the allocations the window model evaluated are judged on the chained days (the
# best by the window model's own objective): each costs one chained day per scenario.
CANDIDATES = 8

# map(fn, scenario indices) -> results in order; the builtin map, or one on a dask cluster
ScenarioMap = Callable[[Callable[[int], np.ndarray], Sequence[int]], Sequence[np.ndarray]]


def _map(fn: Callable[[int], np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
    return [fn(i) for i in indices]


@dataclass(eq=False)
class ChainedDay:
    """One scenario's day in blocks, solved one after the other (see the module)."""

    problem: PlanningProblem
    first: FirstStage
    blocks: tuple[ScenarioData, ...]
    scale: float
    _models: list = field(default_factory=list)  # per block: (model, row shapes, handles)

    def cost(self, sizes: np.ndarray, time_limit_s: float) -> float:
        """The day's recourse ($/yr) with `sizes` modules of each unit."""
        total, start = 0.0, None
        for k, data in enumerate(self.blocks):
            ud = self._unit_data(data)
            if start is None:  # the day starts at rest; energy and budgets in MWh from here
                idle = idle_state(ud, data)
                parts = zip(FAMILIES, idle.units, ud.parts, ud.index, strict=True)
                units = tuple(f.absolute(st, part, sizes[idx]) for f, st, part, idx in parts)
                start = replace(idle, units=units)
            model, hd = self._block(k, data, ud, sizes, start)
            res = model.solve(time_limit_s)
            if res.termination is not Termination.OPTIMAL:
                raise RuntimeError(f"a day's recourse block ended {res.termination.value}")
            total += res.objective - self.scale * value_of(hd.regulariser, res.x)
            if k + 1 < len(self.blocks):
                nxt = self.blocks[k + 1]
                start = _next_start(res.x, hd, ud, start, sizes, data, nxt, self._unit_data(nxt))
        return total

    def _unit_data(self, data: ScenarioData):
        modules = [m for m, _ in self.first.units]
        buses = [bus for _, bus in self.first.units]
        return unit_data(modules, buses, data.dt_h * 3600, data.periods)

    def _block(self, k: int, data, ud, sizes, start):
        """Block k's model at these sizes and start: built at the first call, then only its
        bounds change: energy and budgets enter as MWh."""
        known = self._models[k] if k < len(self._models) else None
        if not self.problem.net.fixed_matrix:  # its coefficients follow the block: rebuilt
            known = None
        b = ArrayBuilder() if known is None else ArrayBuilder(known[0].matrix, known[1])
        size = b.add_vars(len(sizes), sizes, sizes)
        caps = sizes_of(ud, self.first.units, size, self.first.max_size)
        options = ModelOptions(integer_periods=0, discount=1.0, commitment=True)
        problem = self.problem
        hd, cost = assemble(b, problem.net, ud, caps, data, start, problem.weights, options)
        b.add_cost([(self.scale * np.asarray(coef), cols) for coef, cols in cost])
        milp = b.build()
        if known is None:
            model = PersistentModel(milp)
            if k < len(self._models):
                self._models[k] = (model, b.row_shapes, hd)
            else:
                self._models.append((model, b.row_shapes, hd))
            return model, hd
        known[0].update(milp)
        return known[0], known[2]


def _next_start(x, hd, ud, start, sizes, data: ScenarioData, nxt: ScenarioData, ud_next):
    """Where the next block of a chained day starts."""
    period_s = nxt.dt_h * 3600
    window = Window(data.dt_h, data.periods, np.zeros(data.periods, bool), 0.0)
    units = tuple(
        f.next_start(
            st, x, fh, part, sizes[idx], window, part_next, period_s, nxt.periods, nxt.news
        )
        for f, st, fh, part, idx, part_next in zip(
            FAMILIES, start.units, hd.units, ud.parts, ud.index, ud_next.parts, strict=True
        )
    )
    return InitialState(follow_mw=float(x[hd.imports.follow[-1]]), units=units)


def day_costs(
    problem: PlanningProblem,
    first: FirstStage,
    sizes: Sequence[np.ndarray],
    time_limit_s: float,
    scenario: int,
) -> np.ndarray:
    """Scenario `scenario`'s chained day at each of `sizes` (one task: the day's block models
    are built once and hot-started from one allocation to the next)."""
    day = ChainedDay(problem, first, problem.days[scenario], problem.cfg.days_per_year)
    return np.array([day.cost(np.asarray(z, float), time_limit_s) for z in sizes])


class OperationPlanner:
    """Stage-I against operation recourse: the window model explores, the chained days judge.
    `solve` and `evaluate` as every Stage-I solver (stage1.py)."""

    def __init__(self, problem: PlanningProblem, scenario_map: ScenarioMap = _map) -> None:
        self.problem, self.map = problem, scenario_map
        self.first = Master(problem, None).first

    def costs(self, allocations: Sequence[Sequence[Purchase]]) -> np.ndarray:
        """(allocations, scenarios): each allocation's chained-day recourse ($/yr)."""
        cat = self.problem.catalogue
        sizes = [self.first.sizes_at(self.first.counts_of(a, cat), cat) for a in allocations]
        task = partial(day_costs, self.problem, self.first, sizes, self.problem.cfg.time_limit_s)
        try:
            columns = self.map(task, list(range(len(self.problem.days))))
        except RuntimeError as exc:  # a block that did not solve in time: the user's to fix
            raise ConfigError(
                self.problem.source,
                "planning.time_limit_s",
                self.problem.cfg.time_limit_s,
                f"a day's recourse did not solve ({exc}): allow more time per block",
            ) from None
        return np.column_stack(columns) if columns else np.zeros((len(allocations), 0))

    def solve(self, progress: Progress | None = None) -> PlanResult:
        screening = Benders(self.problem).solve(progress)
        explored = {tuple(p): value for p, value in screening.explored}
        explored.setdefault(tuple(screening.purchases), screening.objective)
        ranked = sorted(explored.items(), key=lambda kv: kv[1])[:CANDIDATES]
        costs = self.costs([p for p, _ in ranked])
        judged = []
        for (purchases, screened), cost in zip(ranked, costs, strict=True):
            counts = self.first.counts_of(purchases, self.problem.catalogue)
            value = objective_at(self.problem, self.first, counts, cost)
            judged.append((purchases, value, screened))
        best = min(range(len(judged)), key=lambda a: judged[a][1])  # ties: the screening's best
        purchases, objective, screened = judged[best]
        solved = replace(screening.solve, objective=objective)
        plan = self._result(purchases, costs[best], solved)
        return replace(
            plan,
            screening_objective=screened,
            judged=tuple(judged),
            explored=screening.explored,
        )

    def evaluate(self, purchases: Sequence[Purchase]) -> PlanResult:
        costs = self.costs([tuple(purchases)])[0]
        counts = self.first.counts_of(purchases, self.problem.catalogue)
        value = objective_at(self.problem, self.first, counts, costs)
        solved = SolveResult(Termination.OPTIMAL, None, value, value, 0.0, 0.0)
        return self._result(tuple(purchases), costs, solved)

    def _result(self, purchases, costs: np.ndarray, solved: SolveResult) -> PlanResult:
        counts = self.first.counts_of(purchases, self.problem.catalogue)
        return result(self.problem, self.first, counts, costs, solved)
