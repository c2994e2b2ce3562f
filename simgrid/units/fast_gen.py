"""Fast-ramping generation: commitment with a start-up delay, synchronisation at minimum
output then ramps, minimum up and down times, start cost and marginal cost. The modules at a
bus commit together."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from simgrid.units.base import (
    COL,
    Capacity,
    Follower,
    Key,
    Module,
    Window,
    after_delay,
    at_start,
    command_after_delay,
    held_s,
    lagged,
    later,
    period,
    periods,
    pick,
    previous,
)


@dataclass(frozen=True)
class GenModule(Module):
    """p_min_mw / p_mw when on, ramp_mw_per_min, start_delay_s, min_up_s, min_down_s,
    start_cost, marginal_cost_per_mwh."""

    p_min_mw: float = 0.0
    ramp_mw_per_min: float = math.inf
    start_delay_s: float = 0.0
    min_up_s: float = 0.0
    min_down_s: float = 0.0
    start_cost: float = 0.0
    marginal_cost_per_mwh: float = 0.0

    SCALED = ("p_mw", "capex", "p_min_mw", "ramp_mw_per_min", "start_cost")


@dataclass(frozen=True, eq=False)
class GenData:
    """Fast generators, ratings per module; times in periods of the window."""

    bus: np.ndarray
    p: np.ndarray
    p_min: np.ndarray
    ramp: np.ndarray  # MW per period
    ramp_per_s: np.ndarray  # MW per second
    up: np.ndarray  # min up, periods
    down: np.ndarray  # min down, periods
    start_cost: np.ndarray
    delay_s: np.ndarray
    mc: np.ndarray

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class GenHandles:
    p: np.ndarray  # (G, H)
    u: np.ndarray  # committed
    s: np.ndarray  # start
    w: np.ndarray  # stop


@dataclass(frozen=True, eq=False)
class GenStart:
    """Output and commitment before period 0, and what the state forbids in the window."""

    p0: np.ndarray
    ramp0_s: np.ndarray  # seconds of ramping available before period 0
    u0: np.ndarray
    u_lb: np.ndarray  # (G, H): forced on (min up, pending start)
    u_ub: np.ndarray  # (G, H): forced off (min down)
    s_ub: np.ndarray  # (G, H): start allowed (start-up delay)
    since_s: np.ndarray | None = None  # a planned day: time in state u0 (None: long at rest)


@dataclass
class GenState:
    on: np.ndarray
    p: np.ndarray
    since_s: np.ndarray  # time in the current on/off state
    online_at: np.ndarray  # pending start: when the unit comes online (nan: none)


@dataclass(frozen=True, eq=False)
class GenApplied:
    on: np.ndarray
    p: np.ndarray


@dataclass(frozen=True, eq=False)
class GenPlan:
    p: np.ndarray  # (G, H)
    u: np.ndarray


class FastGen(Follower):
    name = "fast_gen"
    module = GenModule
    types = {
        "fast_gen": (
            Key("p_min_mw"),
            Key("ramp_mw_per_min", unbounded=True),
            Key("start_delay_s"),
            Key("min_up_s"),
            Key("min_down_s"),
            Key("start_cost"),
            Key("marginal_cost_per_mwh"),
        )
    }

    def check(self, m, fail) -> None:
        if m.p_min_mw > m.p_mw:
            raise fail("p_min_mw", f"must not exceed p_mw ({m.p_mw:g})")

    def data(self, modules: Sequence[GenModule], buses, period_s, h) -> GenData:
        return GenData(
            bus=np.array(buses, dtype=int),
            p=pick(modules, "p_mw"),
            p_min=pick(modules, "p_min_mw"),
            ramp=np.minimum(
                pick(modules, "ramp_mw_per_min") * period_s / 60, pick(modules, "p_mw")
            ),
            ramp_per_s=pick(modules, "ramp_mw_per_min") / 60,
            up=np.maximum(periods(pick(modules, "min_up_s"), period_s), 1),
            down=np.maximum(periods(pick(modules, "min_down_s"), period_s), 1),
            start_cost=pick(modules, "start_cost"),
            delay_s=pick(modules, "start_delay_s"),
            mc=pick(modules, "marginal_cost_per_mwh"),
        )

    def define(self, b, u: GenData, cap: Capacity, start: GenStart, w: Window):
        """Commitment with start-up delay (state bounds), synchronisation at minimum output
        then ramps (from the output of the last step in period 0), min up/down, start cost
        and marginal cost."""
        g, h, dt = len(u), w.periods, w.dt_h
        p = b.add_vars((g, h), 0.0, cap.upper(u.p))
        on = b.add_vars((g, h), start.u_lb, start.u_ub, integer=w.committed)
        st = b.add_vars((g, h), 0.0, start.s_ub, integer=w.committed)
        stop = b.add_vars((g, h), 0.0, 1.0, integer=w.committed)
        cap.gated(b, p, u.p, on, on=True)
        cap.gated_floor(b, p, u.p_min, on)
        lt = later(h)
        u0 = at_start(start.u0, h)
        b.add_rows([(1.0, on), (-lt, previous(on)), (-1.0, st), (1.0, stop)], lo=u0, hi=u0)
        b.add_rows([(1.0, st), (1.0, stop)], hi=1.0)
        # period 0 starts now: the unit moves only as far as its ramp allows since the last
        # step; a start synchronises at p_min and ramps from there
        p0 = at_start(start.p0, h)
        ramp = np.repeat(u.ramp[:, COL], h, axis=1)
        ramp[:, 0] = u.ramp_per_s * start.ramp0_s
        up = [(1.0, p), (-lt, previous(p)), (-cap.upper(u.p_min), st)]
        cap.limit(b, up, ramp, h, below=True, extra=p0)
        down = [(-1.0, p), (lt, previous(p)), (-cap.upper(u.p), stop)]
        cap.limit(b, down, ramp, h, below=True, extra=-p0)
        # min up / down: a start in the last `up` periods keeps the unit on (history: bounds)
        for starts, n, sign, rhs in ((st, u.up, -1.0, 0.0), (stop, u.down, 1.0, 1.0)):
            lags = range(int(min(n.max(initial=1), h)))
            terms = [lagged(starts, lag, lag < n[:, COL]) for lag in lags]
            b.add_rows([*terms, (sign, on)], hi=rhs)
        # a start costs the group's start cost; for a chosen size, one module's (a lower
        # bound: the product of a start and a size is not linear, and start costs are small)
        per_start = u.start_cost if cap.chosen else u.start_cost * cap.count
        cost = [(u.mc[:, COL] * dt, p), (per_start[:, COL], st)]
        return GenHandles(p, on, st, stop), cost

    def injections(self, u: GenData, hd: GenHandles):
        return [(u.bus, hd.p, 1.0)]

    def idle_start(self, u: GenData, period_s, h) -> GenStart:
        g = len(u)
        return GenStart(
            p0=np.zeros(g),
            ramp0_s=np.full(g, period_s),
            u0=np.zeros(g),
            u_lb=np.zeros((g, h)),
            u_ub=np.ones((g, h)),
            s_ub=after_delay(u.delay_s, period_s, h),
        )

    def next_start(self, start, x, hd: GenHandles, u, size, w, nxt: GenData, period_s, h, news):
        """Output, commitment and how long each unit has been in it carried (a planned day
        commits integrally: `Window.commitment`), so that min up and down times bind across
        blocks as they bind across dispatch calls. The start-up delay binds at a block's edge
        only where the block begins with `news` (an event the dispatcher learns of when it
        happens); elsewhere the rolling dispatcher decides a start one delay ahead with its
        whole lookahead in view, so an edge on the hour is no boundary of what it knows
        (forbidding starts there would price a blind spot the dispatcher does not have)."""
        on = x[hd.u] > 0.5
        before = np.full(len(u), math.inf) if start.since_s is None else start.since_s
        before = np.where((start.u0 > 0.5) == on[:, -1], before, 0.0)  # in the same state?
        since = held_s(on == on[:, -1:], w.dt_h, before)
        state = GenState(on[:, -1], x[hd.p[:, -1]] * on[:, -1], since, np.full(len(u), np.nan))
        nxt_start = self.window_start(state, nxt, 0.0, period_s, h, period_s)
        s_ub = nxt_start.s_ub if news else np.ones_like(nxt_start.s_ub)
        return replace(nxt_start, s_ub=s_ub, since_s=since)

    def initial(self, u: GenData) -> GenState:
        g = len(u)
        return GenState(np.zeros(g, bool), np.zeros(g), np.full(g, math.inf), np.full(g, np.nan))

    def advance(self, state: GenState, ap: GenApplied, u: GenData, since_s, t_s) -> None:
        on = ap.on
        state.since_s = np.where(on == state.on, state.since_s + since_s, since_s)
        state.on, state.p = on.copy(), ap.p * on
        arrived = state.online_at <= t_s + 1e-9
        state.on = state.on | arrived
        state.since_s = np.where(arrived, 0.0, state.since_s)
        state.online_at = np.where(arrived, np.nan, state.online_at)

    def window_start(self, state: GenState, u: GenData, t_s, period_s, h, since_s) -> GenStart:
        """Commitment bounds from min up/down, start-up delay and pending starts."""
        g, t_idx = len(u), np.arange(h)
        u_lb, u_ub = np.zeros((g, h)), np.ones((g, h))
        s_ub = after_delay(u.delay_s, period_s, h)
        up_left = np.where(state.on, periods(u.up * period_s - state.since_s, period_s), 0)
        down_left = np.where(~state.on, periods(u.down * period_s - state.since_s, period_s), 0)
        u_lb[t_idx[None, :] < up_left[:, None]] = 1.0
        u_ub[t_idx[None, :] < down_left[:, None]] = 0.0
        pending = ~np.isnan(state.online_at)
        j = np.where(pending, periods(np.nan_to_num(state.online_at) - t_s, period_s), 0)
        for k in np.flatnonzero(pending):
            u_ub[k, : int(j[k])] = 0.0
            u_lb[k, int(j[k]) :] = 1.0
            s_ub[k, int(j[k])] = 1.0
        return GenStart(
            p0=state.p,
            ramp0_s=np.full(g, since_s),
            u0=state.on.astype(float),
            u_lb=u_lb,
            u_ub=np.maximum(u_ub, u_lb),
            s_ub=s_ub,
        )

    def issue_commands(self, state: GenState, u: GenData, x, hd: GenHandles, t_s, period_s, h):
        """A start the plan makes after the start-up delay is commanded now."""
        decided = x[hd.s]
        command_after_delay(state.on, state.online_at, u.delay_s, period_s, h, decided, t_s)

    def plan_of(self, x, hd: GenHandles) -> GenPlan:
        return GenPlan(x[hd.p], x[hd.u])

    def plan_zeros(self, u: GenData, h) -> GenPlan:
        return GenPlan(np.zeros((len(u), h)), np.zeros((len(u), h)))

    def at(self, plan: GenPlan, k: int) -> GenApplied:
        on = period(plan.u, k) > 0.5
        return GenApplied(on, period(plan.p, k) * on)

    def idle(self, u: GenData) -> GenApplied:
        return GenApplied(np.zeros(len(u), bool), np.zeros(len(u)))

    def injection_mw(self, ap: GenApplied) -> np.ndarray:
        return ap.p

    def round(self, x, put, lb, hd: GenHandles, start: GenStart, u) -> None:
        """Committed when it produces or must be on; starts and stops from the transitions."""
        put(hd.u, (x[hd.p] > 1e-7) | (lb[hd.u] > 0.5))
        on = x[hd.u]
        before = np.concatenate([start.u0[:, None], on[:, :-1]], axis=1)
        put(hd.s, np.maximum(on - before, 0.0))
        put(hd.w, np.maximum(before - on, 0.0))

    def limits(self, state: GenState, u: GenData, hold_h, since_s):
        """Online units within their ramp since the last step, between p_min and p."""
        reach = u.ramp_per_s * since_s
        lo = np.where(state.on, np.maximum(u.p_min, state.p - reach), 0.0)
        hi = np.where(state.on, np.minimum(u.p, state.p + reach), 0.0)
        return lo, np.maximum(hi, lo)

    def followed(self, p_mw, base, state: GenState, u) -> GenApplied:
        return GenApplied(state.on.copy(), p_mw * state.on)

    def report(self, ap: GenApplied, state, u: GenData):
        n = len(u)
        return ap.p, np.full(n, np.nan), ap.on.astype(float), np.zeros(n)

    def cost_per_mwh(self, m: GenModule) -> float:
        return m.marginal_cost_per_mwh

    def start_cost(self, m: GenModule) -> float:
        return m.start_cost


FAMILY = FastGen()
