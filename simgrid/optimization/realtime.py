"""The plant's real-time layer between Stage-II calls: units absorb what the plan did not foresee.

Between calls the demand keeps moving (a ramp continues, a swing turns). Online storage and
fast generators follow the residual deviation -- the change of the feeder's demand since the
plan beyond the change of its import schedule (what the day-ahead schedule already expects is
not a deviation) -- as plant controllers do (secondary control with participation factors):
each unit moves by the same fraction of its headroom in the needed direction, headroom
measured from its planned set-point to the limit it can reach by this step (rating, state of
charge over the hold interval, ramp rate since the last step). The planned shedding is the
first lever on a surplus (load comes back before units back down) and the last on a deficit
(if the units run out, shedding grows at the buses where the plan sheds, in proportion to the
load left there). DR stays as planned: it cannot act without notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.optimization.dispatch_model import UnitData
from simgrid.optimization.state import Applied, Plan, UnitState
from simgrid.types import GridState
from simgrid.units import FAMILIES

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class Follow:
    """New set-points after following, and what could not be absorbed (MW, deficit-positive)."""

    p_mw: np.ndarray
    shed_mw: np.ndarray
    unabsorbed_mw: float


def share(residual_mw: float, p_mw: np.ndarray, lo_mw: np.ndarray, hi_mw: np.ndarray):
    """Move units from `p_mw` within [lo, hi] to cover `residual_mw` (positive: produce more).

    Every unit moves by the same fraction of its headroom in the needed direction, which is
    participation in proportion to headroom. Returns (new powers, the part left uncovered).
    """
    p = np.clip(p_mw, lo_mw, hi_mw)
    room = (hi_mw - p) if residual_mw > 0 else (p - lo_mw)
    total = float(room.sum())
    if total <= _EPS or abs(residual_mw) <= _EPS:
        return p, residual_mw
    used = min(abs(residual_mw), total)
    step = np.sign(residual_mw) * room * (used / total)
    return p + step, residual_mw - float(step.sum())


def follow(
    residual_mw: float,
    p_mw: np.ndarray,
    lo_mw: np.ndarray,
    hi_mw: np.ndarray,
    shed_mw: np.ndarray,
    sheddable_mw: np.ndarray,
) -> Follow:
    """Cover `residual_mw` (demand above the plan's: positive) with units, then shedding.

    `p_mw`: the units' planned set-points (generation-positive); `shed_mw`: planned shedding
    per bus; `sheddable_mw`: how much load each bus has left to shed.
    """
    shed = shed_mw.copy()
    left = residual_mw
    if left < 0 and shed.sum() > _EPS:  # a surplus first brings shed load back
        back = min(-left, float(shed.sum()))
        shed -= shed * (back / float(shed.sum()))
        left += back
    p, left = share(left, p_mw, lo_mw, hi_mw)
    if left > _EPS and shed.sum() > _EPS:  # units ran out: shed more where the plan sheds
        room = np.where(shed > _EPS, np.maximum(sheddable_mw - shed, 0.0), 0.0)
        more = min(left, float(room.sum()))
        if more > _EPS:
            shed += room * (more / float(room.sum()))
            left -= more
    return Follow(p, shed, left)


class RealTimeLayer:
    """The plant's controllers between Stage-II calls: `follow` (units absorb the residual
    deviation, see `follow` above) or `hold` (the plan's set-points within what the units can
    do). The units that follow are those of the families that do (simgrid.units), stacked in
    the registry's order; a set-point holds for `hold_s`, the plant's power-flow step."""

    def __init__(self, ud: UnitData, hold_s: float, mode: str) -> None:
        self.ud, self.hold_s, self.mode = ud, hold_s, mode
        taken, k = [], 0
        for i, (f, part) in enumerate(zip(FAMILIES, ud.parts, strict=True)):
            if f.follows():
                taken.append((i, f, part, slice(k, k + len(part))))
                k += len(part)
        self._followers = tuple(taken)

    def setpoints(
        self, st: GridState, base: Applied, plan: Plan | None, state: UnitState, since_s: float
    ) -> Applied:
        """The set-points at this step: `base` (the plan's first period, or what was applied)
        moved to absorb what the plan did not foresee (`follow`, with a plan), or held."""
        lo, hi = self.limits(state, since_s)
        planned = self.stacked(base)
        shed_p = base.shed_p
        if self.mode == "follow" and plan is not None:
            # what the plan did not foresee: the demand's change beyond the schedule's
            live_demand = st.served_p_mw()
            residual = float(live_demand.sum()) - plan.demand_mw
            residual -= st.import_schedule_mw - plan.schedule_mw
            moved = follow(residual, planned, lo, hi, shed_p, live_demand)
            p, shed_p = moved.p_mw, moved.shed_mw
        else:
            p = np.clip(planned, lo, hi)
        ratio = np.divide(
            base.shed_q, base.shed_p, out=np.zeros_like(shed_p), where=base.shed_p > 0
        )
        return self.split(p, base, state, shed_p, shed_p * ratio)

    def limited(self, ap: Applied, state: UnitState, since_s: float) -> Applied:
        """A held plan's set-points within what the units can do now."""
        lo, hi = self.limits(state, since_s)
        p = np.clip(self.stacked(ap), lo, hi)
        return self.split(p, ap, state, ap.shed_p, ap.shed_q)

    def stacked(self, ap: Applied) -> np.ndarray:
        """The following units' powers in `ap`, stacked (net, generation-positive)."""
        parts = [f.injection_mw(ap.units[i]) for i, f, _, _ in self._followers]
        return np.concatenate(parts) if parts else np.zeros(0)

    def limits(self, state: UnitState, since_s: float) -> tuple[np.ndarray, np.ndarray]:
        """What the following units can do at this step (stacked as `stacked`)."""
        hold_h = self.hold_s / 3600
        bounds = [
            f.limits(state.units[i], part, hold_h, since_s) for i, f, part, _ in self._followers
        ]
        if not bounds:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([b[0] for b in bounds]), np.concatenate([b[1] for b in bounds])

    def split(self, p: np.ndarray, base: Applied, state: UnitState, shed_p, shed_q) -> Applied:
        """Stacked powers `p` of the following units as applied set-points; the others (DR:
        it cannot act without notice) as in `base`."""
        units = list(base.units)
        for i, f, part, take in self._followers:
            units[i] = f.followed(p[take], base.units[i], state.units[i], part)
        return Applied(tuple(units), shed_p, shed_q)
