"""Campus backup generation run for the grid: the diesel or gas gensets an AI campus keeps for
outages, run in parallel with the feeder to cover a shock (the campus's own on-site
generation). No commitment binaries -- a hall's gensets start within seconds and share the
load -- but a ramp limit, a run budget (fuel and emission permits: US permits allow emergency
engines about 50-100 h a year of non-emergency running, so `energy_mwh` is typically rating x
hours left) and a marginal cost of fuel and emissions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.units.base import (
    COL,
    Capacity,
    Follower,
    Key,
    Module,
    Window,
    at_start,
    later,
    period,
    pick,
    previous,
)


@dataclass(frozen=True)
class BackupGenModule(Module):
    """p_mw, ramp_mw_per_min, energy_mwh (run budget), marginal_cost_per_mwh."""

    ramp_mw_per_min: float = math.inf
    energy_mwh: float = math.inf
    marginal_cost_per_mwh: float = 0.0

    SCALED = ("p_mw", "capex", "ramp_mw_per_min", "energy_mwh")


@dataclass(frozen=True, eq=False)
class BackupGenData:
    bus: np.ndarray
    p: np.ndarray
    ramp: np.ndarray  # MW per period
    ramp_per_s: np.ndarray
    energy: np.ndarray  # run budget, MWh
    mc: np.ndarray

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class BackupGenHandles:
    p: np.ndarray  # (B, H)


@dataclass(frozen=True, eq=False)
class BackupGenStart:
    p0: np.ndarray
    ramp0_s: np.ndarray
    budget: np.ndarray  # fraction of the run budget left
    budget_mwh: np.ndarray | None = None  # or in MWh (a planned day's later blocks)


@dataclass
class BackupGenState:
    p: np.ndarray
    used: np.ndarray  # MWh run so far


@dataclass(frozen=True, eq=False)
class BackupGenApplied:
    p: np.ndarray


@dataclass(frozen=True, eq=False)
class BackupGenPlan:
    p: np.ndarray  # (B, H)


class BackupGen(Follower):
    name = "backup_gen"
    module = BackupGenModule
    types = {
        "backup_gen": (
            Key("ramp_mw_per_min", unbounded=True),
            Key("energy_mwh", unbounded=True),
            Key("marginal_cost_per_mwh"),
        )
    }

    def data(self, modules: Sequence[BackupGenModule], buses, period_s, h) -> BackupGenData:
        p = pick(modules, "p_mw")
        ramp = pick(modules, "ramp_mw_per_min")
        return BackupGenData(
            bus=np.array(buses, dtype=int),
            p=p,
            ramp=np.minimum(ramp * period_s / 60, p),
            ramp_per_s=ramp / 60,
            energy=pick(modules, "energy_mwh"),
            mc=pick(modules, "marginal_cost_per_mwh"),
        )

    def define(self, b, u: BackupGenData, cap: Capacity, start: BackupGenStart, w: Window):
        """Output within the rating, ramps from the output of the last step, the run budget
        left over the window, the marginal cost."""
        n, h, dt = len(u), w.periods, w.dt_h
        p = b.add_vars((n, h), 0.0, cap.upper(u.p))
        if cap.chosen:
            cap.limit(b, [(1.0, p)], u.p, h, below=True)
        lt, p0 = later(h), at_start(start.p0, h)
        ramp = np.repeat(u.ramp[:, COL], h, axis=1)
        ramp[:, 0] = u.ramp_per_s * start.ramp0_s
        cap.limit(b, [(1.0, p), (-lt, previous(p))], ramp, h, below=True, extra=p0)
        cap.limit(b, [(-1.0, p), (lt, previous(p))], ramp, h, below=True, extra=-p0)
        cap.budget(b, p, dt, start.budget * u.energy, start.budget_mwh)
        return BackupGenHandles(p), [(u.mc[:, COL] * dt, p)]

    def injections(self, u: BackupGenData, hd: BackupGenHandles):
        return [(u.bus, hd.p, 1.0)]

    def idle_start(self, u: BackupGenData, period_s, h) -> BackupGenStart:
        n = len(u)
        return BackupGenStart(np.zeros(n), np.full(n, period_s), np.ones(n))

    def next_start(self, start, x, hd: BackupGenHandles, u, size, w, nxt, period_s, h, news):
        """Output carried, the run budget left less what the block ran."""
        left = np.maximum(start.budget_mwh - x[hd.p].sum(axis=1) * w.dt_h, 0.0)
        cap = u.energy * size
        ok = np.isfinite(cap) & (cap > 0)
        frac = np.divide(left, cap, out=start.budget.copy(), where=ok)
        return BackupGenStart(x[hd.p[:, -1]], np.full(len(u), period_s), frac, left)

    def absolute(self, start: BackupGenStart, u: BackupGenData, size) -> BackupGenStart:
        return BackupGenStart(
            start.p0, start.ramp0_s, start.budget, _mwh(start.budget, u.energy, size)
        )

    def initial(self, u: BackupGenData) -> BackupGenState:
        return BackupGenState(np.zeros(len(u)), np.zeros(len(u)))

    def advance(self, state: BackupGenState, ap: BackupGenApplied, u, since_s, t_s) -> None:
        state.used = state.used + ap.p * since_s / 3600.0
        state.p = ap.p.copy()

    def window_start(self, state: BackupGenState, u: BackupGenData, t_s, period_s, h, since_s):
        return BackupGenStart(state.p, np.full(len(u), since_s), _budget_left(state, u))

    def plan_of(self, x, hd: BackupGenHandles) -> BackupGenPlan:
        return BackupGenPlan(x[hd.p])

    def plan_zeros(self, u: BackupGenData, h) -> BackupGenPlan:
        return BackupGenPlan(np.zeros((len(u), h)))

    def at(self, plan: BackupGenPlan, k: int) -> BackupGenApplied:
        return BackupGenApplied(period(plan.p, k))

    def idle(self, u: BackupGenData) -> BackupGenApplied:
        return BackupGenApplied(np.zeros(len(u)))

    def injection_mw(self, ap: BackupGenApplied) -> np.ndarray:
        return ap.p

    def limits(self, state: BackupGenState, u: BackupGenData, hold_h, since_s):
        """Within the ramp since the last step, the rating and the run budget over the hold."""
        reach = u.ramp_per_s * since_s
        room = np.maximum(u.energy - state.used, 0.0) / hold_h
        hi = np.minimum(np.minimum(u.p, state.p + reach), room)
        lo = np.minimum(np.maximum(state.p - reach, 0.0), hi)
        return lo, hi

    def followed(self, p_mw, base, state, u) -> BackupGenApplied:
        return BackupGenApplied(p_mw.copy())

    def report(self, ap: BackupGenApplied, state, u: BackupGenData):
        n = len(u)
        return ap.p, np.full(n, np.nan), (ap.p > 1e-9).astype(float), np.zeros(n)

    def cost_per_mwh(self, m: BackupGenModule) -> float:
        return m.marginal_cost_per_mwh


def _budget_left(state: BackupGenState, u: BackupGenData) -> np.ndarray:
    """The run budget left as a fraction of the unit's (1 for an unlimited one)."""
    left = np.maximum(u.energy - state.used, 0.0)
    frac = np.divide(left, u.energy, out=np.ones(len(u)), where=np.isfinite(u.energy))
    return np.where(u.energy > 0, frac, 0.0)


def _mwh(fraction: np.ndarray, per_module_mwh: np.ndarray, size) -> np.ndarray:
    """A budget's fraction in MWh for units of `size` modules (inf: no budget)."""
    finite = np.isfinite(per_module_mwh)
    return np.where(finite, fraction * np.where(finite, per_module_mwh, 0.0) * size, np.inf)


FAMILY = BackupGen()
