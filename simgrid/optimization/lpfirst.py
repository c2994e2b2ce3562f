"""Answering a dispatch window from its LP relaxation when that is as good as the MILP.

The binaries of the integral head are rounded by what they mean, each family by its own rule
(simgrid.units: storage in discharge mode when it discharges more than it charges, a generator
committed when it produces or must be on, DR active when it curtails, starts, stops and
activations from the off -> on transitions). The point is accepted if it satisfies every row
and bound at the LP bound: then it is optimal for the MILP. Otherwise the rounded binaries are
fixed and the LP solved once more (a dive); that point is accepted within the MIP gap (relative
or absolute) of the first LP bound -- the guarantee the MILP path gives. Otherwise the caller
solves the MILP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.optimization.blocks import InitialState
from simgrid.optimization.builder import Milp
from simgrid.optimization.dispatch_model import Handles, UnitData
from simgrid.optimization.solve import PersistentModel
from simgrid.units import FAMILIES

FEASIBILITY_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class LpAnswer:
    x: np.ndarray
    objective: float
    dived: bool


def rounded(
    x: np.ndarray, milp: Milp, hd: Handles, state: InitialState, ud: UnitData
) -> np.ndarray:
    """An LP point with the integral head's binaries rounded by what they mean (each family's
    rule, simgrid.units)."""
    x = x.copy()
    ints = milp.integer

    def put(ids: np.ndarray, values: np.ndarray) -> None:
        x[ids] = np.where(ints[ids], values, x[ids])

    for f, fh, start, part in zip(FAMILIES, hd.units, state.units, ud.parts, strict=True):
        f.round(x, put, milp.lb, fh, start, part)
    x[ints] = np.round(x[ints])
    return x


def feasible(x: np.ndarray, milp: Milp, tol: float = FEASIBILITY_TOL) -> bool:
    act = milp.A @ x
    return not (
        np.any(act < milp.row_lo - tol)
        or np.any(act > milp.row_hi + tol)
        or np.any(x < milp.lb - tol)
        or np.any(x > milp.ub + tol)
    )


def answer(
    lp: PersistentModel,
    milp: Milp,
    hd: Handles,
    state: InitialState,
    ud: UnitData,
    *,
    gap: float,
    abs_gap: float,
    time_limit_s: float,
) -> LpAnswer | None:
    """The window's MILP answer from its hot-started LP relaxation, or None (see the module)."""
    first = lp.solve(time_limit_s)
    if first.x is None or first.termination.value != "optimal":
        return None
    bound = float(milp.cost @ first.x)
    x = rounded(first.x, milp, hd, state, ud)
    if feasible(x, milp) and milp.cost @ x <= bound + 1e-7 * (1.0 + abs(bound)):
        return LpAnswer(x, float(milp.cost @ x), dived=False)
    fixed = np.flatnonzero(milp.integer)
    lp.fix(fixed, np.clip(x[fixed], milp.lb[fixed], milp.ub[fixed]))
    dive = lp.solve(time_limit_s)
    if dive.x is None or dive.termination.value != "optimal":
        return None
    x = dive.x
    cost = float(milp.cost @ x)
    if feasible(x, milp) and cost <= bound + max(gap * abs(bound), abs_gap):
        return LpAnswer(x, cost, dived=True)
    return None
