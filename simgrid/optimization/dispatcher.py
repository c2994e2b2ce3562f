"""Stage-II rolling MILP dispatcher: the co-simulation's dispatch policy and the units' plant.

A thin policy over the shared model (dispatch_model, blocks) and its solver (solve, lpfirst):

* state advance: the units' state (state.UnitState) moves with the powers applied at every step;
* window: forecasts of the lookahead (conventional load from the day-ahead profile, AI load by
  persistence of its current ramp or perfect foresight) and the network's losses, measured by an
  AC load flow of the dispatcher's own network model (losses.py), become the window's data;
  the state becomes its initial state;
* solve: the model is built once and updated in place (bounds only); the hot-started LP answers
  when it is as good as the MILP (lpfirst.py), else the MILP is solved; if the losses at the
  planned point differ from what the model expected, the window is solved again with them (a
  fixed point, at most `LOSS_ITERATIONS` more solves);
* write back: the plan's first period is applied; starts and DR notices are issued;
* fallback: a failed, infeasible or timed-out solve holds the last plan (within what the units
  can do now), then sheds the AI excess; the status is recorded and the run goes on.

Between calls, at every other step, `follow` is the plant's real-time layer (realtime.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import xarray as xr

from simgrid.aiload import campus_loads_mw
from simgrid.config import DispatchConfig, UpstreamConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Unit
from simgrid.ncio import variables
from simgrid.network import Network
from simgrid.optimization import lpfirst, realtime
from simgrid.optimization.blocks import InitialState, ModelOptions, ScenarioData, Weights
from simgrid.optimization.builder import ArrayBuilder, PyomoBuilder
from simgrid.optimization.dispatch_model import (
    Handles,
    Sizes,
    assemble,
    network_data,
    units_data,
)
from simgrid.optimization.losses import (
    Losses,
    at_receiving_ends,
    marginal_loss_factors,
    with_losses,
)
from simgrid.optimization.solve import (
    BASE_HIGHS_OPTIONS,
    HIGHS_OPTIONS,
    PersistentModel,
    Termination,
    solve_pyomo,
)
from simgrid.optimization.state import Applied, Plan, UnitState
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.types import Campus, GridState, SetPoints, Snapshot, SolveStatus, UnitReport
from simgrid.units import FAMILIES

log = logging.getLogger(__name__)

Forecaster = Callable[[np.ndarray], np.ndarray]  # times (H,) -> AI load (H, campus)

DISCOUNT_PER_PERIOD = 0.98
LOSS_ITERATIONS = 2  # extra solves when the losses at the planned point differ
LOSS_TOL = 5e-4  # relative to the feeder's demand: losses agreeing this well are kept


# The windows that reach the MILP are those the LP-first path could not round: on the 8 of the
# example's day HiGHS' feasibility jump found nothing its root rounding and branching did not,
# and took a fifth of the solve time (same solutions without it; an option since HiGHS 1.11).
WINDOW_MIP_OPTIONS = {"mip_heuristic_run_feasibility_jump": False}


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
        self.options = ModelOptions(
            integer_periods=None if reference else cfg.integer_periods,
            discount=DISCOUNT_PER_PERIOD,
        )
        self.highs_options = BASE_HIGHS_OPTIONS if reference else HIGHS_OPTIONS
        self.network, self.profile = network, profile
        self.campuses = tuple(campuses)
        self._campus_profiles = [campus_profile(c) for c in self.campuses]
        self._campus_bus = np.array([c.bus for c in self.campuses], dtype=int)
        self._campus_q = np.array([c.q_per_p for c in self.campuses])
        self.units = tuple(units)
        self.unit_names = tuple(u.name for u in self.units)
        self.dt_s, self.step_s, self.h = cfg.redispatch_s, step_s, cfg.horizon_steps
        self.ud = units_data(self.units, self.dt_s, self.h)
        self.sizes = Sizes.fixed(self.ud)
        self.net = network_data(
            network, max_loading_percent, self.campuses, self._reference_mlf(network)
        )
        self.weights = Weights(
            cfg.voll_per_mwh, cfg.imbalance_per_mwh, cfg.voltage_per_pu_h, cfg.restoration_per_mwh
        )
        margin = cfg.voltage_margin_pu  # covers the drop while demand moves between calls
        self.v2 = ((v_min_pu + margin) ** 2, (v_max_pu - margin) ** 2)
        self.forecaster = forecaster
        self._pf = PowerFlowEngine(network)  # the dispatcher's own model, for its losses
        self.lp_first = True  # try the hot-started LP relaxation before the MILP
        self.reset()

    def reset(self) -> None:
        """Back to the start of a run (units at rest, no plan, its power flow at a flat start);
        loss factors and network are kept, so a stress worker reuses one dispatcher."""
        self.state = UnitState.initial(self.ud)
        self._plan: Plan | None = None
        self._applied = Applied.idle(self.ud, self.network.n_bus)
        self._t_step: float | None = None
        self._el_s = 0.0  # time since the previous step
        self._ai_prev: tuple[float, np.ndarray] | None = None
        # diagnostics of this run
        self.lp_accepted = 0
        self.lp_dives = 0  # of which after fixing the rounded binaries (within the MIP gap)
        self.loss_resolves = 0
        self.step_wall_s: list[float] = []
        self.solver_s: list[float] = []
        self.costs: list[float] = []
        self._pf.reset()
        self.rest()

    def rest(self) -> None:
        """Solvers cold: its power flow from a flat start, its HiGHS models rebuilt at the next
        call. Called per run and at every block boundary of a streamed run."""
        self._pf.flat_start()
        # HiGHS keeps bases, presolve data and clocks across solves: a fresh model per run makes
        # an episode's decisions independent of what the worker solved before (a rebuild costs
        # one matrix assembly, milliseconds)
        self._milp_model: PersistentModel | None = None
        self._lp_model: PersistentModel | None = None
        self._row_shapes: list[tuple[int, ...]] | None = None

    def snapshot(self) -> Snapshot:
        """The units' state, the plan being followed, the set-points applied at the last step
        and what the forecast and the state advance remember (solvers and diagnostics are
        not state: a block boundary rests them)."""
        ai = self._ai_prev
        return Snapshot.join(
            units=self.state.snapshot(),
            plan=None if self._plan is None else self._plan.snapshot(),
            applied=self._applied.snapshot(),
            t_step_s=self._t_step,
            el_s=self._el_s,
            ai_prev_t_s=None if ai is None else ai[0],
            ai_prev_mw=None if ai is None else ai[1],
        )

    def restore(self, snap: Snapshot | None) -> None:
        if snap is None:
            raise ConfigError("<checkpoint>", "policy", None, "missing from the checkpoint")
        n_bus, none = self.network.n_bus, np.zeros(len(self.campuses))
        self.state = UnitState.restore(snap.require("units"), self.ud)
        plan = snap.part("plan")
        self._plan = None if plan is None else Plan.restore(plan, self.ud, self.h, n_bus)
        self._applied = Applied.restore(snap.require("applied"), self.ud, n_bus)
        has = snap.arrays.__contains__
        self._t_step = snap.number("t_step_s", 0.0) if has("t_step_s") else None
        self._el_s = snap.number("el_s", 0.0)
        self._ai_prev = None
        if has("ai_prev_t_s"):
            self._ai_prev = (snap.number("ai_prev_t_s", 0.0), snap.like("ai_prev_mw", none))

    def _reference_mlf(self, network: Network) -> np.ndarray:
        """Loss sensitivities at the feeder's peak with its campuses at base utilisation."""
        base = np.array([c.base_utilisation * c.p_nom_mw for c in self.campuses])
        p = network.base_load_p_mw + self._at_buses(base)
        q = network.base_load_q_mvar + self._at_buses(base * self._campus_q)
        return marginal_loss_factors(network, p, q)

    # ---- state ----------------------------------------------------------------------------
    def _advance(self, t_s: float) -> None:
        """Move the state to t_s under the powers applied at the previous step."""
        if self._t_step is None:
            self._t_step = t_s
            return
        self._el_s = t_s - self._t_step
        self.state.advance(self._applied, self.ud, self._el_s, t_s)
        self._t_step = t_s

    # ---- window -----------------------------------------------------------------------------
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

    def _window_data(self, st: GridState) -> ScenarioData:
        """What the window faces (without losses): forecast demand, topology, schedule."""
        nw, h, dt_s = self.network, self.h, self.dt_s
        times = st.t_s + dt_s * np.arange(h)
        f = self.profile.at(times)[:, None]
        ai = self._ai_forecast(st, times)
        ai[0] = st.ai_load_mw
        conv_p = nw.base_load_p_mw * f
        conv_q = nw.base_load_q_mvar * f
        conv_p[0] = st.demand_p_mw - self._at_buses(st.ai_load_mw)  # measured now
        conv_q[0] = st.demand_q_mvar - self._at_buses(st.ai_load_mw * self._campus_q)
        # what protection disconnected stays disconnected through the window (persistence)
        kept, live = st.connected(), st.energised
        conv_p, conv_q = conv_p * kept, conv_q * kept
        ai = ai * kept[self._campus_bus]
        dp = conv_p + np.stack([self._at_buses(a) for a in ai])
        dq = conv_q + np.stack([self._at_buses(a * self._campus_q) for a in ai])
        base_ai = campus_loads_mw(self.campuses, self._campus_profiles, (), times)
        base_total = nw.base_load_p_mw.sum() * f[:, 0] + base_ai.sum(axis=1)
        line_active = st.line_in_service & live[nw.line_from] & live[nw.line_to]
        return ScenarioData(
            dt_h=dt_s / 3600,
            demand_p=dp,
            demand_q=dq,
            conv_p=conv_p,
            ai_p=ai,
            energised=np.broadcast_to(live, (h, nw.n_bus)),
            line_active=np.broadcast_to(line_active, (h, nw.n_line)),
            schedule=st.import_schedule_mw + base_total - base_total[0],
            band=self.upstream.band_mw,
            ramp=self.upstream.ramp_mw_per_min * dt_s / 60,
            v2_min=self.v2[0],
            v2_max=self.v2[1],
        )

    def _window_start(self, st: GridState, data: ScenarioData) -> InitialState:
        f0 = st.upstream_follow_mw
        follow = (max(-data.band, f0 - data.ramp), min(data.band, f0 + data.ramp))
        return self.state.window_start(
            self.ud, st.t_s, self.dt_s, self.h, el_s=self._el_s, follow=follow
        )

    def _losses(self, st: GridState, ap: Applied) -> Losses | None:
        """Line losses of the AC load flow at the measured demand and set-points `ap`."""
        live = st.energised
        self._pf.set_line_status(st.line_in_service)
        inj = ap.injection_mw(self.ud, self.network.n_bus) * live
        kept = st.connected()
        res = self._pf.solve(
            st.demand_p_mw * kept - ap.shed_p - inj, st.demand_q_mvar * kept - ap.shed_q
        )
        if not res.converged:
            return None
        return at_receiving_ends(self.network, res, live, inj + ap.shed_p)

    # ---- solve --------------------------------------------------------------------------------
    def _build(self, b, data: ScenarioData, start: InitialState) -> Handles:
        hd, cost = assemble(
            b, self.net, self.ud, self.sizes, data, start, self.weights, self.options
        )
        b.add_cost(cost)
        return hd

    def _solve_highs(self, data: ScenarioData, start: InitialState):
        # after the first call the matrix is known: only bounds and costs are assembled
        first = self._milp_model is None
        b = ArrayBuilder(*((None, None) if first else (self._milp_model.matrix, self._row_shapes)))
        hd = self._build(b, data, start)
        milp = b.build()
        if first:
            gaps = {"mip_rel_gap": self.cfg.mip_gap, "mip_abs_gap": self.cfg.mip_abs_gap}
            self._milp_model = PersistentModel(milp, **gaps, **WINDOW_MIP_OPTIONS)
            self._row_shapes = b.row_shapes
            self._lp_model = PersistentModel(milp, relaxed=True)
        else:
            self._milp_model.update(milp)
            self._lp_model.update(milp)
        if self.lp_first:
            ans = lpfirst.answer(
                self._lp_model,
                milp,
                hd,
                start,
                self.ud,
                gap=self.cfg.mip_gap,
                abs_gap=self.cfg.mip_abs_gap,
                time_limit_s=self.cfg.time_limit_s,
            )
            if ans is not None:
                self.lp_accepted += 1
                self.lp_dives += ans.dived
                self.costs.append(ans.objective)
                return SolveStatus.OPTIMAL, ans.x, hd
        res = self._milp_model.solve(self.cfg.time_limit_s)
        return self._status(res), res.x, hd

    def _solve_pyomo(self, data: ScenarioData, start: InitialState):
        b = PyomoBuilder()
        hd = self._build(b, data, start)
        res = solve_pyomo(
            b,
            time_limit_s=self.cfg.time_limit_s,
            mip_gap=self.cfg.mip_gap,
            highs_options=self.highs_options,
        )
        return self._status(res), res.x, hd

    def _status(self, res) -> SolveStatus:
        if not res.termination.has_solution:
            return SolveStatus.SHED
        self.costs.append(res.objective)
        return (
            SolveStatus.OPTIMAL if res.termination is Termination.OPTIMAL else SolveStatus.FEASIBLE
        )

    def _solve(self, st: GridState, losses: Losses | None):
        """Build the window and solve it; a solver crash is data too (recorded, fallback)."""
        data = self._window_data(st)
        if losses is not None:
            data = with_losses(data, losses, self.network.slack_bus, self.net.mlf)
        start = self._window_start(st, data)
        t0 = time.perf_counter()
        try:
            solve = self._solve_highs if self.backend == "highs" else self._solve_pyomo
            status, x, hd = solve(data, start)
        except Exception:
            log.warning("dispatch solve failed at t = %.0f s", st.t_s, exc_info=True)
            status, x, hd = SolveStatus.SHED, None, None
        self._solver_acc += time.perf_counter() - t0
        return status, x, hd

    def _plan_of(self, st: GridState, x: np.ndarray, hd: Handles) -> Plan:
        shed_conv, shed_ai = x[hd.shed.conv], x[hd.shed.ai]
        shed_p = shed_conv + np.stack([self._at_buses(a) for a in shed_ai])
        shed_q = shed_conv * self.net.q_per_p + np.stack(
            [self._at_buses(a * self._campus_q) for a in shed_ai]
        )
        return Plan(
            st.t_s,
            tuple(f.plan_of(x, fh) for f, fh in zip(FAMILIES, hd.units, strict=True)),
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
            again = self._losses(st, self._plan_of(st, x, hd).at(0))
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
            self.state.issue_commands(self.ud, x, hd, st.t_s, self.dt_s, self.h)
            applied = plan.at(0)
            planned_import = float(x[hd.imports.imp[0]])
            v2 = np.maximum(x[hd.network.v2[0]], 0.0)
            planned_vm = np.where(st.energised, np.sqrt(v2), np.nan)
        elif self._plan is not None and st.t_s - self._plan.t_s < self.h * self.dt_s:
            status = SolveStatus.HELD
            applied = self._limited(self._plan.at(int((st.t_s - self._plan.t_s) // self.dt_s)))
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
        base = self._plan.at(0) if self._plan is not None else self._applied
        lo, hi = self._limits()
        planned = self._followed_p(base)
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

    def _followers(self):
        """The families whose units follow between calls, with their data, state and the
        slice of the stacked powers they take (in the registry's order)."""
        k = 0
        for i, (f, part) in enumerate(zip(FAMILIES, self.ud.parts, strict=True)):
            if f.follows():
                yield i, f, part, slice(k, k + len(part))
                k += len(part)

    def _followed_p(self, ap: Applied) -> np.ndarray:
        """The following units' powers in `ap`, stacked (net, generation-positive)."""
        parts = [f.injection_mw(ap.units[i]) for i, f, _, _ in self._followers()]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _limits(self) -> tuple[np.ndarray, np.ndarray]:
        """What the following units can do at this step (stacked as `_followed_p`)."""
        hold_h = self.step_s / 3600
        bounds = [
            f.limits(self.state.units[i], part, hold_h, self._el_s)
            for i, f, part, _ in self._followers()
        ]
        if not bounds:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([b[0] for b in bounds]), np.concatenate([b[1] for b in bounds])

    def _split(self, p: np.ndarray, base: Applied, shed_p, shed_q) -> Applied:
        """Stacked powers `p` of the following units as applied set-points; the others (DR:
        it cannot act without notice) as in `base`."""
        units = list(base.units)
        for i, f, part, take in self._followers():
            units[i] = f.followed(p[take], base.units[i], self.state.units[i], part)
        return Applied(tuple(units), shed_p, shed_q)

    def _limited(self, ap: Applied) -> Applied:
        """A held plan's set-points within what the units can do now."""
        lo, hi = self._limits()
        p = np.clip(self._followed_p(ap), lo, hi)
        return self._split(p, ap, ap.shed_p, ap.shed_q)

    def _emergency(self, st: GridState) -> Applied:
        """No plan: units idle, the AI excess over its base shed at the campus buses."""
        base = campus_loads_mw(self.campuses, self._campus_profiles, (), np.array([st.t_s]))[0]
        excess = np.maximum(st.ai_load_mw - base, 0.0)
        idle = Applied.idle(self.ud, self.network.n_bus)
        return replace(
            idle, shed_p=self._at_buses(excess), shed_q=self._at_buses(excess * self._campus_q)
        )

    def _setpoints(
        self,
        ap: Applied,
        status: SolveStatus,
        solve_s: float,
        planned_import_mw: float = math.nan,
        planned_vm_pu: np.ndarray | None = None,
    ) -> SetPoints:
        n = self.network.n_bus
        return SetPoints(
            ap.injection_mw(self.ud, n),
            np.zeros(n),
            ap.shed_p.copy(),
            ap.shed_q.copy(),
            status=int(status),
            solve_s=solve_s,
            planned_import_mw=planned_import_mw,
            planned_vm_pu=planned_vm_pu,
        )

    def report(self, t_s: float) -> UnitReport:
        """Units' power, energy, commitment and curtailment as applied at this step."""
        n = len(self.units)
        p, soc, on, dr = np.zeros(n), np.full(n, np.nan), np.zeros(n), np.zeros(n)
        units = zip(self._applied.units, self.state.units, strict=True)
        parts = zip(FAMILIES, self.ud.parts, self.ud.index, units, strict=True)
        for f, part, at, (ap, state) in parts:
            p[at], soc[at], on[at], dr[at] = f.report(ap, state, part)
        return UnitReport(p, soc, on, dr)

    def _at_buses(self, per_campus: np.ndarray) -> np.ndarray:
        return np.bincount(self._campus_bus, per_campus, minlength=self.network.n_bus)


def unit_dataset(units: Sequence[Unit]) -> xr.Dataset:
    """Static per-unit data for the run Dataset (dim `unit`), enough to cost the dispatch."""

    def col(fn, dtype=float):
        return np.array([fn(u) for u in units], dtype=dtype)

    data = {
        "unit_type": (col(lambda u: u.type, str), "1", "FCM type"),
        "unit_bus": (col(lambda u: u.bus, np.int32), "1", "bus of the unit"),
        "unit_count": (col(lambda u: u.count, np.int32), "1", "modules aggregated"),
        "unit_p_mw": (col(lambda u: u.module.p_mw), "MW", "power rating"),
        "unit_e_mwh": (
            col(lambda u: u.family.energy_mwh(u.module)),
            "MWh",
            "energy rating (storage)",
        ),
        "unit_cost_per_mwh": (
            col(lambda u: u.family.cost_per_mwh(u.module)),
            "$/MWh",
            "marginal, curtailment or degradation cost "
            "per MWh generated, curtailed or passed through",
        ),
        "unit_start_cost": (col(lambda u: u.family.start_cost(u.module)), "$", "cost per start"),
    }
    return xr.Dataset(
        variables("unit", data),
        coords={
            "unit": (
                "unit",
                np.array([u.name for u in units], dtype=str),
                {"long_name": "flexible unit (module@bus)"},
            )
        },
    )
