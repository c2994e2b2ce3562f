"""Stage-II rolling MILP dispatcher: the co-simulation's dispatch policy.

At each call: advance the units' state over the time since the last call with the set-points
that were applied, forecast the lookahead (conventional load from the day-ahead profile, AI
load by persistence of its current ramp or perfect foresight), turn state into bounds, update
the persistent HiGHS model in place and solve, then apply the first period's decisions.
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

from simgrid.config import DispatchConfig, UpstreamConfig
from simgrid.fcm import STORAGE, Unit, UnitType
from simgrid.network import Network
from simgrid.optimization.builder import ArrayBuilder, Milp, PyomoBuilder, SolveStatus
from simgrid.optimization.dispatch_model import (
    Handles,
    NetworkData,
    UnitData,
    Weights,
    Window,
    assemble,
)
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


def network_data(nw: Network, max_loading_percent: float) -> NetworkData:
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
    """What the units carry between calls."""

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


@dataclass(frozen=True)
class _Plan:
    """The applied first-period decisions and the whole planned window (for the fallback)."""

    t_s: float
    st_pc: np.ndarray  # (S, H)
    st_pd: np.ndarray
    g_p: np.ndarray
    g_u: np.ndarray
    d_d: np.ndarray
    d_pb: np.ndarray
    shed: np.ndarray  # (H, N)


class RollingDispatcher:
    """The Stage-II policy. `backend` "highs" (persistent) or "pyomo" (rebuilt every call);
    `reference` (pyomo only) solves the straightforward formulation used as the benchmark
    baseline."""

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
        self.h = cfg.horizon_steps
        self.net = network_data(network, max_loading_percent)
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
        self._applied: _Plan | None = None
        self._t_last: float | None = None
        self._ai_prev: tuple[float, np.ndarray] | None = None
        self._highs = None
        self._lp = None
        self.lp_first = True  # try the hot-started LP relaxation before the MILP
        self.lp_accepted = 0
        self.step_wall_s: list[float] = []
        self.solver_s: list[float] = []
        self.costs: list[float] = []

    # ---- state ----------------------------------------------------------------------------
    def _soc_after(self, el_h: float) -> np.ndarray:
        """Stored energy after `el_h` hours of the applied charge / discharge set-points."""
        ud, ap = self.ud, self._applied
        flow = ud.st_eta_c * ap.st_pc[:, 0] - ap.st_pd[:, 0] / ud.st_eta_d
        return np.clip(self.state.e + el_h * flow, ud.st_emin, ud.st_emax)

    def _advance(self, t_s: float) -> None:
        """Move the state to t_s under the set-points applied at the last call."""
        s, ud, ap = self.state, self.ud, self._applied
        if self._t_last is None or ap is None:
            self._t_last = t_s
            return
        el_s = t_s - self._t_last
        el_h = el_s / 3600.0
        s.e = self._soc_after(el_h)
        on = ap.g_u[:, 0] > 0.5
        s.g_since_s = np.where(on == s.g_on, s.g_since_s + el_s, el_s)
        s.g_on, s.g_p = on, ap.g_p[:, 0] * on
        arrived = s.g_online_at <= t_s + 1e-9
        s.g_on = s.g_on | arrived
        s.g_since_s = np.where(arrived, 0.0, s.g_since_s)
        s.g_online_at = np.where(arrived, np.nan, s.g_online_at)
        active = ap.d_d[:, 0] > 1e-9
        s.d_run_s = np.where(active, s.d_run_s + el_s, 0.0)
        s.d_on = active
        s.d_used = s.d_used + ap.d_d[:, 0] * el_h
        s.d_owed = np.maximum(s.d_owed + (ud.d_rebound * ap.d_d[:, 0] - ap.d_pb[:, 0]) * el_h, 0)
        s.d_ready_at = np.where(active, np.nan, s.d_ready_at)  # a notice is used once
        self._t_last = t_s

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

    def _window(self, st: GridState) -> Window:
        nw, ud, s, h, dt_s = self.network, self.ud, self.state, self.h, self.dt_s
        times = st.t_s + dt_s * np.arange(h)
        f = self.profile.at(times)[:, None]
        ai = self._ai_forecast(st, times)
        dp = nw.base_load_p_mw * f
        dq = nw.base_load_q_mvar * f
        base_ai = (
            np.stack(
                [
                    c.base_utilisation * c.p_nom_mw * prof.at(times)
                    for c, prof in zip(self.campuses, self._campus_profiles, strict=True)
                ],
                axis=1,
            )
            if self.campuses
            else np.zeros((h, 0))
        )
        for k, b in enumerate(self._campus_bus):
            dp[:, b] += ai[:, k]
            dq[:, b] += ai[:, k] * self._campus_q[k]
        dp[0], dq[0] = st.demand_p_mw, st.demand_q_mvar  # measured now
        live = st.energised
        dp, dq = dp * live, dq * live
        base_total = nw.base_load_p_mw.sum() * f[:, 0] + base_ai.sum(axis=1)
        schedule = st.import_schedule_mw + base_total - base_total[0]
        reach = self.upstream.ramp_mw_per_min * dt_s / 60
        band = self.upstream.band_mw
        f0 = st.upstream_follow_mw
        line_active = st.line_in_service & live[nw.line_from] & live[nw.line_to]

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
        j = np.where(pending, _periods(np.nan_to_num(s.g_online_at) - st.t_s, dt_s), 0)
        for k in np.flatnonzero(pending):
            g_u_ub[k, : int(j[k])] = 0.0
            g_u_lb[k, int(j[k]) :] = 1.0
            g_s_ub[k, int(j[k])] = 1.0
        g_u_ub = np.maximum(g_u_ub, g_u_lb)

        d = len(ud.d_bus)
        d_z_ub = np.ones((d, h))
        d_z_ub[t_idx[None, :] < _periods(ud.d_notice_s, dt_s)[:, None]] = 0.0
        ready = ~np.isnan(s.d_ready_at)
        jr = np.where(ready, _periods(np.nan_to_num(s.d_ready_at) - st.t_s, dt_s), 0)
        for k in np.flatnonzero(ready):
            d_z_ub[k, max(int(jr[k]), 0) :] = 1.0
        run = np.floor(s.d_run_s / dt_s + 1e-9)
        m = ud.d_max_on[:, None]
        d_run_left = m - np.minimum(run[:, None], np.maximum(m - t_idx[None, :], 0))
        return Window(
            dt_h=dt_s / 3600,
            demand_p=dp,
            demand_q=dq,
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

    # ---- solve --------------------------------------------------------------------------------
    def _update(self, h, milp: Milp) -> None:
        """Push this call's bounds and costs into a persistent model (the matrix is fixed)."""
        cols, rows = self._cols, self._rows
        h.changeColsBounds(len(cols), cols, milp.lb, milp.ub)
        h.changeRowsBounds(len(rows), rows, milp.row_lo, milp.row_hi)
        h.changeColsCost(len(cols), cols, milp.cost)

    def _integral_relaxation(self, milp: Milp, hd: Handles, w: Window) -> np.ndarray | None:
        """Solve the LP relaxation (hot-started); return it if it yields a MILP optimum.

        The binaries of the integral head are rounded by what they mean -- storage mode by
        discharge, DR activity by curtailment, activations by off -> on transitions, the rest
        to nearest -- and the candidate is accepted only if it satisfies every row and bound
        and costs no more than the LP bound: then it is optimal for the MILP. Otherwise the
        MILP is solved.
        """
        import highspy

        lp = self._lp
        lp.run()
        if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        x = np.array(lp.getSolution().col_value)
        bound = float(milp.cost @ x)
        tol = 1e-7
        ints = milp.integer
        x[hd.st_mode] = np.where(ints[hd.st_mode], x[hd.st_pd] > tol, x[hd.st_mode])
        active = x[hd.d_d] > tol
        x[hd.d_a] = np.where(ints[hd.d_a], active, x[hd.d_a])
        before = np.concatenate([w.d_a0[:, None], x[hd.d_a][:, :-1]], axis=1)
        x[hd.d_z] = np.where(ints[hd.d_z], np.maximum(x[hd.d_a] - before, 0.0), x[hd.d_z])
        x[ints] = np.round(x[ints])
        feas = 1e-6
        act = milp.A @ x
        if (
            np.any(act < milp.row_lo - feas)
            or np.any(act > milp.row_hi + feas)
            or np.any(x < milp.lb - feas)
            or np.any(x > milp.ub + feas)
        ):
            return None
        if milp.cost @ x > bound + 1e-7 * (1.0 + abs(bound)):
            return None
        return x

    def _solve_highs(self, w: Window, w_t: float) -> tuple[SolveStatus, np.ndarray | None, Handles]:
        import highspy

        # after the first call the matrix is known: only bounds and costs are assembled
        b = ArrayBuilder(None if self._highs is None else self._matrix)
        handles = assemble(b, self.net, self.ud, w, self.weights)
        milp = b.build()
        if self._highs is None:
            self._highs = new_highs(mip_rel_gap=self.cfg.mip_gap, time_limit=self.cfg.time_limit_s)
            self._highs.passModel(_highs_lp(milp))
            relaxed = replace(milp, integer=np.zeros_like(milp.integer))
            self._lp = new_highs(time_limit=self.cfg.time_limit_s)
            self._lp.passModel(_highs_lp(relaxed))
            self._matrix = milp.A
            self._cols = np.arange(milp.A.shape[1], dtype=np.int32)
            self._rows = np.arange(milp.A.shape[0], dtype=np.int32)
        else:
            self._update(self._highs, milp)
            self._update(self._lp, milp)
        t0 = time.perf_counter()
        x = self._integral_relaxation(milp, handles, w) if self.lp_first else None
        if x is not None:
            self.solver_s.append(time.perf_counter() - t0)
            self.lp_accepted += 1
            self.costs.append(float(milp.cost @ x))
            return SolveStatus.OPTIMAL, x, handles
        h = self._highs
        h.run()
        self.solver_s.append(time.perf_counter() - t0)
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

    def _solve_pyomo(self, w: Window, w_t: float) -> tuple[SolveStatus, np.ndarray | None, Handles]:
        b = PyomoBuilder()
        handles = assemble(b, self.net, self.ud, w, self.weights)
        t0 = time.perf_counter()
        status, x = b.solve(
            time_limit_s=self.cfg.time_limit_s,
            mip_gap=self.cfg.mip_gap,
            highs_options=self.highs_options,
        )
        self.solver_s.append(time.perf_counter() - t0)
        if not status.is_ok:
            return status, None, handles
        self.costs.append(float(b.cost @ x))
        return status, x, handles

    # ---- the policy -----------------------------------------------------------------------------
    def dispatch(self, st: GridState) -> SetPoints:
        t0 = time.perf_counter()
        self._advance(st.t_s)
        w = self._window(st)
        try:
            solve = self._solve_highs if self.backend == "highs" else self._solve_pyomo
            status, x, hd = solve(w, st.t_s)
        except Exception:  # a solver crash is data too: record it, fall back and go on
            log.warning("dispatch solve failed at t = %.0f s", st.t_s, exc_info=True)
            status, x, hd = SolveStatus.SHED, None, None
        if x is not None:
            plan = _Plan(
                st.t_s,
                x[hd.st_pc],
                x[hd.st_pd],
                x[hd.g_p],
                x[hd.g_u],
                x[hd.d_d],
                x[hd.d_pb],
                x[hd.shed],
            )
            self._plan = plan
            self._commands(st.t_s, x, hd)
        elif self._plan is not None and st.t_s - self._plan.t_s < self.h * self.dt_s:
            status = SolveStatus.HELD
            k = int((st.t_s - self._plan.t_s) // self.dt_s)
            plan = self._shifted(self._plan, k, st.t_s)
        else:
            status = SolveStatus.SHED
            plan = None
        self._ai_prev = (st.t_s, st.ai_load_mw.copy())
        sp = self._setpoints(st, plan, status)
        self.step_wall_s.append(time.perf_counter() - t0)
        return SetPoints(
            sp.p_injection_mw,
            sp.q_injection_mvar,
            sp.shed_mw,
            status=int(status),
            solve_s=self.step_wall_s[-1],
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

    def _shifted(self, plan: _Plan, k: int, t_s: float) -> _Plan:
        def sh(a: np.ndarray, axis: int = 1) -> np.ndarray:
            return np.take(
                a, np.minimum(np.arange(a.shape[axis]) + k, a.shape[axis] - 1), axis=axis
            )

        held = _Plan(
            t_s,
            sh(plan.st_pc),
            sh(plan.st_pd),
            sh(plan.g_p),
            sh(plan.g_u),
            sh(plan.d_d),
            sh(plan.d_pb),
            sh(plan.shed, 0),
        )
        # the held plan must respect the state it now meets
        s, ud = self.state, self.ud
        room_dis = np.maximum(s.e - ud.st_emin, 0) * ud.st_eta_d / (self.dt_s / 3600)
        room_ch = np.maximum(ud.st_emax - s.e, 0) / ud.st_eta_c / (self.dt_s / 3600)
        held.st_pd[:, 0] = np.minimum(held.st_pd[:, 0], room_dis)
        held.st_pc[:, 0] = np.minimum(held.st_pc[:, 0], room_ch)
        held.g_u[:, 0] = np.where(s.g_on, held.g_u[:, 0], 0.0)
        return held

    def _setpoints(self, st: GridState, plan: _Plan | None, status: SolveStatus) -> SetPoints:
        n, ud = self.network.n_bus, self.ud
        p_inj = np.zeros(n)
        shed = np.zeros(n)
        if plan is None:
            # emergency: shed the AI excess over its base at the campus buses, nothing else
            base = np.array(
                [
                    c.base_utilisation * c.p_nom_mw * float(prof.at(st.t_s))
                    for c, prof in zip(self.campuses, self._campus_profiles, strict=True)
                ]
            )
            np.add.at(shed, self._campus_bus, np.maximum(st.ai_load_mw - base, 0.0))
            zeros = [
                np.zeros((len(b), self.h))
                for b in (ud.st_bus, ud.st_bus, ud.g_bus, ud.g_bus, ud.d_bus, ud.d_bus)
            ]
            plan = _Plan(st.t_s, *zeros, np.zeros((self.h, n)))
        else:
            shed = plan.shed[0].copy()
        np.add.at(p_inj, ud.st_bus, plan.st_pd[:, 0] - plan.st_pc[:, 0])
        np.add.at(p_inj, ud.g_bus, plan.g_p[:, 0] * (plan.g_u[:, 0] > 0.5))
        np.add.at(p_inj, ud.d_bus, plan.d_d[:, 0] - plan.d_pb[:, 0])
        self._applied = plan
        return SetPoints(p_inj, np.zeros(n), shed)

    def report(self, t_s: float) -> UnitReport:
        """Units' power, energy, commitment and curtailment at t_s under the held set-points."""
        ap = self._applied
        n = len(self.units)
        p, soc, on, dr = np.zeros(n), np.full(n, np.nan), np.zeros(n), np.zeros(n)
        if ap is None:
            return UnitReport(p, soc, on, dr)
        el_h = 0.0 if self._t_last is None else (t_s - self._t_last) / 3600
        kinds = np.array(self._kinds)
        is_st = np.isin(kinds, STORAGE)
        is_g = kinds == UnitType.FAST_GEN
        is_d = kinds == UnitType.DR
        p[is_st] = ap.st_pd[:, 0] - ap.st_pc[:, 0]
        soc[is_st] = self._soc_after(el_h)
        g_on = ap.g_u[:, 0] > 0.5
        p[is_g] = ap.g_p[:, 0] * g_on
        on[is_g] = g_on
        on[is_st] = 1.0
        p[is_d] = ap.d_d[:, 0] - ap.d_pb[:, 0]
        dr[is_d] = ap.d_d[:, 0]
        on[is_d] = ap.d_d[:, 0] > 1e-9
        return UnitReport(p, soc, on, dr)


def lindistflow_vm(
    network: Network,
    demand_p_mw: np.ndarray,
    demand_q_mvar: np.ndarray,
    line_in_service: np.ndarray | None = None,
) -> np.ndarray:
    """|V| (pu) of the dispatch model's network equations for one period, no units, no shed.

    Solves the same LinDistFlow rows the MILP uses (as an LP whose only freedom is the
    violation slacks), for validating the linearisation against the AC power flow.
    """

    status = network.line_in_service if line_in_service is None else line_in_service
    live = network.energised(status)
    z = np.zeros((0, 1))
    w = Window(
        dt_h=1.0,
        demand_p=demand_p_mw[None] * live,
        demand_q=demand_q_mvar[None] * live,
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
