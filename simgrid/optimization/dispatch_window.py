"""A Stage-II call's window: what the next `horizon_steps` periods of `period_s` face and where
the units start it, built from what the plant measured now.

Forecasts: conventional load from the day-ahead profile (measured in period 0), AI load by
persistence of its current ramp for one period then held, or perfect foresight when a
forecaster is given. Topology and what protection disconnected persist through the window.
The import schedule follows the day-ahead profile from its measured value. The network's
losses come from an AC load flow of the dispatcher's own copy of the network at the measured
demand and set-points, taken in as the network model does (lindistflow.py). A solved window's
columns are read back as a `Plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.aiload import campus_loads_mw
from simgrid.config import UpstreamConfig
from simgrid.network import Network
from simgrid.optimization.blocks import InitialState, ScenarioData
from simgrid.optimization.dispatch_model import Handles, UnitData
from simgrid.optimization.lindistflow import Losses
from simgrid.optimization.network_model import NetworkModel
from simgrid.optimization.state import Applied, Plan, UnitState
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.types import Campus, GridState
from simgrid.units import FAMILIES

Forecaster = Callable[[np.ndarray], np.ndarray]  # times (H,) -> AI load (H, campus)


@dataclass(frozen=True)
class VoltageLimits:
    """The window's voltage band (pu), tightened by a margin that covers the drop while
    demand keeps moving between calls."""

    v_min_pu: float
    v_max_pu: float
    margin_pu: float = 0.0

    @property
    def band_pu(self) -> tuple[float, float]:
        return self.v_min_pu + self.margin_pu, self.v_max_pu - self.margin_pu

    @property
    def v2(self) -> tuple[float, float]:
        lo, hi = self.band_pu
        return lo**2, hi**2


class WindowBuilder:
    """Builds each call's window data and initial state, measures the losses, reads plans."""

    def __init__(
        self,
        network: Network,
        profile: LoadProfile,
        campuses: Sequence[Campus],
        upstream: UpstreamConfig,
        limits: VoltageLimits,
        *,
        period_s: float,
        periods: int,
        step_s: float,
        forecaster: Forecaster | None = None,
    ) -> None:
        self.network, self.profile, self.upstream = network, profile, upstream
        self.campuses = tuple(campuses)
        self.campus_profiles = [campus_profile(c) for c in self.campuses]
        self.campus_bus = np.array([c.bus for c in self.campuses], dtype=int)
        self.campus_q = np.array([c.q_per_p for c in self.campuses])
        self.v2 = limits.v2
        self.period_s, self.periods, self.step_s = period_s, periods, step_s
        self.forecaster = forecaster
        self.loss_engine = PowerFlowEngine(network)  # the dispatcher's own copy, for losses

    def at_buses(self, per_campus: np.ndarray) -> np.ndarray:
        return np.bincount(self.campus_bus, per_campus, minlength=self.network.n_bus)

    def ai_forecast(
        self, st: GridState, times: np.ndarray, ai_prev: tuple[float, np.ndarray] | None
    ) -> np.ndarray:
        """AI load per period (H, campus): the forecaster's, or persistence of the ramp seen
        since the last call `ai_prev` (time, load) for one period, then held."""
        if self.forecaster is not None:
            out = self.forecaster(times)
            out[0] = st.ai_load_mw
            return out
        slope = np.zeros_like(st.ai_load_mw)
        if ai_prev is not None and st.t_s > ai_prev[0]:
            slope = (st.ai_load_mw - ai_prev[1]) / (st.t_s - ai_prev[0])
        # persistence of the current ramp for one period, then held (steps are not ramps)
        ahead = np.minimum(times - st.t_s, self.period_s)[:, None]
        p_nom = np.array([c.p_nom_mw for c in self.campuses])
        return np.clip(st.ai_load_mw + slope * ahead, 0.0, p_nom)

    def data(self, st: GridState, ai_prev: tuple[float, np.ndarray] | None) -> ScenarioData:
        """What the window faces (without losses): forecast demand, topology, schedule."""
        nw, h, period_s = self.network, self.periods, self.period_s
        times = st.t_s + period_s * np.arange(h)
        f = self.profile.at(times)[:, None]
        ai = self.ai_forecast(st, times, ai_prev)
        ai[0] = st.ai_load_mw
        conv_p = nw.base_load_p_mw * f
        conv_q = nw.base_load_q_mvar * f
        conv_p[0] = st.demand_p_mw - self.at_buses(st.ai_load_mw)  # measured now
        conv_q[0] = st.demand_q_mvar - self.at_buses(st.ai_load_mw * self.campus_q)
        # what protection disconnected stays disconnected through the window (persistence)
        kept, live = st.connected(), st.energised
        conv_p, conv_q = conv_p * kept, conv_q * kept
        ai = ai * kept[self.campus_bus]
        dp = conv_p + np.stack([self.at_buses(a) for a in ai])
        dq = conv_q + np.stack([self.at_buses(a * self.campus_q) for a in ai])
        base_ai = campus_loads_mw(self.campuses, self.campus_profiles, (), times)
        base_total = nw.base_load_p_mw.sum() * f[:, 0] + base_ai.sum(axis=1)
        line_active = st.line_in_service & live[nw.line_from] & live[nw.line_to]
        return ScenarioData(
            dt_h=period_s / 3600,
            demand_p=dp,
            demand_q=dq,
            conv_p=conv_p,
            ai_p=ai,
            energised=np.broadcast_to(live, (h, nw.n_bus)),
            line_active=np.broadcast_to(line_active, (h, nw.n_line)),
            schedule=st.import_schedule_mw + base_total - base_total[0],
            band=self.upstream.band_mw,
            ramp=self.upstream.ramp_mw_per_min * period_s / 60,
            step_h=self.step_s / 3600,
            v2_min=self.v2[0],
            v2_max=self.v2[1],
        )

    def start(
        self, st: GridState, data: ScenarioData, state: UnitState, ud: UnitData, since_s: float
    ) -> InitialState:
        """Where the window starts: what the upstream follows now, the units as their state
        allows (`since_s`: time since the previous step)."""
        return state.window_start(
            ud,
            st.t_s,
            self.period_s,
            self.periods,
            since_s=since_s,
            follow_mw=st.upstream_follow_mw,
        )

    def losses(
        self, st: GridState, ap: Applied, ud: UnitData, model: NetworkModel
    ) -> Losses | None:
        """Line losses of the AC load flow at the measured demand and set-points `ap`."""
        live = st.energised
        self.loss_engine.set_line_status(st.line_in_service)
        inj = ap.injection_mw(ud, self.network.n_bus) * live
        kept = st.connected()
        res = self.loss_engine.solve(
            st.demand_p_mw * kept - ap.shed_p - inj, st.demand_q_mvar * kept - ap.shed_q
        )
        if not res.converged:
            return None
        return model.losses(res, live, inj + ap.shed_p, ap.shed_q)

    def plan(self, st: GridState, x: np.ndarray, hd: Handles, model: NetworkModel) -> Plan:
        """A solved window read back: the units' decisions and the shedding per bus."""
        shed_conv, shed_ai = x[hd.shed.conv], x[hd.shed.ai]
        shed_p = shed_conv + np.stack([self.at_buses(a) for a in shed_ai])
        shed_q = shed_conv * model.buses.q_per_p + np.stack(
            [self.at_buses(a * self.campus_q) for a in shed_ai]
        )
        return Plan(
            st.t_s,
            tuple(f.plan_of(x, fh) for f, fh in zip(FAMILIES, hd.units, strict=True)),
            shed_p,
            shed_q,
            float(st.served_p_mw().sum()),
            st.import_schedule_mw,
        )

    def emergency(self, st: GridState, ud: UnitData) -> Applied:
        """No plan: units idle, the AI excess over its base shed at the campus buses."""
        base = campus_loads_mw(self.campuses, self.campus_profiles, (), np.array([st.t_s]))[0]
        excess = np.maximum(st.ai_load_mw - base, 0.0)
        idle = Applied.idle(ud, self.network.n_bus)
        return Applied(idle.units, self.at_buses(excess), self.at_buses(excess * self.campus_q))
