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

Limits (`Guard`): what the units are set to must not push a bus outside the network's voltage
limits or a line past its rating (each aimed at a margin inside), which nobody checks between
calls otherwise. Around the last AC solution (what each bus drew, voltages, flows and
loadings), the network model's sensitivities predict the step; a unit whose set-point pushes
a violated bus or line further (its power measured from the least it can do: idle, or its
floor) is scaled back towards that by the fraction that clears what it causes; when
following, what it no longer absorbs goes to the units that do not harm, then upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simgrid.network import lower_end_pu
from simgrid.optimization.dispatch_model import UnitData
from simgrid.optimization.dispatch_window import VoltageLimits
from simgrid.optimization.lindistflow import Response, Sensitivity
from simgrid.optimization.state import Applied, Plan, UnitState
from simgrid.powerflow import net_demand
from simgrid.types import GridState
from simgrid.units import FAMILIES
from simgrid.units.base import Follower

_EPS = 1e-12
_BISECTIONS = 30  # of the scale-back fraction: 1e-9 of the move
_ROUNDS = 2  # scale back, hand what is no longer absorbed to the others, check again
# the guard keeps lines this far (percentage points) inside their rating: its sensitivities
# predict the AC flow to a few kW, and a guard aiming at the rating itself left the AC a hair
# over it (100.0x %) for minutes on end
_LOADING_MARGIN = 0.5
# and buses this far (pu) inside their voltage limits, for the same reason (aimed at the limit,
# the AC landed up to 0.0003 pu outside it)
_VOLTAGE_MARGIN_PU = 0.002


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


@dataclass(frozen=True, eq=False)
class Around:
    """A step predicted around the last AC solution: what stays fixed while the following
    units' powers `p` (stacked) are chosen, and how the network responds."""

    sens: Response  # at the last solution
    bus: np.ndarray  # (U,) bus of each following unit
    load: tuple  # (load P, load Q, fraction kept by protection, shed P, shed Q) per bus
    other_mw: np.ndarray  # per bus: the other units' injection
    last_net: tuple  # what each bus drew at the last solution (MW, Mvar)
    last_v2: np.ndarray
    last_flow_mw: np.ndarray
    q2: np.ndarray  # per line: the reactive part of the last loading, squared (MVA^2)
    s_rated_mva: np.ndarray  # per line: 100 % loading at 1 pu (MVA)
    line_ends: tuple  # (from, to) bus positions per line
    bus_ok: np.ndarray
    line_ok: np.ndarray

    def predict(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voltages (pu), active flows (MW, from end) and loadings (%) at the followers'
        powers `p`."""
        n = len(self.last_v2)
        inj = self.other_mw + np.bincount(self.bus, p, minlength=n)
        net_p, net_q = net_demand(*self.load, inj, 0.0)
        dp, dq = self.last_net[0] - net_p, self.last_net[1] - net_q
        v2 = self.last_v2 + self.sens.v2(dp, dq)
        flow = self.last_flow_mw + self.sens.flow(dp)
        vm = np.sqrt(np.maximum(v2, 0.0))
        # the rating is a current: in MVA at the predicted voltage of the line's lower end
        # (at the last voltage, a step whose voltage fell left a line 0.8 % over its rating)
        s_line = self.s_rated_mva * lower_end_pu(vm, *self.line_ends)
        return vm, flow, 100 * np.sqrt(flow**2 + self.q2) / s_line


class Guard:
    """Voltage limits and line ratings at the set-points between calls (see the module's
    docstring) for the following units at `bus`, by the network model `net`."""

    def __init__(self, net, limits: VoltageLimits, max_loading_percent: float, bus) -> None:
        self.net = net
        self.v_min_pu, self.v_max_pu = replace(
            limits, margin_pu=limits.margin_pu + _VOLTAGE_MARGIN_PU
        ).band_pu
        self.target_loading = max_loading_percent - _LOADING_MARGIN
        self.bus = np.asarray(bus, dtype=int)
        self._sens: dict[bytes, Sensitivity] = {}  # per topology

    def around(self, st: GridState, others_mw: np.ndarray, shed_p, shed_q) -> Around | None:
        """The step as seen from the last AC solution (None: nothing solved to predict from)."""
        if st.last_vm_pu is None or st.last_net_p_mw is None or st.last_line_p_mw is None:
            return None
        key = st.line_in_service.tobytes()
        if key not in self._sens:
            self._sens[key] = self.net.sensitivity(st.line_in_service)
        sens = self._sens[key]
        live = st.energised.astype(float)
        kept = 1.0 if st.uvls_fraction is None else 1.0 - st.uvls_fraction
        vm = st.last_vm_pu
        s_line = sens.s_rated_mva * lower_end_pu(vm, sens.line_from, sens.line_to)
        s_last = np.nan_to_num(st.last_loading_percent) / 100 * s_line
        flow = np.nan_to_num(st.last_line_p_mw)
        return Around(
            sens.at(vm, flow),
            self.bus,
            (st.demand_p_mw * live, st.demand_q_mvar * live, kept, shed_p * live, shed_q * live),
            others_mw * live,
            (st.last_net_p_mw, st.last_net_q_mvar),
            np.nan_to_num(vm) ** 2,
            flow,
            np.maximum(s_last**2 - flow**2, 0.0),
            sens.s_rated_mva,
            (sens.line_from, sens.line_to),
            np.isfinite(vm) & st.energised,
            st.line_in_service & np.isfinite(st.last_loading_percent),
        )

    def excess(self, at: Around, p: np.ndarray):
        """Per bus below and above its limits (pu), per line over its rating (fraction), and
        the lines' flows (MW)."""
        vm, flow, loading = at.predict(p)
        under = np.where(at.bus_ok, np.maximum(self.v_min_pu - vm, 0.0), 0.0)
        over = np.where(at.bus_ok, np.maximum(vm - self.v_max_pu, 0.0), 0.0)
        hot = np.where(at.line_ok, np.maximum(loading - self.target_loading, 0.0) / 100, 0.0)
        return under, over, hot, flow

    def harmful(self, at: Around, p: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """The units whose power (from `floor`) pushes a violated bus or line further."""
        under, over, hot, flow = self.excess(at, p)
        away = p - floor
        dv = at.sens.v2_columns(self.bus) * away  # (N, U): each unit's raise of each V^2
        worse = (dv[under > 0] < -_EPS).any(axis=0) | (dv[over > 0] > _EPS).any(axis=0)
        up = at.sens.flow_columns(self.bus)[hot > 0] * away  # (hot lines, U): flow change
        return worse | (np.sign(flow[hot > 0])[:, None] * up > _EPS).any(axis=0)

    def scale_back(self, at: Around, p: np.ndarray, floor: np.ndarray):
        """`p` with harmful units moved towards `floor` until the violations are down to what
        they would be without them: the unit that clears most per MW first, each as little
        as it must (which curtails the least power); and which units moved."""
        total = lambda q: sum(float(x.sum()) for x in self.excess(at, q)[:3])  # noqa: E731
        now = total(p)
        bad = self.harmful(at, p, floor) if now > _EPS else np.zeros(len(p), bool)
        if not bad.any():
            return p, bad
        at_least = total(np.where(bad, floor, p)) + 1e-9
        gain = np.zeros(len(p))
        for u in np.flatnonzero(bad):
            gain[u] = (now - total(np.where(np.arange(len(p)) == u, floor, p))) / abs(
                p[u] - floor[u]
            )
        q = p.copy()
        for u in sorted(np.flatnonzero(bad), key=lambda u: -gain[u]):
            if total(q) <= at_least:
                break
            q[u] = floor[u]
            if total(q) > at_least:
                continue  # all of it, and the next one too
            kept_lo, kept_hi = 0.0, 1.0  # the fraction of its move it keeps
            for _ in range(_BISECTIONS):
                mid = (kept_lo + kept_hi) / 2
                q[u] = floor[u] + mid * (p[u] - floor[u])
                kept_lo, kept_hi = (mid, kept_hi) if total(q) <= at_least else (kept_lo, mid)
            q[u] = floor[u] + kept_lo * (p[u] - floor[u])
        return q, q != p

    def limit(self, at: Around, p, lo, hi, reshare: bool) -> np.ndarray:
        """The followers' powers `p` within the limits (see the module's docstring); with
        `reshare` what the harmful units no longer absorb goes to the others."""
        floor = np.clip(0.0, lo, hi)
        frozen = np.zeros(len(p), bool)
        for _ in range(_ROUNDS):
            q, bad = self.scale_back(at, p, floor)
            if not bad.any() or not reshare:
                return q
            frozen |= bad
            p, _ = share(float((p - q).sum()), q, np.where(frozen, q, lo), np.where(frozen, q, hi))
        return self.scale_back(at, p, floor)[0]


class RealTimeLayer:
    """The plant's controllers between Stage-II calls: `follow` (units absorb the residual
    deviation, see `follow` above) or `hold` (the plan's set-points within what the units can
    do). The units that follow are those of the families that do (simgrid.units), stacked in
    the registry's order; a set-point holds for `hold_s`, the plant's power-flow step."""

    def __init__(
        self,
        ud: UnitData,
        hold_s: float,
        mode: str,
        net=None,
        limits: VoltageLimits | None = None,
        max_loading_percent: float = 100.0,
    ) -> None:
        self.ud, self.hold_s, self.mode = ud, hold_s, mode
        taken, k = [], 0
        for i, (f, part) in enumerate(zip(FAMILIES, ud.parts, strict=True)):
            if isinstance(f, Follower):
                taken.append((i, f, part, slice(k, k + len(part))))
                k += len(part)
        self._followers = tuple(taken)
        self.n_bus = 0 if net is None else net.buses.n_bus
        bus = [part.bus for _, _, part, _ in taken]
        self.guard = None  # no network model: no limits between calls
        if net is not None and limits is not None:
            stacked = np.concatenate(bus) if bus else np.zeros(0, int)
            self.guard = Guard(net, limits, max_loading_percent, stacked)

    def setpoints(
        self, st: GridState, base: Applied, plan: Plan | None, state: UnitState, since_s: float
    ) -> Applied:
        """The set-points at this step: `base` (the plan's first period, or what was applied)
        moved to absorb what the plan did not foresee (`follow`, with a plan), or held; within
        the network's limits (`Guard`)."""
        lo, hi = self.limits(state, since_s)
        planned = self.stacked(base)
        shed_p = base.shed_p
        following = self.mode == "follow" and plan is not None
        if following:
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
        shed_q = shed_p * ratio
        p = self.within_limits(st, p, lo, hi, base, shed_p, shed_q, reshare=following)
        return self.split(p, base, state, shed_p, shed_q)

    def limited(self, st: GridState, ap: Applied, state: UnitState, since_s: float) -> Applied:
        """A held plan's set-points within what the units can do now and the limits."""
        lo, hi = self.limits(state, since_s)
        p = np.clip(self.stacked(ap), lo, hi)
        p = self.within_limits(st, p, lo, hi, ap, ap.shed_p, ap.shed_q, reshare=False)
        return self.split(p, ap, state, ap.shed_p, ap.shed_q)

    def within_limits(self, st, p, lo, hi, base: Applied, shed_p, shed_q, reshare: bool):
        """The followers' powers `p` after the guard (unchanged without one, or without an
        AC solution to predict from)."""
        if self.guard is None or len(p) == 0:
            return p
        others = np.zeros(self.n_bus)
        taken = {i for i, _, _, _ in self._followers}
        for i, (f, part) in enumerate(zip(FAMILIES, self.ud.parts, strict=True)):
            if i not in taken:
                np.add.at(others, part.bus, f.injection_mw(base.units[i]))
        at = self.guard.around(st, others, shed_p, shed_q)
        return p if at is None else self.guard.limit(at, p, lo, hi, reshare)

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
