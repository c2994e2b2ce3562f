"""Stage-II rolling MILP dispatcher: the co-simulation's dispatch policy and the units' plant.

A thin policy over the shared model (dispatch_model, blocks) and its solver (solve, lpfirst):

* state advance: the units' state (state.UnitState) moves with the powers applied at every step;
* window: forecasts of the lookahead and the network's losses, measured by an AC load flow of
  the dispatcher's own copy of the network, become the window's data and the state its
  initial state (dispatch_window.py);
* solve: the model is built once and updated in place (bounds only); the hot-started LP answers
  when it is as good as the MILP (lpfirst.py), else the MILP is solved; if the losses at the
  planned point differ from what the model expected, the window is solved again with them (a
  fixed point, at most `LOSS_ITERATIONS` more solves);
* write back: the plan's first period is applied; starts and DR notices are issued;
* fallback: a failed, infeasible or timed-out solve holds the last plan (within what the units
  can do now), then sheds the AI excess; the status is recorded and the run goes on.

Between calls, at every other step, `follow` is the plant's real-time layer (realtime.py). The
policy owns its cadence (`due`): every event step and every `redispatch_s`.

Intervals: `period_s` is the window's period (`redispatch_s`, also the interval between calls);
the plant's power-flow step (`hold_s` of the real-time layer) is how long a set-point holds;
`since_s` is the time since the previous step, over which the units' state advances.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import xarray as xr

from simgrid.config import DispatchConfig, UpstreamConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Unit
from simgrid.ncio import variables
from simgrid.network import Network
from simgrid.optimization import lpfirst
from simgrid.optimization.blocks import InitialState, ModelOptions, ScenarioData, Weights
from simgrid.optimization.builder import ArrayBuilder, PyomoBuilder
from simgrid.optimization.dispatch_model import Handles, Sizes, assemble, units_data
from simgrid.optimization.dispatch_window import Forecaster, VoltageLimits, WindowBuilder
from simgrid.optimization.lindistflow import Losses
from simgrid.optimization.network_model import NetworkModel, network_model
from simgrid.optimization.realtime import RealTimeLayer
from simgrid.optimization.solve import (
    BASE_HIGHS_OPTIONS,
    HIGHS_OPTIONS,
    PersistentModel,
    Termination,
    solve_pyomo,
)
from simgrid.optimization.state import Applied, Plan, UnitState
from simgrid.profiles import LoadProfile
from simgrid.types import (
    Cadence,
    Campus,
    GridState,
    SetPoints,
    Snapshot,
    SolveStatus,
    UnitReport,
)
from simgrid.units import FAMILIES

log = logging.getLogger(__name__)

DISCOUNT_PER_PERIOD = 0.98
LOSS_ITERATIONS = 2  # extra solves when the losses at the planned point differ
LOSS_TOL = 5e-4  # relative to the feeder's demand: losses agreeing this well are kept
MONITOR_ROUNDS = 3  # extra solves when a plan breaks a limit the window did not model


# The windows that reach the MILP are those the LP-first path could not round: on the 8 of the
# example's day HiGHS' feasibility jump found nothing its root rounding and branching did not,
# and took a fifth of the solve time (same solutions without it; an option since HiGHS 1.11).
WINDOW_MIP_OPTIONS = {"mip_heuristic_run_feasibility_jump": False}


class RollingDispatcher:
    """The Stage-II policy over a window builder, the network model, the units' data and the
    real-time layer (built together by `build`). `backend` "highs" (persistent) or "pyomo"
    (rebuilt every call); `reference` (pyomo only) solves the straightforward formulation
    used as the benchmark baseline."""

    def __init__(
        self,
        windows: WindowBuilder,
        net: NetworkModel,
        units: Sequence[Unit],
        realtime: RealTimeLayer,
        cfg: DispatchConfig,
        *,
        backend: str = "highs",
        reference: bool = False,
    ) -> None:
        if reference and backend != "pyomo":
            raise ValueError("the reference formulation is the pyomo rebuild (backend='pyomo')")
        self.windows, self.net, self.realtime = windows, net, realtime
        self.cfg, self.backend = cfg, backend
        # reference: the straightforward formulation of the same model, for benchmarks:
        # binaries in every period and HiGHS' default options (one thread, fixed seed)
        self.options = ModelOptions(
            integer_periods=None if reference else cfg.integer_periods,
            discount=DISCOUNT_PER_PERIOD,
        )
        self.highs_options = BASE_HIGHS_OPTIONS if reference else HIGHS_OPTIONS
        self.units = tuple(units)
        self.unit_names = tuple(u.name for u in self.units)
        self.period_s, self.h = windows.period_s, windows.periods
        self.ud = realtime.ud
        self.sizes = Sizes.fixed(self.ud)
        self.weights = Weights(
            cfg.voll_per_mwh, cfg.imbalance_per_mwh, cfg.voltage_per_pu_h, cfg.restoration_per_mwh
        )
        self.lp_first = True  # try the hot-started LP relaxation before the MILP
        self.reset()

    @classmethod
    def build(
        cls,
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
        hold_s: float = 60.0,
        model: str = "auto",
    ) -> RollingDispatcher:
        """The dispatcher of `units` on a network: its window builder (the forecasts and the
        losses' AC load flow), network model (at the feeder's peak loss factors) and
        real-time layer (`hold_s`: the plant's power-flow step; `model`: which network model,
        see network_model)."""
        limits = VoltageLimits(v_min_pu, v_max_pu, cfg.voltage_margin_pu)
        windows = WindowBuilder(
            network,
            profile,
            campuses,
            upstream,
            limits,
            period_s=cfg.redispatch_s,
            periods=cfg.horizon_steps,
            step_s=hold_s,
            forecaster=forecaster,
        )
        base = np.array([c.base_utilisation * c.p_nom_mw for c in windows.campuses])
        p = network.base_load_p_mw + windows.at_buses(base)
        q = network.base_load_q_mvar + windows.at_buses(base * windows.campus_q)
        # losses' factors at the peak, campuses at their base
        net = network_model(network, max_loading_percent, windows.campuses, (p, q), model)
        ud = units_data(units, cfg.redispatch_s, cfg.horizon_steps)
        network_limits = VoltageLimits(v_min_pu, v_max_pu)  # between calls: the guard's own margin
        realtime = RealTimeLayer(ud, hold_s, cfg.realtime, net, network_limits, max_loading_percent)
        return cls(windows, net, units, realtime, cfg, backend=backend, reference=reference)

    @property
    def forecaster(self) -> Forecaster | None:
        return self.windows.forecaster

    @forecaster.setter
    def forecaster(self, value: Forecaster | None) -> None:
        self.windows.forecaster = value

    def reset(self) -> None:
        """Back to the start of a run (units at rest, no plan, its power flow at a flat start);
        loss factors and network are kept, so a stress worker reuses one dispatcher."""
        self.cadence = Cadence(self.cfg.redispatch_s)
        self.state = UnitState.initial(self.ud)
        self._plan: Plan | None = None
        self._applied = Applied.idle(self.ud, self.windows.network.n_bus)
        self._t_step: float | None = None
        self._since_s = 0.0  # time since the previous step
        self._ai_prev: tuple[float, np.ndarray] | None = None
        # diagnostics of this run
        self.lp_accepted = 0
        self.lp_dives = 0  # of which after fixing the rounded binaries (within the MIP gap)
        self.monitor_resolves = 0  # windows solved again with lines or buses found to matter
        self.loss_resolves = 0
        self.step_wall_s: list[float] = []
        self.solver_s: list[float] = []
        self.costs: list[float] = []
        self.windows.loss_engine.reset()
        self.rest()

    def rest(self) -> None:
        """Solvers cold: its power flow from a flat start, its HiGHS models rebuilt at the next
        call. Called per run and at every block boundary of a streamed run."""
        self.windows.loss_engine.flat_start()
        # HiGHS keeps bases, presolve data and clocks across solves: a fresh model per run makes
        # an episode's decisions independent of what the worker solved before (a rebuild costs
        # one matrix assembly, milliseconds)
        self._milp_model: PersistentModel | None = None
        self._lp_model: PersistentModel | None = None
        self._row_shapes: list[tuple[int, ...]] | None = None

    def due(self, t_s: float, is_event: bool) -> bool:
        """At every event step and every `redispatch_s`."""
        return self.cadence.due(t_s, is_event)

    def snapshot(self) -> Snapshot:
        """The units' state, the plan being followed, the set-points applied at the last step
        and what the forecast, the state advance and the cadence remember (solvers and
        diagnostics are not state: a block boundary rests them)."""
        ai = self._ai_prev
        return Snapshot.join(
            units=self.state.snapshot(),
            plan=None if self._plan is None else self._plan.snapshot(),
            applied=self._applied.snapshot(),
            t_step_s=self._t_step,
            since_s=self._since_s,
            last_dispatch_s=self.cadence.last_s,
            ai_prev_t_s=None if ai is None else ai[0],
            ai_prev_mw=None if ai is None else ai[1],
        )

    def restore(self, snap: Snapshot | None) -> None:
        if snap is None:
            raise ConfigError("<checkpoint>", "policy", None, "missing from the checkpoint")
        n_bus, none = self.windows.network.n_bus, np.zeros(len(self.windows.campuses))
        self.state = UnitState.restore(snap.require("units"), self.ud)
        plan = snap.part("plan")
        self._plan = None if plan is None else Plan.restore(plan, self.ud, self.h, n_bus)
        self._applied = Applied.restore(snap.require("applied"), self.ud, n_bus)
        has = snap.arrays.__contains__
        self._t_step = snap.number("t_step_s", 0.0) if has("t_step_s") else None
        self._since_s = snap.number("since_s", 0.0)
        self.cadence.last_s = snap.number("last_dispatch_s", 0.0)
        self._ai_prev = None
        if has("ai_prev_t_s"):
            self._ai_prev = (snap.number("ai_prev_t_s", 0.0), snap.like("ai_prev_mw", none))

    # ---- state ----------------------------------------------------------------------------
    def _advance(self, t_s: float) -> None:
        """Move the state to t_s under the powers applied at the previous step."""
        if self._t_step is None:
            self._t_step = t_s
            return
        self._since_s = t_s - self._t_step
        self.state.advance(self._applied, self.ud, self._since_s, t_s)
        self._t_step = t_s

    # ---- solve --------------------------------------------------------------------------------
    def _build(self, b, data: ScenarioData, start: InitialState) -> Handles:
        hd, cost = assemble(
            b, self.net, self.ud, self.sizes, data, start, self.weights, self.options
        )
        b.add_cost(cost)
        return hd

    def _solve_highs(self, data: ScenarioData, start: InitialState):
        # after the first call the matrix is known: only bounds and costs are assembled (unless
        # the network model's coefficients follow the point: rebuilt every call)
        first = self._milp_model is None or not self.net.fixed_matrix
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
        """Build the window and solve it, again while the network model finds limits the plan
        breaks that it did not model; a solver crash is data too (recorded, fallback)."""
        data = self.windows.data(st, self._ai_prev)
        if losses is not None:
            data = self.net.with_losses(data, losses)
        start = self.windows.start(st, data, self.state, self.ud, self._since_s)
        t0 = time.perf_counter()
        try:
            solve = self._solve_highs if self.backend == "highs" else self._solve_pyomo
            status, x, hd = solve(data, start)
            for _ in range(MONITOR_ROUNDS):
                if x is None or not self.net.monitor(x, hd.network, data):
                    break
                self.monitor_resolves += 1
                status, x, hd = solve(data, start)
        except Exception:
            log.warning("dispatch solve failed at t = %.0f s", st.t_s, exc_info=True)
            status, x, hd = SolveStatus.SHED, None, None
        self._solver_acc += time.perf_counter() - t0
        return status, x, hd

    def _solve_with_losses(self, st: GridState):
        """Solve with the measured losses; again while the planned point's losses differ from
        what the model expected there (measured losses + marginal losses of the change)."""
        losses = self.windows.losses(st, self._applied, self.ud, self.net)
        status, x, hd = self._solve(st, losses)
        tol = LOSS_TOL * max(float(st.served_p_mw().sum()), 1e-3)
        for _ in range(LOSS_ITERATIONS):
            if x is None or losses is None:
                break
            planned = self.windows.plan(st, x, hd, self.net).at(0)
            again = self.windows.losses(st, planned, self.ud, self.net)
            if again is None:
                break
            expected = self.net.expected_losses_mw(losses, again.injection_mw)
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
        self.cadence.called(st.t_s)
        self._solver_acc = 0.0
        self._advance(st.t_s)
        status, x, hd = self._solve_with_losses(st)
        planned_import, planned_vm, planned_flows = math.nan, None, None
        if x is not None:
            plan = self.windows.plan(st, x, hd, self.net)
            self._plan = plan
            self.state.issue_commands(self.ud, x, hd, st.t_s, self.period_s, self.h)
            applied = plan.at(0)
            planned_import = float(x[hd.imports.imp[0]])
            planned_vm = self.net.planned_vm(x, hd.network, st.energised)
            planned_flows = self.net.planned_flows_mw(x, hd.network)
        elif self._plan is not None and st.t_s - self._plan.t_s < self.h * self.period_s:
            status = SolveStatus.HELD
            held = self._plan.at(int((st.t_s - self._plan.t_s) // self.period_s))
            applied = self.realtime.limited(st, held, self.state, self._since_s)
        else:
            status = SolveStatus.SHED
            self._plan = None
            applied = self.windows.emergency(st, self.ud)
        self._ai_prev = (st.t_s, st.ai_load_mw.copy())
        self._applied = applied
        self.solver_s.append(self._solver_acc)
        self.step_wall_s.append(time.perf_counter() - t0)
        wall_s = self.step_wall_s[-1]
        return self._setpoints(applied, status, wall_s, planned_import, planned_vm, planned_flows)

    def follow(self, st: GridState) -> SetPoints:
        """The real-time layer between calls (see realtime.py), or the held plan (`hold`)."""
        t0 = time.perf_counter()
        self._advance(st.t_s)
        base = self._plan.at(0) if self._plan is not None else self._applied
        applied = self.realtime.setpoints(st, base, self._plan, self.state, self._since_s)
        self._applied = applied
        return self._setpoints(applied, SolveStatus.IDLE, time.perf_counter() - t0)

    def _setpoints(
        self,
        ap: Applied,
        status: SolveStatus,
        solve_s: float,
        planned_import_mw: float = math.nan,
        planned_vm_pu: np.ndarray | None = None,
        planned_line_p_mw: np.ndarray | None = None,
    ) -> SetPoints:
        n = self.windows.network.n_bus
        return SetPoints(
            ap.injection_mw(self.ud, n),
            np.zeros(n),
            ap.shed_p.copy(),
            ap.shed_q.copy(),
            status=int(status),
            solve_s=solve_s,
            planned_import_mw=planned_import_mw,
            planned_vm_pu=planned_vm_pu,
            planned_line_p_mw=planned_line_p_mw,
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
