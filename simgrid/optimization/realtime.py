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
