"""Demand response: a curtailable block activated after its notice, at most `max_duration_s`
at a time, within an energy budget, with a rebound owed and paid back later."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from simgrid.units.base import (
    COL,
    INF,
    Capacity,
    Family,
    Key,
    Module,
    Regulariser,
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

# a plan's period that curtails more than this is active (solver noise below it is not)
_ACTIVE_MW = 1e-7


@dataclass(frozen=True)
class DrModule(Module):
    """p_mw (curtailable block), notification_s, max_duration_s, energy_mwh (budget),
    rebound_fraction (energy paid back later), payback_mw (payback rate), cost_per_mwh."""

    notification_s: float = 0.0
    max_duration_s: float = math.inf
    energy_mwh: float = math.inf
    rebound_fraction: float = 0.0
    payback_mw: float = 0.0
    cost_per_mwh: float = 0.0

    SCALED = ("p_mw", "capex", "energy_mwh", "payback_mw")


@dataclass(frozen=True, eq=False)
class DrData:
    """Demand response blocks, per module; times in periods of the window."""

    bus: np.ndarray
    p: np.ndarray
    payback: np.ndarray
    rebound: np.ndarray
    max_on: np.ndarray  # max consecutive active periods
    cost: np.ndarray
    notice_s: np.ndarray
    energy: np.ndarray  # budget, MWh

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class DrHandles:
    curtail: np.ndarray  # (D, H)
    active: np.ndarray
    activate: np.ndarray
    payback: np.ndarray
    owed: np.ndarray


@dataclass(frozen=True, eq=False)
class DrStart:
    a0: np.ndarray  # active before period 0
    z_ub: np.ndarray  # (D, H): activation allowed (notification delay)
    run_left: np.ndarray  # (D, H): active periods allowed in the max_on + 1 periods to t
    budget: np.ndarray  # fraction of the budget left
    owed0: np.ndarray
    budget_mwh: np.ndarray | None = None  # or in MWh (a planned day's later blocks)
    run_s: np.ndarray | None = None  # active without a break until the window (s; None: 0)


@dataclass
class DrState:
    on: np.ndarray
    run_s: np.ndarray
    used: np.ndarray  # MWh curtailed so far
    owed: np.ndarray  # MWh of rebound owed
    ready_at: np.ndarray  # notified: when curtailment may start (nan: no notice given)


@dataclass(frozen=True, eq=False)
class DrApplied:
    curtail: np.ndarray
    payback: np.ndarray


@dataclass(frozen=True, eq=False)
class DrPlan:
    curtail: np.ndarray  # (D, H)
    payback: np.ndarray


class DemandResponse(Family):
    name = "dr"
    module = DrModule
    types = {
        "dr": (
            Key("notification_s"),
            Key("max_duration_s", lo_open=True, unbounded=True),  # 0: a unit that never acts
            Key("energy_mwh", unbounded=True),
            Key("rebound_fraction", hi=1.0),
            Key("payback_mw"),
            Key("cost_per_mwh"),
        )
    }

    def data(self, modules: Sequence[DrModule], buses, period_s, h) -> DrData:
        return DrData(
            bus=np.array(buses, dtype=int),
            p=pick(modules, "p_mw"),
            payback=pick(modules, "payback_mw"),
            rebound=pick(modules, "rebound_fraction"),
            # not capped at the window: a run carried into it counts against the whole of it
            max_on=np.floor(pick(modules, "max_duration_s") / period_s + 1e-9),
            cost=pick(modules, "cost_per_mwh"),
            notice_s=pick(modules, "notification_s"),
            energy=pick(modules, "energy_mwh"),
        )

    def define(self, b, u: DrData, cap: Capacity, start: DrStart, w: Window):
        """Activation after its notice, curtailment up to its block, at most `max_on`
        consecutive periods, an energy budget over the window, and a rebound owed and paid
        back later (owed energy carries the restoration weight)."""
        n, h, dt = len(u), w.periods, w.dt_h
        dd = b.add_vars((n, h), 0.0, cap.upper(u.p))
        active = b.add_vars((n, h), 0.0, 1.0, integer=w.committed)
        activate = b.add_vars((n, h), 0.0, start.z_ub, integer=w.committed)
        pb = b.add_vars((n, h), 0.0, cap.upper(u.payback))
        owed = b.add_vars((n, h), 0.0, INF)
        cap.gated(b, dd, u.p, active, on=True)
        cap.gated(b, pb, u.payback, active, on=False)
        lt = later(h)
        a0 = at_start(start.a0, h)
        b.add_rows([(1.0, active), (-lt, previous(active)), (-1.0, activate)], hi=a0)
        # max duration: of any max_on + 1 consecutive periods at least one is inactive
        lags = range(int(min(u.max_on.max(initial=-1), h - 1)) + 1)
        if len(lags) and n:
            terms = [lagged(active, lag, lag <= u.max_on[:, COL]) for lag in lags]
            b.add_rows(terms, hi=start.run_left)
        # the energy budget left bounds what the whole window curtails
        cap.budget(b, dd, dt, start.budget * u.energy, start.budget_mwh)
        own0 = at_start(start.owed0, h)
        b.add_rows(
            [(1.0, owed), (-lt, previous(owed)), (-dt * u.rebound[:, COL], dd), (dt, pb)],
            lo=own0,
            hi=own0,
        )
        cost = [(u.cost[:, COL] * dt, dd), Regulariser(w.restoration_per_mwh * dt, owed)]
        return DrHandles(dd, active, activate, pb, owed), cost

    def injections(self, u: DrData, hd: DrHandles):
        return [(u.bus, hd.curtail, 1.0), (u.bus, hd.payback, -1.0)]

    def idle_start(self, u: DrData, period_s, h) -> DrStart:
        d = len(u)
        return DrStart(
            a0=np.zeros(d),
            z_ub=after_delay(u.notice_s, period_s, h),
            run_left=_run_left(np.zeros(d), u.max_on, period_s, h),
            budget=np.ones(d),
            owed0=np.zeros(d),
        )

    def next_start(
        self, start: DrStart, x, hd: DrHandles, u: DrData, size, w, nxt, period_s, h, news
    ):
        """Activity and rebound owed carried, the budget left less what the block curtailed,
        and the run time as the plant counts it: every period that curtails at all (a relaxed
        plan's fractional activity would otherwise let a unit curtail part of its block all
        day, where the plant stops it after `max_duration_s`). The notice binds at a block's
        edge only where the block begins with `news`: elsewhere the dispatcher gives it one
        notice ahead with its whole lookahead in view (as a generator's start-up delay,
        simgrid.units.fast_gen)."""
        used = x[hd.curtail].sum(axis=1) * w.dt_h
        left = np.maximum(start.budget_mwh - used, 0.0)
        before = np.zeros(len(u)) if start.run_s is None else start.run_s
        run_s = held_s(x[hd.curtail] > _ACTIVE_MW, w.dt_h, before)
        return DrStart(
            a0=x[hd.active[:, -1]],
            z_ub=after_delay(u.notice_s, period_s, h) if news else np.ones((len(u), h)),
            run_left=_run_left(run_s, nxt.max_on, period_s, h),
            budget=_fraction(left, u.energy * size, start.budget),
            owed0=x[hd.owed[:, -1]],
            budget_mwh=left,
            run_s=run_s,
        )

    def absolute(self, start: DrStart, u: DrData, size) -> DrStart:
        return replace(start, budget_mwh=_mwh(start.budget, u.energy, size))

    def initial(self, u: DrData) -> DrState:
        d = len(u)
        return DrState(np.zeros(d, bool), np.zeros(d), np.zeros(d), np.zeros(d), np.full(d, np.nan))

    def advance(self, state: DrState, ap: DrApplied, u: DrData, since_s, t_s) -> None:
        since_h = since_s / 3600.0
        active = ap.curtail > 1e-9
        state.run_s = np.where(active, state.run_s + since_s, 0.0)
        state.on = active
        state.used = state.used + ap.curtail * since_h
        state.owed = np.maximum(state.owed + (u.rebound * ap.curtail - ap.payback) * since_h, 0)
        state.ready_at = np.where(active, np.nan, state.ready_at)  # a notice is used once

    def window_start(self, state: DrState, u: DrData, t_s, period_s, h, since_s) -> DrStart:
        """Activation bounds from notification delays, notices given and run time; the
        budget left as a fraction of the unit's."""
        z_ub = after_delay(u.notice_s, period_s, h)
        ready = ~np.isnan(state.ready_at)
        jr = np.where(ready, periods(np.nan_to_num(state.ready_at) - t_s, period_s), 0)
        for k in np.flatnonzero(ready):
            z_ub[k, max(int(jr[k]), 0) :] = 1.0
        run_left = _run_left(state.run_s, u.max_on, period_s, h)
        left = np.maximum(u.energy - state.used, 0.0)
        budget = np.divide(left, u.energy, out=np.ones(len(u)), where=np.isfinite(u.energy))
        budget = np.where(u.energy > 0, budget, 0.0)
        return DrStart(
            state.on.astype(float), z_ub, run_left, budget, state.owed, run_s=state.run_s
        )

    def issue_commands(self, state: DrState, u: DrData, x, hd: DrHandles, t_s, period_s, h):
        """An activation the plan makes after the notice is notified now."""
        decided = x[hd.activate]
        command_after_delay(state.on, state.ready_at, u.notice_s, period_s, h, decided, t_s)

    def plan_of(self, x, hd: DrHandles) -> DrPlan:
        return DrPlan(x[hd.curtail], x[hd.payback])

    def plan_zeros(self, u: DrData, h) -> DrPlan:
        return DrPlan(np.zeros((len(u), h)), np.zeros((len(u), h)))

    def at(self, plan: DrPlan, k: int) -> DrApplied:
        return DrApplied(period(plan.curtail, k), period(plan.payback, k))

    def idle(self, u: DrData) -> DrApplied:
        return DrApplied(np.zeros(len(u)), np.zeros(len(u)))

    def injection_mw(self, ap: DrApplied) -> np.ndarray:
        return ap.curtail - ap.payback

    def round(self, x, put, lb, hd: DrHandles, start: DrStart, u) -> None:
        """Active when it curtails; activations from the off -> on transitions."""
        put(hd.active, x[hd.curtail] > _ACTIVE_MW)
        before = np.concatenate([start.a0[:, None], x[hd.active][:, :-1]], axis=1)
        put(hd.activate, np.maximum(x[hd.active] - before, 0.0))

    def report(self, ap: DrApplied, state, u: DrData):
        n = len(u)
        return ap.curtail - ap.payback, np.full(n, np.nan), ap.curtail > 1e-9, ap.curtail

    def cost_per_mwh(self, m: DrModule) -> float:
        return m.cost_per_mwh


def _run_left(run_s: np.ndarray, max_on: np.ndarray, period_s: float, h: int) -> np.ndarray:
    """(D, H): active periods allowed in the `max_on` + 1 periods to each t, after `run_s`
    seconds active without a break until the window (those before it count first)."""
    run = np.floor(np.asarray(run_s, float) / period_s + 1e-9)
    m = max_on[:, None]
    return m - np.minimum(run[:, None], np.maximum(m - np.arange(h)[None, :], 0))


def _fraction(mwh: np.ndarray, cap_mwh: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
    """MWh as a fraction of a unit's budget (`otherwise` where it has none or no size)."""
    ok = np.isfinite(cap_mwh) & (cap_mwh > 0)
    return np.divide(mwh, cap_mwh, out=np.asarray(otherwise, float).copy(), where=ok)


def _mwh(fraction: np.ndarray, per_module_mwh: np.ndarray, size) -> np.ndarray:
    """A budget's fraction in MWh for units of `size` modules (inf: no budget)."""
    finite = np.isfinite(per_module_mwh)
    return np.where(finite, fraction * np.where(finite, per_module_mwh, 0.0) * size, np.inf)


FAMILY = DemandResponse()
