"""Stage-II rolling MILP dispatcher: the co-simulation's dispatch policy and the units' plant.

At each call: advance the units' state over the time since the last step with the powers that
were applied, measure the network's losses (an AC load flow of the dispatcher's own network
model at the measured demand and the applied set-points), forecast the lookahead
(conventional load from the day-ahead profile, AI load by persistence of its current ramp or
perfect foresight), turn state into bounds, update the persistent HiGHS model in place and
solve, then apply the first period's decisions. The losses enter LinDistFlow as demand at
each line's receiving end, so the import the MILP targets includes the losses the plant has;
if the losses at the planned point differ from those assumed, the window is solved again
with them (a fixed point, at most `LOSS_ITERATIONS` more solves).
Between calls, at every other step, `follow` is the plant's real-time layer (see realtime.py).
A failed, infeasible or timed-out solve falls back to the last feasible plan, then to shedding
the AI excess at VoLL; the status is recorded and the run goes on.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from simgrid.aiload import campus_loads_mw
from simgrid.config import DispatchConfig, UpstreamConfig
from simgrid.fcm import STORAGE, Unit, UnitType
from simgrid.network import Network
from simgrid.optimization import realtime
from simgrid.optimization.builder import ArrayBuilder, Milp, PyomoBuilder, SolveStatus
from simgrid.optimization.dispatch_model import (
    Handles,
    NetworkData,
    UnitData,
    Weights,
    Window,
    assemble,
)
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.types import Campus, GridState, SetPoints, UnitReport

log = logging.getLogger(__name__)

# One thread and a fixed seed: reproducible solves. The sub-MIP heuristics (RENS, RINS, root
# reduced cost) are off: on this model's hard windows they took most of the time (e.g. 426 ->
# 228 ms) while the root LP bound was already at or near the optimum.
BASE_HIGHS_OPTIONS = {"output_flag": False, "threads": 1, "random_seed": 0}
HIGHS_OPTIONS = {
    **BASE_HIGHS_OPTIONS,
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_root_reduced_cost": False,
}

Forecaster = Callable[[np.ndarray], np.ndarray]  # times (H,) -> AI load (H, campus)


INF_MW = 1e9


def new_highs(**options):
    """A Highs object with simgrid's options: every one in the process must agree on `threads`
    (HiGHS cannot change it after the first solve)."""
    import highspy

    # HiGHS prints a banner from C++ when constructed, before any option can silence it
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    for key, value in {**HIGHS_OPTIONS, **options}.items():
        h.setOptionValue(key, value)
    return h


def run_within(h, time_limit_s: float) -> None:
    """Run a Highs object for at most `time_limit_s` of this run.

    HiGHS compares `time_limit` with the object's cumulative run clock (`getRunTime`), so a
    persistent model given a fixed limit would, once its solves add up to it, stop every later
    solve at once (this made long runs slow down day after day); the limit is set from the
    clock before each run instead.
    """
    h.setOptionValue("time_limit", h.getRunTime() + time_limit_s)
    h.run()


def _highs_lp(milp: Milp):
    """The MILP as a highspy model (column-wise matrix)."""
    import highspy

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = milp.A.shape[1], milp.A.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = milp.cost, milp.lb, milp.ub
    lp.row_lower_, lp.row_upper_ = milp.row_lo, milp.row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = milp.A.indptr
    lp.a_matrix_.index_ = milp.A.indices
    lp.a_matrix_.value_ = milp.A.data
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
        for i in milp.integer
    ]
    return lp


def marginal_loss_factors(nw: Network, p_mw: np.ndarray, q_mvar: np.ndarray) -> np.ndarray:
    """d(losses)/d(active injection) per bus at an operating point, by the AC load flow.

    A central difference of 1e-3 of the load (at least 1 kW) per bus; 0 at the slack and where
    the perturbed load flow has no solution.
    """
    engine = PowerFlowEngine(nw)
    delta = max(1e-3 * float(p_mw.sum()), 1e-3)
    mlf = np.zeros(nw.n_bus)
    for b in range(nw.n_bus):
        if b == nw.slack_bus:
            continue
        e = np.zeros(nw.n_bus)
        e[b] = delta
        up, down = engine.solve(p_mw - e, q_mvar), engine.solve(p_mw + e, q_mvar)
        if up.converged and down.converged:
            mlf[b] = (up.losses_mw - down.losses_mw) / (2 * delta)
    return mlf


def network_data(
    nw: Network,
    max_loading_percent: float,
    campuses: Sequence[Campus] = (),
    mlf: np.ndarray | None = None,
) -> NetworkData:
    vb2 = nw.vn_kv[nw.line_from] ** 2
    s_max = np.sqrt(3) * nw.vn_kv[nw.line_from] * nw.line_max_i_ka * max_loading_percent / 100
    q_per_p = np.divide(
        nw.base_load_q_mvar, nw.base_load_p_mw, out=np.zeros(nw.n_bus), where=nw.base_load_p_mw > 0
    )
    return NetworkData(
        nw.n_bus,
        nw.slack_bus,
        nw.line_from,
        nw.line_to,
        2 * nw.line_r_ohm / vb2,
        2 * nw.line_x_ohm / vb2,
        s_max,
        q_per_p,
        np.array([c.bus for c in campuses], dtype=int),
        np.array([c.q_per_p for c in campuses]),
        np.zeros(nw.n_bus) if mlf is None else mlf,
    )


def _periods(seconds: np.ndarray | float, dt_s: float) -> np.ndarray:
    return np.ceil(np.asarray(seconds, dtype=float) / dt_s - 1e-9)


def unit_data(units: Sequence[Unit], dt_s: float, horizon: int) -> UnitData:
    def pick(types, attr):
        return np.array([getattr(u.module, attr) for u in units if u.type in types], float)

    def bus(types):
        return np.array([u.bus for u in units if u.type in types], dtype=int)

    st, g, dr = STORAGE, (UnitType.FAST_GEN,), (UnitType.DR,)
    e = pick(st, "e_mwh")
    return UnitData(
        st_bus=bus(st),
        st_p=pick(st, "p_mw"),
        st_emin=pick(st, "soc_min") * e,
        st_emax=pick(st, "soc_max") * e,
        st_target=pick(st, "soc_target") * e,
        st_eta_c=pick(st, "eta_charge"),
        st_eta_d=pick(st, "eta_discharge"),
        st_pblock=pick(st, "p_min_block_mw"),
        st_deg_cost=pick(st, "degradation_cost_per_mwh"),
        g_bus=bus(g),
        g_p=pick(g, "p_mw"),
        g_pmin=pick(g, "p_min_mw"),
        g_ramp=np.minimum(pick(g, "ramp_mw_per_min") * dt_s / 60, pick(g, "p_mw")),
        g_ramp_per_s=pick(g, "ramp_mw_per_min") / 60,
        g_up=np.maximum(_periods(pick(g, "min_up_s"), dt_s), 1),
        g_down=np.maximum(_periods(pick(g, "min_down_s"), dt_s), 1),
        g_start_cost=pick(g, "start_cost"),
        g_delay_s=pick(g, "start_delay_s"),
        g_mc=pick(g, "marginal_cost_per_mwh"),
        d_bus=bus(dr),
        d_p=pick(dr, "p_mw"),
        d_payback=pick(dr, "payback_mw"),
        d_rebound=pick(dr, "rebound_fraction"),
        d_max_on=np.minimum(np.floor(pick(dr, "max_duration_s") / dt_s + 1e-9), horizon + 1),
        d_cost=pick(dr, "cost_per_mwh"),
        d_notice_s=pick(dr, "notification_s"),
        d_energy_mwh=pick(dr, "energy_mwh"),
    )


@dataclass
class _State:
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


@dataclass(frozen=True, eq=False)
class _Applied:
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


@dataclass(frozen=True, eq=False)
class _Plan:
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

    def first(self) -> _Applied:
        return _Applied(
            self.st_pc[:, 0],
            self.st_pd[:, 0],
            self.g_u[:, 0] > 0.5,
            self.g_p[:, 0] * (self.g_u[:, 0] > 0.5),
            self.d_d[:, 0],
            self.d_pb[:, 0],
            self.shed_p[0],
            self.shed_q[0],
        )


@dataclass(frozen=True, eq=False)
class _Losses:
    """Network losses measured at a point, as demand at each line's receiving bus (MW, Mvar),
    and the injections (units and shedding, per bus) of that point."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    injection_mw: np.ndarray

    @property
    def total_mw(self) -> float:
        return float(self.p_mw.sum())


LOSS_ITERATIONS = 2  # extra solves when the losses at the planned point differ
LOSS_TOL = 5e-4  # relative to the feeder's demand: losses agreeing this well are kept


class RollingDispatcher:
    """The Stage-II policy. `backend` "highs" (persistent) or "pyomo" (rebuilt every call);
    `reference` (pyomo only) solves the straightforward formulation used as the benchmark
    baseline. `step_s` is the plant's power-flow step: how long a real-time set-point holds."""

    def __init__(
        self,
        network: Network,
        profile: LoadProfile,
        campuses: Sequence[Campus],
        units: Sequence[Unit],
        cfg: DispatchConfig,
        upstream: UpstreamConfig,
        *,
        v_min_pu: float,
        v_max_pu: float,
        max_loading_percent: float = 100.0,
        forecaster: Forecaster | None = None,
        backend: str = "highs",
        reference: bool = False,
        step_s: float = 60.0,
    ) -> None:
        if reference and backend != "pyomo":
            raise ValueError("the reference formulation is the pyomo rebuild (backend='pyomo')")
        self.cfg, self.upstream, self.backend = cfg, upstream, backend
        # reference: the straightforward formulation of the same model, for benchmarks:
        # binaries in every period and HiGHS' default options (one thread, fixed seed)
        self.integer_periods = cfg.horizon_steps if reference else cfg.integer_periods
        self.highs_options = BASE_HIGHS_OPTIONS if reference else HIGHS_OPTIONS
        self.network, self.profile = network, profile
        self.campuses = tuple(campuses)
        self._campus_profiles = [campus_profile(c) for c in self.campuses]
        self._campus_bus = np.array([c.bus for c in self.campuses], dtype=int)
        self._campus_q = np.array([c.q_per_p for c in self.campuses])
        self.units = tuple(units)
        self.unit_names = tuple(u.name for u in self.units)
        self.dt_s = cfg.redispatch_s
        self.step_s = step_s
        self.h = cfg.horizon_steps
        # loss sensitivities at the feeder's peak with its campuses at base utilisation
        ref_p = network.base_load_p_mw + self._at_buses(
            np.array([c.base_utilisation * c.p_nom_mw for c in self.campuses])
        )
        ref_q = network.base_load_q_mvar + self._at_buses(
            np.array([c.base_utilisation * c.p_nom_mw * c.q_per_p for c in self.campuses])
        )
        mlf = marginal_loss_factors(network, ref_p, ref_q)
        self.net = network_data(network, max_loading_percent, self.campuses, mlf)
        self.ud = unit_data(self.units, self.dt_s, self.h)
        self.weights = Weights(
            cfg.voll_per_mwh,
            cfg.imbalance_per_mwh,
            cfg.voltage_per_pu_h,
            cfg.restoration_per_mwh,
        )
        margin = cfg.voltage_margin_pu  # LinDistFlow is optimistic: keep a margin
        self.v2 = ((v_min_pu + margin) ** 2, (v_max_pu - margin) ** 2)
        self.forecaster = forecaster
        self._kinds = [u.type for u in self.units]
        self._pf = PowerFlowEngine(network)  # the dispatcher's own model, for its losses
        ud = self.ud
        self.state = _State(
            e=ud.st_target.copy(),
            g_on=np.zeros(len(ud.g_bus), bool),
            g_p=np.zeros(len(ud.g_bus)),
            g_since_s=np.full(len(ud.g_bus), math.inf),
            g_online_at=np.full(len(ud.g_bus), np.nan),
            d_on=np.zeros(len(ud.d_bus), bool),
            d_run_s=np.zeros(len(ud.d_bus)),
            d_used=np.zeros(len(ud.d_bus)),
            d_owed=np.zeros(len(ud.d_bus)),
            d_ready_at=np.full(len(ud.d_bus), np.nan),
        )
        self._plan: _Plan | None = None
        self._applied = self._idle(network.n_bus)
        self._t_step: float | None = None
        self._el_s = 0.0  # time since the previous step
        self._ai_prev: tuple[float, np.ndarray] | None = None
        self._highs = None
        self._lp = None
        self.lp_first = True  # try the hot-started LP relaxation before the MILP
        self.lp_accepted = 0
        self.lp_dives = 0  # of which after fixing the storage modes (within the MIP gap)
        self.loss_resolves = 0
        self.step_wall_s: list[float] = []
        self.solver_s: list[float] = []
        self.costs: list[float] = []

    def _idle(self, n_bus: int) -> _Applied:
        ud = self.ud
        z = [np.zeros(len(b)) for b in (ud.st_bus, ud.st_bus)]
        return _Applied(
            *z,
            np.zeros(len(ud.g_bus), bool),
            np.zeros(len(ud.g_bus)),
            np.zeros(len(ud.d_bus)),
            np.zeros(len(ud.d_bus)),
            np.zeros(n_bus),
            np.zeros(n_bus),
        )

    # ---- state ----------------------------------------------------------------------------
    def _advance(self, t_s: float) -> None:
        """Move the state to t_s under the powers applied at the previous step."""
        s, ud, ap = self.state, self.ud, self._applied
        if self._t_step is None:
            self._t_step = t_s
            return
        el_s = t_s - self._t_step
        el_h = el_s / 3600.0
        flow = ud.st_eta_c * ap.st_pc - ap.st_pd / ud.st_eta_d
        s.e = np.clip(s.e + el_h * flow, ud.st_emin, ud.st_emax)
        on = ap.g_on
        s.g_since_s = np.where(on == s.g_on, s.g_since_s + el_s, el_s)
        s.g_on, s.g_p = on.copy(), ap.g_p * on
        arrived = s.g_online_at <= t_s + 1e-9
        s.g_on = s.g_on | arrived
        s.g_since_s = np.where(arrived, 0.0, s.g_since_s)
        s.g_online_at = np.where(arrived, np.nan, s.g_online_at)
        active = ap.d_d > 1e-9
        s.d_run_s = np.where(active, s.d_run_s + el_s, 0.0)
        s.d_on = active
        s.d_used = s.d_used + ap.d_d * el_h
        s.d_owed = np.maximum(s.d_owed + (ud.d_rebound * ap.d_d - ap.d_pb) * el_h, 0)
        s.d_ready_at = np.where(active, np.nan, s.d_ready_at)  # a notice is used once
        self._t_step, self._el_s = t_s, el_s

    # ---- losses ---------------------------------------------------------------------------
    def _losses(self, st: GridState, ap: _Applied) -> _Losses | None:
        """Line losses of the AC load flow at the measured demand and set-points `ap`, as
        demand at each line's receiving bus (None: no solution at that point)."""
        nw, live = self.network, st.energised
        self._pf.set_line_status(st.line_in_service)
        inj = self._injection(ap)
        kept = st.connected()
        res = self._pf.solve(
            st.demand_p_mw * kept - ap.shed_p - inj * live, st.demand_q_mvar * kept - ap.shed_q
        )
        if not res.converged:
            return None
        recv = np.where(res.line_p_from_mw >= 0, nw.line_to, nw.line_from)
        return _Losses(
            np.bincount(recv, res.line_loss_mw, minlength=nw.n_bus) * live,
            np.bincount(recv, res.line_loss_mvar, minlength=nw.n_bus) * live,
            inj * live + ap.shed_p,
        )

    # ---- forecast and window ----------------------------------------------------------------
    def _ai_forecast(self, st: GridState, times: np.ndarray) -> np.ndarray:
        if self.forecaster is not None:
            out = self.forecaster(times)
            out[0] = st.ai_load_mw
            return out
        slope = np.zeros_like(st.ai_load_mw)
        if self._ai_prev is not None and st.t_s > self._ai_prev[0]:
            slope = (st.ai_load_mw - self._ai_prev[1]) / (st.t_s - self._ai_prev[0])
        # persistence of the current ramp for one period, then held (steps are not ramps)
        ahead = np.minimum(times - st.t_s, self.dt_s)[:, None]
        p_nom = np.array([c.p_nom_mw for c in self.campuses])
        return np.clip(st.ai_load_mw + slope * ahead, 0.0, p_nom)

    def _window(self, st: GridState, losses: _Losses | None) -> Window:
        nw, ud, s, h, dt_s = self.network, self.ud, self.state, self.h, self.dt_s
        times = st.t_s + dt_s * np.arange(h)
        f = self.profile.at(times)[:, None]
        ai = self._ai_forecast(st, times)
        ai[0] = st.ai_load_mw
        conv_p = nw.base_load_p_mw * f
        conv_q = nw.base_load_q_mvar * f
        conv_p[0] = st.demand_p_mw - self._at_buses(st.ai_load_mw)  # measured now
        conv_q[0] = st.demand_q_mvar - self._at_buses(st.ai_load_mw * self._campus_q)
        # what protection disconnected stays disconnected through the window (persistence)
        kept = st.connected()
        live = st.energised
        conv_p, conv_q = conv_p * kept, conv_q * kept
        ai = ai * kept[self._campus_bus]
        dp = conv_p + np.stack([self._at_buses(a) for a in ai])
        dq = conv_q + np.stack([self._at_buses(a * self._campus_q) for a in ai])
        if losses is not None:
            # losses follow the square of the load through the lookahead
            grow = (dp.sum(axis=1) / max(dp[0].sum(), 1e-9))[:, None] ** 2
            dp = dp + grow * losses.p_mw
            dq = dq + grow * losses.q_mvar
            # the marginal losses at the slack are counted from the measured point's injections
            dp[:, nw.slack_bus] -= self.net.mlf @ losses.injection_mw
        base_ai = campus_loads_mw(self.campuses, self._campus_profiles, (), times)
        base_total = nw.base_load_p_mw.sum() * f[:, 0] + base_ai.sum(axis=1)
        schedule = st.import_schedule_mw + base_total - base_total[0]
        reach = self.upstream.ramp_mw_per_min * dt_s / 60
        band = self.upstream.band_mw
        f0 = st.upstream_follow_mw
        line_active = st.line_in_service & live[nw.line_from] & live[nw.line_to]
        g_u_lb, g_u_ub, g_s_ub = self._commitment_bounds(st.t_s)
        d_z_ub, d_run_left = self._dr_bounds(st.t_s)
        return Window(
            dt_h=dt_s / 3600,
            demand_p=dp,
            demand_q=dq,
            conv_p=conv_p,
            ai_p=ai,
            energised=live,
            line_active=line_active,
            schedule=schedule,
            follow_lo=max(-band, f0 - reach),
            follow_hi=min(band, f0 + reach),
            band=band,
            ramp=reach,
            v2_min=self.v2[0],
            v2_max=self.v2[1],
            st_e0=s.e,
            g_p0=s.g_p,
            g_ramp0=np.minimum(ud.g_ramp_per_s * self._el_s, ud.g_p),
            g_u0=s.g_on.astype(float),
            g_u_lb=g_u_lb,
            g_u_ub=g_u_ub,
            g_s_ub=g_s_ub,
            d_a0=s.d_on.astype(float),
            d_z_ub=d_z_ub,
            d_run_left=d_run_left,
            d_budget_mwh=np.maximum(ud.d_energy_mwh - s.d_used, 0.0),
            d_owed0=s.d_owed,
            integer_periods=self.integer_periods,
        )

    def _commitment_bounds(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generator commitment bounds from min up/down, start-up delay and pending starts."""
        ud, s, h, dt_s = self.ud, self.state, self.h, self.dt_s
        g = len(ud.g_bus)
        t_idx = np.arange(h)
        g_u_lb, g_u_ub = np.zeros((g, h)), np.ones((g, h))
        g_s_ub = np.ones((g, h))
        up_left = np.where(s.g_on, _periods(ud.g_up * dt_s - s.g_since_s, dt_s), 0)
        down_left = np.where(~s.g_on, _periods(ud.g_down * dt_s - s.g_since_s, dt_s), 0)
        g_u_lb[t_idx[None, :] < up_left[:, None]] = 1.0
        g_u_ub[t_idx[None, :] < down_left[:, None]] = 0.0
        g_s_ub[t_idx[None, :] < _periods(ud.g_delay_s, dt_s)[:, None]] = 0.0
        pending = ~np.isnan(s.g_online_at)
        j = np.where(pending, _periods(np.nan_to_num(s.g_online_at) - t_s, dt_s), 0)
        for k in np.flatnonzero(pending):
            g_u_ub[k, : int(j[k])] = 0.0
            g_u_lb[k, int(j[k]) :] = 1.0
            g_s_ub[k, int(j[k])] = 1.0
        return g_u_lb, np.maximum(g_u_ub, g_u_lb), g_s_ub

    def _dr_bounds(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """DR activation bounds from notification delays, notices given and run time."""
        ud, s, h, dt_s = self.ud, self.state, self.h, self.dt_s
        t_idx = np.arange(h)
        d_z_ub = np.ones((len(ud.d_bus), h))
        d_z_ub[t_idx[None, :] < _periods(ud.d_notice_s, dt_s)[:, None]] = 0.0
        ready = ~np.isnan(s.d_ready_at)
        jr = np.where(ready, _periods(np.nan_to_num(s.d_ready_at) - t_s, dt_s), 0)
        for k in np.flatnonzero(ready):
            d_z_ub[k, max(int(jr[k]), 0) :] = 1.0
        run = np.floor(s.d_run_s / dt_s + 1e-9)
        m = ud.d_max_on[:, None]
        d_run_left = m - np.minimum(run[:, None], np.maximum(m - t_idx[None, :], 0))
        return d_z_ub, d_run_left

    def _at_buses(self, per_campus: np.ndarray) -> np.ndarray:
        return np.bincount(self._campus_bus, per_campus, minlength=self.network.n_bus)

    # ---- solve --------------------------------------------------------------------------------
    def _update(self, h, milp: Milp) -> None:
        """Push this call's bounds and costs into a persistent model (the matrix is fixed)."""
        cols, rows = self._cols, self._rows
        h.changeColsBounds(len(cols), cols, milp.lb, milp.ub)
        h.changeRowsBounds(len(rows), rows, milp.row_lo, milp.row_hi)
        h.changeColsCost(len(cols), cols, milp.cost)

    def _integral_relaxation(self, milp: Milp, hd: Handles, w: Window) -> np.ndarray | None:
        """Solve the LP relaxation (hot-started); return a point it yields within the MIP gap.

        The binaries of the integral head are rounded by what they mean (see `_rounded`) and
        the candidate is accepted if it satisfies every row and bound and costs no more than
        the LP bound: then it is optimal for the MILP. If not (a generator producing at a
        fraction of its commitment, an LDES below its minimum block), the rounded binaries are
        fixed and the LP solved once more (a dive); that point is accepted if it lies within
        the MIP gap (relative or absolute) of the first LP bound -- the guarantee the MILP
        path gives. Otherwise the MILP is solved.
        """
        import highspy

        lp = self._lp
        run_within(lp, self.cfg.time_limit_s)
        if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        relaxed = np.array(lp.getSolution().col_value)
        bound = float(milp.cost @ relaxed)
        x = _rounded(relaxed, milp, hd, w, self.ud.st_pblock)
        if _feasible(x, milp) and milp.cost @ x <= bound + 1e-7 * (1.0 + abs(bound)):
            return x
        fixed = np.flatnonzero(milp.integer).astype(np.int32)
        values = np.clip(x[fixed], milp.lb[fixed], milp.ub[fixed])
        lp.changeColsBounds(len(fixed), fixed, values, values)
        run_within(lp, self.cfg.time_limit_s)
        if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        x = np.array(lp.getSolution().col_value)
        gap = max(self.cfg.mip_gap * abs(bound), self.cfg.mip_abs_gap)
        if _feasible(x, milp) and milp.cost @ x <= bound + gap:
            self.lp_dives += 1
            return x
        return None

    def _solve_highs(self, w: Window) -> tuple[SolveStatus, np.ndarray | None, Handles]:
        import highspy

        # after the first call the matrix is known: only bounds and costs are assembled
        b = ArrayBuilder(None if self._highs is None else self._matrix)
        handles = assemble(b, self.net, self.ud, w, self.weights)
        milp = b.build()
        if self._highs is None:
            self._highs = new_highs(mip_rel_gap=self.cfg.mip_gap, mip_abs_gap=self.cfg.mip_abs_gap)
            self._highs.passModel(_highs_lp(milp))
            relaxed = replace(milp, integer=np.zeros_like(milp.integer))
            self._lp = new_highs()
            self._lp.passModel(_highs_lp(relaxed))
            self._matrix = milp.A
            self._cols = np.arange(milp.A.shape[1], dtype=np.int32)
            self._rows = np.arange(milp.A.shape[0], dtype=np.int32)
        else:
            self._update(self._highs, milp)
            self._update(self._lp, milp)
        x = self._integral_relaxation(milp, handles, w) if self.lp_first else None
        if x is not None:
            self.lp_accepted += 1
            self.costs.append(float(milp.cost @ x))
            return SolveStatus.OPTIMAL, x, handles
        h = self._highs
        run_within(h, self.cfg.time_limit_s)
        ms = h.getModelStatus()
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if ms == highspy.HighsModelStatus.kOptimal:
            status = SolveStatus.OPTIMAL
        elif has_solution:
            status = SolveStatus.FEASIBLE
        else:
            return SolveStatus.SHED, None, handles
        self.costs.append(float(info.objective_function_value))
        return status, np.asarray(h.getSolution().col_value), handles

    def _solve_pyomo(self, w: Window) -> tuple[SolveStatus, np.ndarray | None, Handles]:
        b = PyomoBuilder()
        handles = assemble(b, self.net, self.ud, w, self.weights)
        status, x = b.solve(
            time_limit_s=self.cfg.time_limit_s,
            mip_gap=self.cfg.mip_gap,
            highs_options=self.highs_options,
        )
        if not status.is_ok:
            return status, None, handles
        self.costs.append(float(b.cost @ x))
        return status, x, handles

    def _solve(self, st: GridState, losses: _Losses | None):
        """Build the window and solve it; a solver crash is data too (recorded, fallback)."""
        w = self._window(st, losses)
        t0 = time.perf_counter()
        try:
            solve = self._solve_highs if self.backend == "highs" else self._solve_pyomo
            status, x, hd = solve(w)
        except Exception:
            log.warning("dispatch solve failed at t = %.0f s", st.t_s, exc_info=True)
            status, x, hd = SolveStatus.SHED, None, None
        self._solver_acc += time.perf_counter() - t0
        return status, x, hd

    def _plan_of(self, st: GridState, x: np.ndarray, hd: Handles) -> _Plan:
        nw = self.net
        shed_conv, shed_ai = x[hd.shed], x[hd.shed_ai]
        shed_p = shed_conv + np.stack([self._at_buses(a) for a in shed_ai])
        shed_q = shed_conv * nw.q_per_p + np.stack(
            [self._at_buses(a * self._campus_q) for a in shed_ai]
        )
        return _Plan(
            st.t_s,
            x[hd.st_pc],
            x[hd.st_pd],
            x[hd.g_p],
            x[hd.g_u],
            x[hd.d_d],
            x[hd.d_pb],
            shed_p,
            shed_q,
            float(st.served_p_mw().sum()),
            st.import_schedule_mw,
        )

    def _solve_with_losses(self, st: GridState):
        """Solve with the measured losses; again while the planned point's losses differ from
        what the model expected there (measured losses + marginal losses of the change)."""
        losses = self._losses(st, self._applied)
        status, x, hd = self._solve(st, losses)
        tol = LOSS_TOL * max(float(st.served_p_mw().sum()), 1e-3)
        for _ in range(LOSS_ITERATIONS):
            if x is None or losses is None:
                break
            again = self._losses(st, self._plan_of(st, x, hd).first())
            if again is None:
                break
            expected = losses.total_mw + self.net.mlf @ (again.injection_mw - losses.injection_mw)
            if abs(again.total_mw - expected) <= tol:
                break
            losses = again
            self.loss_resolves += 1
            status2, x2, hd2 = self._solve(st, losses)
            if x2 is None:
                break
            status, x, hd = status2, x2, hd2
        return status, x, hd

    # ---- the policy -----------------------------------------------------------------------------
    def dispatch(self, st: GridState) -> SetPoints:
        t0 = time.perf_counter()
        self._solver_acc = 0.0
        self._advance(st.t_s)
        status, x, hd = self._solve_with_losses(st)
        planned_import, planned_vm = math.nan, None
        if x is not None:
            plan = self._plan_of(st, x, hd)
            self._plan = plan
            self._commands(st.t_s, x, hd)
            applied = plan.first()
            planned_import = float(x[hd.imp[0]])
            v2 = np.maximum(x[hd.v2[0]], 0.0)
            planned_vm = np.where(st.energised, np.sqrt(v2), np.nan)
        elif self._plan is not None and st.t_s - self._plan.t_s < self.h * self.dt_s:
            status = SolveStatus.HELD
            k = int((st.t_s - self._plan.t_s) // self.dt_s)
            applied = self._limited(_shifted(self._plan, k))
        else:
            status = SolveStatus.SHED
            self._plan = None
            applied = self._emergency(st)
        self._ai_prev = (st.t_s, st.ai_load_mw.copy())
        self._applied = applied
        self.solver_s.append(self._solver_acc)
        self.step_wall_s.append(time.perf_counter() - t0)
        return self._setpoints(applied, status, self.step_wall_s[-1], planned_import, planned_vm)

    def follow(self, st: GridState) -> SetPoints:
        """The real-time layer between calls (see realtime.py), or the held plan (`hold`)."""
        t0 = time.perf_counter()
        self._advance(st.t_s)
        base = self._plan.first() if self._plan is not None else self._applied
        lo, hi = self._limits()
        planned = np.concatenate([base.st_p, base.g_p])
        shed_p = base.shed_p
        if self.cfg.realtime == "follow" and self._plan is not None:
            # what the plan did not foresee: the demand's change beyond the schedule's
            live_demand = st.served_p_mw()
            residual = float(live_demand.sum()) - self._plan.demand_mw
            residual -= st.import_schedule_mw - self._plan.schedule_mw
            moved = realtime.follow(residual, planned, lo, hi, shed_p, live_demand)
            p, shed_p = moved.p_mw, moved.shed_mw
        else:
            p = np.clip(planned, lo, hi)
        ratio = np.divide(
            base.shed_q, base.shed_p, out=np.zeros_like(shed_p), where=base.shed_p > 0
        )
        applied = self._split(p, base, shed_p, shed_p * ratio)
        self._applied = applied
        return self._setpoints(applied, SolveStatus.IDLE, time.perf_counter() - t0)

    def _limits(self) -> tuple[np.ndarray, np.ndarray]:
        """What storage (net, discharge-positive) and generators can do at this step."""
        s, ud = self.state, self.ud
        hold_h = self.step_s / 3600
        dis = np.minimum(ud.st_p, np.maximum(s.e - ud.st_emin, 0) * ud.st_eta_d / hold_h)
        dis = np.where(dis >= ud.st_pblock, dis, 0.0)  # LDES: a block or nothing
        ch = np.minimum(ud.st_p, np.maximum(ud.st_emax - s.e, 0) / ud.st_eta_c / hold_h)
        reach = ud.g_ramp_per_s * self._el_s
        g_lo = np.where(s.g_on, np.maximum(ud.g_pmin, s.g_p - reach), 0.0)
        g_hi = np.where(s.g_on, np.minimum(ud.g_p, s.g_p + reach), 0.0)
        return np.concatenate([-ch, g_lo]), np.concatenate([dis, np.maximum(g_hi, g_lo)])

    def _split(self, p: np.ndarray, base: _Applied, shed_p, shed_q) -> _Applied:
        """Storage and generator powers `p` (stacked as in `_limits`) as applied set-points."""
        ud = self.ud
        n_st = len(ud.st_bus)
        st_p, g_p = p[:n_st], p[n_st:]
        block = (st_p > 0) & (st_p < ud.st_pblock)  # LDES: round to the nearer of 0 and a block
        st_p = np.where(block, np.where(st_p >= ud.st_pblock / 2, ud.st_pblock, 0.0), st_p)
        return _Applied(
            np.maximum(-st_p, 0.0),
            np.maximum(st_p, 0.0),
            self.state.g_on.copy(),
            g_p * self.state.g_on,
            base.d_d,
            base.d_pb,
            shed_p,
            shed_q,
        )

    def _limited(self, ap: _Applied) -> _Applied:
        """A held plan's set-points within what the units can do now."""
        lo, hi = self._limits()
        p = np.clip(np.concatenate([ap.st_p, ap.g_p]), lo, hi)
        return self._split(p, ap, ap.shed_p, ap.shed_q)

    def _emergency(self, st: GridState) -> _Applied:
        """No plan: units idle, the AI excess over its base shed at the campus buses."""
        base = campus_loads_mw(self.campuses, self._campus_profiles, (), np.array([st.t_s]))[0]
        excess = np.maximum(st.ai_load_mw - base, 0.0)
        idle = self._idle(self.network.n_bus)
        return replace(
            idle, shed_p=self._at_buses(excess), shed_q=self._at_buses(excess * self._campus_q)
        )

    def _commands(self, t_s: float, x: np.ndarray, hd: Handles) -> None:
        """Issue start commands and DR notifications the plan needs now (delays are real)."""
        s, ud = self.state, self.ud
        delay = ud.g_delay_s
        k = _periods(delay, self.dt_s).astype(int)
        for i in range(len(delay)):
            if (
                not s.g_on[i]
                and np.isnan(s.g_online_at[i])
                and k[i] > 0
                and k[i] < self.h
                and x[hd.g_s[i, k[i]]] > 0.5
            ):
                s.g_online_at[i] = t_s + delay[i]
        notice = ud.d_notice_s
        kn = _periods(notice, self.dt_s).astype(int)
        for i in range(len(notice)):
            if (
                not s.d_on[i]
                and np.isnan(s.d_ready_at[i])
                and 0 < kn[i] < self.h
                and x[hd.d_z[i, kn[i]]] > 0.5
            ):
                s.d_ready_at[i] = t_s + notice[i]

    def _setpoints(
        self,
        ap: _Applied,
        status: SolveStatus,
        solve_s: float,
        planned_import_mw: float = math.nan,
        planned_vm_pu: np.ndarray | None = None,
    ) -> SetPoints:
        n, ud = self.network.n_bus, self.ud
        p_inj = np.zeros(n)
        np.add.at(p_inj, ud.st_bus, ap.st_p)
        np.add.at(p_inj, ud.g_bus, ap.g_p)
        np.add.at(p_inj, ud.d_bus, ap.d_d - ap.d_pb)
        return SetPoints(
            p_inj,
            np.zeros(n),
            ap.shed_p.copy(),
            ap.shed_q.copy(),
            status=int(status),
            solve_s=solve_s,
            planned_import_mw=planned_import_mw,
            planned_vm_pu=planned_vm_pu,
        )

    def _injection(self, ap: _Applied) -> np.ndarray:
        return self._setpoints(ap, SolveStatus.IDLE, 0.0).p_injection_mw

    def report(self, t_s: float) -> UnitReport:
        """Units' power, energy, commitment and curtailment as applied at this step."""
        ap, s = self._applied, self.state
        n = len(self.units)
        p, soc, on, dr = np.zeros(n), np.full(n, np.nan), np.zeros(n), np.zeros(n)
        kinds = np.array(self._kinds)
        is_st = np.isin(kinds, STORAGE)
        is_g = kinds == UnitType.FAST_GEN
        is_d = kinds == UnitType.DR
        p[is_st] = ap.st_p
        soc[is_st] = s.e
        p[is_g] = ap.g_p
        on[is_g] = ap.g_on
        on[is_st] = 1.0
        p[is_d] = ap.d_d - ap.d_pb
        dr[is_d] = ap.d_d
        on[is_d] = ap.d_d > 1e-9
        return UnitReport(p, soc, on, dr)


def _rounded(
    x: np.ndarray, milp: Milp, hd: Handles, w: Window, st_pblock: np.ndarray
) -> np.ndarray:
    """An LP point with the integral head's binaries rounded by what they mean: storage in
    discharge mode when it discharges (an LDES below half its minimum block: not at all),
    a generator committed when it produces or must be on, DR active when it curtails, and
    starts, stops and activations from the off -> on transitions."""
    x = x.copy()
    tol = 1e-7
    ints = milp.integer

    def put(ids: np.ndarray, values: np.ndarray) -> None:
        x[ids] = np.where(ints[ids], values, x[ids])

    put(hd.st_mode, x[hd.st_pd] >= np.maximum(st_pblock[:, None] / 2, tol))
    put(hd.g_u, (x[hd.g_p] > tol) | (milp.lb[hd.g_u] > 0.5))
    u = x[hd.g_u]
    before = np.concatenate([w.g_u0[:, None], u[:, :-1]], axis=1)
    put(hd.g_s, np.maximum(u - before, 0.0))
    put(hd.g_w, np.maximum(before - u, 0.0))
    put(hd.d_a, x[hd.d_d] > tol)
    before = np.concatenate([w.d_a0[:, None], x[hd.d_a][:, :-1]], axis=1)
    put(hd.d_z, np.maximum(x[hd.d_a] - before, 0.0))
    x[ints] = np.round(x[ints])
    return x


def _feasible(x: np.ndarray, milp: Milp, tol: float = 1e-6) -> bool:
    act = milp.A @ x
    return not (
        np.any(act < milp.row_lo - tol)
        or np.any(act > milp.row_hi + tol)
        or np.any(x < milp.lb - tol)
        or np.any(x > milp.ub + tol)
    )


def _shifted(plan: _Plan, k: int) -> _Applied:
    """Period k of a plan (held when the solver fails; the last period repeats)."""

    def at(a: np.ndarray, axis: int = 1) -> np.ndarray:
        return np.take(a, min(k, a.shape[axis] - 1), axis=axis)

    on = at(plan.g_u) > 0.5
    return _Applied(
        at(plan.st_pc),
        at(plan.st_pd),
        on,
        at(plan.g_p) * on,
        at(plan.d_d),
        at(plan.d_pb),
        at(plan.shed_p, 0),
        at(plan.shed_q, 0),
    )


def lindistflow_vm(
    network: Network,
    demand_p_mw: np.ndarray,
    demand_q_mvar: np.ndarray,
    line_in_service: np.ndarray | None = None,
    *,
    with_losses: bool = False,
) -> np.ndarray:
    """|V| (pu) of the dispatch model's network equations for one period, no units, no shed.

    Solves the same LinDistFlow rows the MILP uses (as an LP whose only freedom is the
    violation slacks), for validating the linearisation against the AC power flow. With
    `with_losses`, the losses of the AC load flow at this point enter as demand at each
    line's receiving end, as the dispatcher does.
    """

    status = network.line_in_service if line_in_service is None else line_in_service
    live = network.energised(status)
    p, q = demand_p_mw * live, demand_q_mvar * live
    if with_losses:
        engine = PowerFlowEngine(network)
        engine.set_line_status(status)
        res = engine.solve(p, q)
        recv = np.where(res.line_p_from_mw >= 0, network.line_to, network.line_from)
        p = p + np.bincount(recv, res.line_loss_mw, minlength=network.n_bus) * live
        q = q + np.bincount(recv, res.line_loss_mvar, minlength=network.n_bus) * live
    z = np.zeros((0, 1))
    w = Window(
        dt_h=1.0,
        demand_p=p[None],
        demand_q=q[None],
        conv_p=np.zeros((1, network.n_bus)),
        ai_p=np.zeros((1, 0)),
        energised=live,
        line_active=status & live[network.line_from] & live[network.line_to],
        schedule=np.zeros(1),
        follow_lo=-INF_MW,
        follow_hi=INF_MW,
        band=INF_MW,
        ramp=INF_MW,
        v2_min=0.0,
        v2_max=4.0,
        st_e0=z[:, 0],
        g_p0=z[:, 0],
        g_ramp0=z[:, 0],
        g_u0=z[:, 0],
        g_u_lb=z,
        g_u_ub=z,
        g_s_ub=z,
        d_a0=z[:, 0],
        d_z_ub=z,
        d_run_left=z,
        d_budget_mwh=z[:, 0],
        d_owed0=z[:, 0],
    )
    b = ArrayBuilder()
    hd = assemble(
        b, network_data(network, 1e6), unit_data((), 300.0, 1), w, Weights(1e4, 0.0, 0.0, 0.0)
    )
    milp = b.build()
    h = new_highs()
    h.passModel(_highs_lp(milp))
    h.run()
    v2 = np.asarray(h.getSolution().col_value)[hd.v2[0]]
    return np.where(live, np.sqrt(np.maximum(v2, 0.0)), np.nan)


def unit_dataset(units: Sequence[Unit]) -> xr.Dataset:
    """Static per-unit data for the run Dataset (dim `unit`), enough to cost the dispatch."""

    def col(fn, dtype=float):
        return np.array([fn(u) for u in units], dtype=dtype)

    def cost(u: Unit) -> float:
        m = u.module
        return {UnitType.FAST_GEN: m.marginal_cost_per_mwh, UnitType.DR: m.cost_per_mwh}.get(
            u.type, m.degradation_cost_per_mwh
        )

    data = {
        "unit_type": (col(lambda u: u.type.value, str), "1", "FCM type"),
        "unit_bus": (col(lambda u: u.bus, np.int32), "1", "bus of the unit"),
        "unit_count": (col(lambda u: u.count, np.int32), "1", "modules aggregated"),
        "unit_p_mw": (col(lambda u: u.module.p_mw), "MW", "power rating"),
        "unit_e_mwh": (col(lambda u: u.module.e_mwh), "MWh", "energy rating (storage)"),
        "unit_cost_per_mwh": (
            col(cost),
            "$/MWh",
            "marginal, curtailment or degradation cost "
            "per MWh generated, curtailed or passed through",
        ),
        "unit_start_cost": (col(lambda u: u.module.start_cost), "$", "cost per start"),
    }
    return xr.Dataset(
        {
            k: xr.Variable("unit", v, {"units": un, "long_name": ln})
            for k, (v, un, ln) in data.items()
        },
        coords={"unit": np.array([u.name for u in units], dtype=str)},
    )
