"""What Stage-II's units carry between steps, and what that state allows in the next window.

`UnitState` is advanced step by step under the powers the plant applied (`Applied`); at a call
it becomes the window's `InitialState` (energy, output, commitment and DR bounds from minimum
times, delays, notices and budgets). A solved window is a `Plan`; its first period is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simgrid.optimization.blocks import InitialState
from simgrid.optimization.dispatch_model import Handles, UnitData, periods


@dataclass(frozen=True, eq=False)
class Applied:
    """What the units and the shedding do at one step; held until the next step."""

    st_pc: np.ndarray
    st_pd: np.ndarray
    g_on: np.ndarray
    g_p: np.ndarray
    d_d: np.ndarray
    d_pb: np.ndarray
    shed_p: np.ndarray  # per bus
    shed_q: np.ndarray

    @property
    def st_p(self) -> np.ndarray:
        return self.st_pd - self.st_pc

    @classmethod
    def idle(cls, units: UnitData, n_bus: int) -> Applied:
        s, g, d = len(units.storage), len(units.gen), len(units.dr)
        return cls(
            np.zeros(s),
            np.zeros(s),
            np.zeros(g, bool),
            np.zeros(g),
            np.zeros(d),
            np.zeros(d),
            np.zeros(n_bus),
            np.zeros(n_bus),
        )

    def injection_mw(self, units: UnitData, n_bus: int) -> np.ndarray:
        """Per bus, the active power the units inject (generation-positive)."""
        p = np.zeros(n_bus)
        np.add.at(p, units.storage.bus, self.st_p)
        np.add.at(p, units.gen.bus, self.g_p)
        np.add.at(p, units.dr.bus, self.d_d - self.d_pb)
        return p


@dataclass(frozen=True, eq=False)
class Plan:
    """A solved window: its decisions over all periods (for the fallback) and what it assumed."""

    t_s: float
    st_pc: np.ndarray  # (S, H)
    st_pd: np.ndarray
    g_p: np.ndarray
    g_u: np.ndarray
    d_d: np.ndarray
    d_pb: np.ndarray
    shed_p: np.ndarray  # (H, N) conventional + campus shed at each bus
    shed_q: np.ndarray
    demand_mw: float = 0.0  # connected demand the plan's first period assumed (no losses)
    schedule_mw: float = 0.0  # the import schedule it assumed

    @classmethod
    def zeros(cls, units: UnitData, h: int, n_bus: int) -> Plan:
        """A plan of `h` periods doing nothing (the shapes a stored plan must have)."""
        s, g, d = len(units.storage), len(units.gen), len(units.dr)
        z = np.zeros
        return cls(
            0.0,
            z((s, h)),
            z((s, h)),
            z((g, h)),
            z((g, h)),
            z((d, h)),
            z((d, h)),
            z((h, n_bus)),
            z((h, n_bus)),
        )

    def at(self, k: int) -> Applied:
        """Period k's decisions (held when a solve fails; the last period repeats)."""

        def pick(a: np.ndarray, axis: int = 1) -> np.ndarray:
            return np.take(a, min(k, a.shape[axis] - 1), axis=axis)

        on = pick(self.g_u) > 0.5
        return Applied(
            pick(self.st_pc),
            pick(self.st_pd),
            on,
            pick(self.g_p) * on,
            pick(self.d_d),
            pick(self.d_pb),
            pick(self.shed_p, 0),
            pick(self.shed_q, 0),
        )


@dataclass
class UnitState:
    """What the units carry between steps."""

    e: np.ndarray
    g_on: np.ndarray
    g_p: np.ndarray
    g_since_s: np.ndarray  # time in the current on/off state
    g_online_at: np.ndarray  # pending start: when the unit comes online (nan: none)
    d_on: np.ndarray
    d_run_s: np.ndarray
    d_used: np.ndarray
    d_owed: np.ndarray
    d_ready_at: np.ndarray  # notified: when curtailment may start (nan: no notice given)

    @classmethod
    def initial(cls, units: UnitData) -> UnitState:
        """Storage at its target, everything else off and fresh."""
        g, d = len(units.gen), len(units.dr)
        return cls(
            e=units.storage.soc_target * units.storage.e,
            g_on=np.zeros(g, bool),
            g_p=np.zeros(g),
            g_since_s=np.full(g, math.inf),
            g_online_at=np.full(g, np.nan),
            d_on=np.zeros(d, bool),
            d_run_s=np.zeros(d),
            d_used=np.zeros(d),
            d_owed=np.zeros(d),
            d_ready_at=np.full(d, np.nan),
        )

    def advance(self, ap: Applied, units: UnitData, el_s: float, t_s: float) -> None:
        """Move the state forward `el_s` seconds (to `t_s`) under the applied powers."""
        st, dr = units.storage, units.dr
        el_h = el_s / 3600.0
        flow = st.eta_c * ap.st_pc - ap.st_pd / st.eta_d
        self.e = np.clip(self.e + el_h * flow, st.soc_min * st.e, st.soc_max * st.e)
        on = ap.g_on
        self.g_since_s = np.where(on == self.g_on, self.g_since_s + el_s, el_s)
        self.g_on, self.g_p = on.copy(), ap.g_p * on
        arrived = self.g_online_at <= t_s + 1e-9
        self.g_on = self.g_on | arrived
        self.g_since_s = np.where(arrived, 0.0, self.g_since_s)
        self.g_online_at = np.where(arrived, np.nan, self.g_online_at)
        active = ap.d_d > 1e-9
        self.d_run_s = np.where(active, self.d_run_s + el_s, 0.0)
        self.d_on = active
        self.d_used = self.d_used + ap.d_d * el_h
        self.d_owed = np.maximum(self.d_owed + (dr.rebound * ap.d_d - ap.d_pb) * el_h, 0)
        self.d_ready_at = np.where(active, np.nan, self.d_ready_at)  # a notice is used once

    def window_start(
        self,
        units: UnitData,
        t_s: float,
        dt_s: float,
        h: int,
        *,
        el_s: float,
        follow: tuple[float, float],
    ) -> InitialState:
        """The window's initial state: what the units have and what their state forbids."""
        g_u_lb, g_u_ub, g_s_ub = self._commitment_bounds(units, t_s, dt_s, h)
        d_z_ub, d_run_left = self._dr_bounds(units, t_s, dt_s, h)
        st, dr = units.storage, units.dr
        left = np.maximum(dr.energy - self.d_used, 0.0)
        budget = np.divide(left, dr.energy, out=np.ones(len(dr)), where=np.isfinite(dr.energy))
        budget = np.where(dr.energy > 0, budget, 0.0)
        return InitialState(
            follow_lo=follow[0],
            follow_hi=follow[1],
            st_e0=np.divide(self.e, st.e, out=np.zeros(len(st)), where=st.e > 0),
            g_p0=self.g_p,
            g_ramp0_s=np.full(len(units.gen), el_s),
            g_u0=self.g_on.astype(float),
            g_u_lb=g_u_lb,
            g_u_ub=g_u_ub,
            g_s_ub=g_s_ub,
            d_a0=self.d_on.astype(float),
            d_z_ub=d_z_ub,
            d_run_left=d_run_left,
            d_budget=budget,
            d_owed0=self.d_owed,
        )

    def _commitment_bounds(self, units: UnitData, t_s: float, dt_s: float, h: int):
        """Generator commitment bounds from min up/down, start-up delay and pending starts."""
        gen = units.gen
        g = len(gen)
        t_idx = np.arange(h)
        g_u_lb, g_u_ub = np.zeros((g, h)), np.ones((g, h))
        g_s_ub = np.ones((g, h))
        up_left = np.where(self.g_on, periods(gen.up * dt_s - self.g_since_s, dt_s), 0)
        down_left = np.where(~self.g_on, periods(gen.down * dt_s - self.g_since_s, dt_s), 0)
        g_u_lb[t_idx[None, :] < up_left[:, None]] = 1.0
        g_u_ub[t_idx[None, :] < down_left[:, None]] = 0.0
        g_s_ub[t_idx[None, :] < periods(gen.delay_s, dt_s)[:, None]] = 0.0
        pending = ~np.isnan(self.g_online_at)
        j = np.where(pending, periods(np.nan_to_num(self.g_online_at) - t_s, dt_s), 0)
        for k in np.flatnonzero(pending):
            g_u_ub[k, : int(j[k])] = 0.0
            g_u_lb[k, int(j[k]) :] = 1.0
            g_s_ub[k, int(j[k])] = 1.0
        return g_u_lb, np.maximum(g_u_ub, g_u_lb), g_s_ub

    def _dr_bounds(self, units: UnitData, t_s: float, dt_s: float, h: int):
        """DR activation bounds from notification delays, notices given and run time."""
        dr = units.dr
        t_idx = np.arange(h)
        d_z_ub = np.ones((len(dr), h))
        d_z_ub[t_idx[None, :] < periods(dr.notice_s, dt_s)[:, None]] = 0.0
        ready = ~np.isnan(self.d_ready_at)
        jr = np.where(ready, periods(np.nan_to_num(self.d_ready_at) - t_s, dt_s), 0)
        for k in np.flatnonzero(ready):
            d_z_ub[k, max(int(jr[k]), 0) :] = 1.0
        run = np.floor(self.d_run_s / dt_s + 1e-9)
        m = dr.max_on[:, None]
        d_run_left = m - np.minimum(run[:, None], np.maximum(m - t_idx[None, :], 0))
        return d_z_ub, d_run_left

    def issue_commands(
        self, units: UnitData, x: np.ndarray, hd: Handles, t_s: float, dt_s: float, h: int
    ) -> None:
        """Start commands and DR notifications the plan needs now (delays are real)."""
        delay = units.gen.delay_s
        k = periods(delay, dt_s).astype(int)
        for i in range(len(delay)):
            if (
                not self.g_on[i]
                and np.isnan(self.g_online_at[i])
                and 0 < k[i] < h
                and x[hd.gen.s[i, k[i]]] > 0.5
            ):
                self.g_online_at[i] = t_s + delay[i]
        notice = units.dr.notice_s
        kn = periods(notice, dt_s).astype(int)
        for i in range(len(notice)):
            if (
                not self.d_on[i]
                and np.isnan(self.d_ready_at[i])
                and 0 < kn[i] < h
                and x[hd.dr.activate[i, kn[i]]] > 0.5
            ):
                self.d_ready_at[i] = t_s + notice[i]
