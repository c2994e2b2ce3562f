"""Linearised AC: the network model of a meshed grid (one `NetworkModel`).

Around an AC solution -- the measured state at a dispatch call, the base case in planning --
the grid's sensitivities (linearised.py: Newton Jacobian, distributed slack, losses) say how
bus voltages, line flows and the losses move with the decisions' injections. A window then has
no per-bus flow variables: per period, one balance (what the generators supply + the
decisions' injections = demand + losses, the losses' change linearised), and rows only for the
lines and buses that matter:

* monitored lines: active flow at the from end within the line's rating, as MW at its lower
  end's voltage less its reactive flow at the point, with overload penalised as shed load
  (VoLL: an operator sheds rather than overloads);
* monitored buses: voltage magnitude within limits, violations penalised as LinDistFlow's.

Which lines and buses are monitored is decided lazily: those within `MONITOR_FRACTION` of a
limit in any period with the decisions held at the point, those found past a limit at a plan
(`monitor`, after which the window is solved again), and, once found, for the rest of the
run. Only the decisions' buses (units, campuses) enter the rows, so a 2,000-bus grid gives a
window of a few hundred rows. Shedding is the campuses' (their AI load at VoLL): the
dispatcher of flexible units does not shed other customers' load on a transmission grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from simgrid.network import Network, lower_end_pu
from simgrid.optimization.blocks import BusData, ScenarioData, Weights
from simgrid.optimization.builder import INF
from simgrid.powerflow import PowerFlowEngine, PowerFlowResult
from simgrid.powerflow.linearised import Grid, Linearised
from simgrid.types import Campus

COL = np.newaxis
MONITOR_FRACTION = 0.9  # a line at 90 % of its rating (a bus 90 % of the way to a limit from 1)
MAX_MONITOR_ROUNDS = 3  # a plan checked against every line and bus this often at most


@dataclass(frozen=True, eq=False)
class Point:
    """An AC solution to linearise at: voltages, line flows (from end, MW and loading), the
    decisions' injections there per bus (MW, Mvar: units and shedding), the losses, and the
    demand it was solved for (None: the window's first period's)."""

    vm_pu: np.ndarray
    va_degree: np.ndarray
    line_p_mw: np.ndarray
    loading_percent: np.ndarray
    injection_mw: np.ndarray
    injection_mvar: np.ndarray
    total_mw: float  # the losses
    demand_p: np.ndarray | None = None
    demand_q: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class AcHandles:
    """A window's network part: its linearisation, monitored lines and buses, their slacks,
    and what it predicts with the decisions held at the point (per period)."""

    lin: Linearised
    point: Point
    lines: np.ndarray  # monitored
    buses: np.ndarray
    overload: np.ndarray  # (H, monitored lines) MW
    under: np.ndarray  # (H, monitored buses) pu
    over: np.ndarray
    flow0: np.ndarray  # (H, L) MW
    vm0: np.ndarray  # (H, N) pu
    loss0: np.ndarray  # (H,) MW
    p_limit: np.ndarray  # (L,) MW a line may carry (at the point's voltage and reactive flow)
    v_min: float
    v_max: float
    decisions: list = field(default_factory=list)  # (bus, cols (H,), sign, q ratio) of balance
    sens: dict = field(default_factory=dict)  # bus -> (dvm (N,), dflow (L,), dloss) per MW / Mvar


@dataclass(eq=False)
class LinearAC:
    """A meshed grid as the model sees it: MATPOWER's model of it (Grid), its lines' ends and
    ratings, the point planning linearises at (the base case with the campuses at base), and
    the lines and buses found to matter so far (kept for the rest of the run)."""

    buses: BusData
    grid: Grid
    line_from: np.ndarray
    line_to: np.ndarray
    s_rated_mva: np.ndarray  # (L,) 100 % loading at 1 pu
    max_loading_percent: float
    base: Point
    fixed_mw: float = 0.0  # generation no generator's control moves (fixed injections, sgens)
    fixed_matrix: bool = False  # the sensitivities change with the point: rebuilt every call
    watched_lines: set = field(default_factory=set)
    watched_buses: set = field(default_factory=set)
    _lin: dict = field(default_factory=dict)

    def __getstate__(self) -> dict:
        """Sent to a dask worker without the factorised Jacobians it caches (SuperLU objects
        cannot be serialised; the worker factorises its own)."""
        return {**self.__dict__, "_lin": {}}

    @classmethod
    def of(
        cls,
        nw: Network,
        max_loading_percent: float,
        campuses: Sequence[Campus] = (),
        mlf: np.ndarray | None = None,
    ) -> LinearAC:
        del mlf  # the losses' change comes from the sensitivities at each point
        buses = BusData.of(nw, campuses, campuses_only=True)
        campus_bus = buses.campus_bus
        base_ai = np.array([c.base_utilisation * c.p_nom_mw for c in campuses])
        p = nw.base_load_p_mw + np.bincount(campus_bus, base_ai, minlength=nw.n_bus)
        q = nw.base_load_q_mvar + np.bincount(
            campus_bus, base_ai * buses.campus_q_per_p, minlength=nw.n_bus
        )
        res = PowerFlowEngine(nw).solve(p, q)
        zero = np.zeros(nw.n_bus)
        base = at_solution(res, zero, zero, p, q)
        s_rated = np.sqrt(3) * nw.vn_kv[nw.line_from] * nw.line_max_i_ka
        sgen = nw.net.sgen
        fixed = float((sgen.p_mw * sgen.scaling * sgen.in_service).sum()) if len(sgen) else 0.0
        return cls(
            buses,
            Grid.of(nw),
            nw.line_from,
            nw.line_to,
            s_rated,
            max_loading_percent,
            base,
            fixed,
        )

    def with_campuses(self, campus_bus, campus_q_per_p) -> LinearAC:
        sheddable = np.zeros(self.buses.n_bus, bool)
        sheddable[campus_bus] = True
        buses = replace(
            self.buses,
            campus_bus=campus_bus,
            campus_q_per_p=campus_q_per_p,
            sheddable=sheddable,
        )
        return replace(self, buses=buses, watched_lines=set(), watched_buses=set(), _lin={})

    # ---- the window ---------------------------------------------------------------------
    def define(self, b, d: ScenarioData, wt: Weights, disc: np.ndarray):
        """What the window predicts with the decisions held at the point, the monitored lines
        and buses, and their penalised slacks."""
        point = d.point if d.point is not None else self.base
        lin = self._linearised(point, d.line_active[0])
        h = d.periods
        d0p = point.demand_p if point.demand_p is not None else d.demand_p[0]
        d0q = point.demand_q if point.demand_q is not None else d.demand_q[0]
        dvm, dflow, dloss = lin.response(-(d.demand_p - d0p).T, -(d.demand_q - d0q).T)
        flow0 = point.line_p_mw[COL, :] + dflow.T
        vm0 = point.vm_pu[COL, :] + dvm.T
        loss0 = point.total_mw + dloss
        p_limit = self._p_limit(point, d.line_active[0])
        v_min, v_max = np.sqrt(d.v2_min), np.sqrt(d.v2_max)
        live = d.line_active[0] & np.isfinite(p_limit)
        near = (np.abs(flow0) >= MONITOR_FRACTION * p_limit).any(axis=0) & live
        lines = np.union1d(np.flatnonzero(near), sorted(self.watched_lines)).astype(int)
        lines = lines[live[lines]]
        mid = 1.0
        band = MONITOR_FRACTION * np.array([mid - v_min, v_max - mid])
        energised = d.energised[0]
        close = ((vm0 < mid - band[0]) | (vm0 > mid + band[1])).any(axis=0) & energised
        buses = np.union1d(np.flatnonzero(close), sorted(self.watched_buses)).astype(int)
        buses = buses[energised[buses]]
        overload = b.add_vars((h, len(lines)), 0.0, INF)
        under = b.add_vars((h, len(buses)), 0.0, INF)
        over = b.add_vars((h, len(buses)), 0.0, INF)
        volt = wt.voltage * d.dt_h * disc[:, COL]
        cost = [(wt.voll * d.dt_h * disc[:, COL], overload), (volt, under), (volt, over)]
        hd = AcHandles(
            lin,
            point,
            lines,
            buses,
            overload,
            under,
            over,
            flow0,
            vm0,
            loss0,
            p_limit,
            v_min,
            v_max,
        )
        return hd, cost

    def balance(self, b, d: ScenarioData, nh: AcHandles, shed, ih, injections) -> None:
        """Per period: supply + decisions = demand + losses; the monitored lines' flows and
        buses' voltages within their limits (slack penalised)."""
        h = d.periods
        decisions = []  # (bus, cols (H,), P sign, Q per P)
        for bus_of, cols, sign in injections:
            for k, bus in enumerate(bus_of):
                decisions.append((int(bus), cols[k], sign, 0.0))
        for k, bus in enumerate(self.buses.campus_bus):
            decisions.append((int(bus), shed.ai[:, k], 1.0, float(self.buses.campus_q_per_p[k])))
        for bus in np.flatnonzero(self.buses.sheddable):
            decisions.append((int(bus), shed.conv[:, bus], 1.0, float(self.buses.q_per_p[bus])))
        nh.decisions.extend(decisions)
        self._sensitivities(nh, {bus for bus, _, _, _ in decisions})
        point = nh.point
        # the constant part: the point's decisions taken back out (the rows hold their change)
        offset_loss = 0.0
        offset_flow = np.zeros(len(self.line_from))
        offset_vm = np.zeros(self.buses.n_bus)
        for bus in {bus for bus, _, _, _ in decisions}:
            for j, x0 in ((0, point.injection_mw[bus]), (1, point.injection_mvar[bus])):
                dvm, dflow, dl = nh.sens[bus][j]
                offset_loss += dl * x0
                offset_flow += dflow * x0
                offset_vm += dvm * x0
        supply = [(1.0, ih.imp)]
        flows = [[] for _ in nh.lines]
        volts = [[] for _ in nh.buses]
        for bus, cols, sign, q_ratio in decisions:
            (dvm_p, dflow_p, dl_p), (dvm_q, dflow_q, dl_q) = nh.sens[bus]
            dvm = sign * (dvm_p + q_ratio * dvm_q)
            dflow = sign * (dflow_p + q_ratio * dflow_q)
            loss = sign * (dl_p + q_ratio * dl_q)
            supply.append((np.full(h, sign - loss), cols))  # its MW, less the losses it moves
            for r, line in enumerate(nh.lines):
                flows[r].append((np.full(h, dflow[line]), cols))
            for r, bus_v in enumerate(nh.buses):
                volts[r].append((np.full(h, dvm[bus_v]), cols))
        # what the generators supply: demand and losses, less what fixed injections give
        demand = d.demand_p.sum(axis=1) + nh.loss0 - offset_loss - self.fixed_mw
        b.add_rows(supply, lo=demand, hi=demand)
        for r, line in enumerate(nh.lines):
            base = nh.flow0[:, line] - offset_flow[line]
            lim = nh.p_limit[line]
            cols = nh.overload[:, r]
            b.add_rows([*flows[r], (-1.0, cols)], hi=lim - base)
            b.add_rows([*flows[r], (1.0, cols)], lo=-lim - base)
        for r, bus_v in enumerate(nh.buses):
            base = nh.vm0[:, bus_v] - offset_vm[bus_v]
            b.add_rows([*volts[r], (1.0, nh.under[:, r])], lo=nh.v_min - base)
            b.add_rows([*volts[r], (-1.0, nh.over[:, r])], hi=nh.v_max - base)

    # ---- what a solved window predicts ----------------------------------------------------
    def planned_vm(self, x: np.ndarray, nh: AcHandles, energised: np.ndarray) -> np.ndarray:
        vm = nh.vm0[0] + self._change(x, nh, 0, 1)
        return np.where(energised, vm, np.nan)

    def planned_flows_mw(self, x: np.ndarray, nh: AcHandles) -> np.ndarray:
        return nh.flow0[0] + self._change(x, nh, 0, 2)

    def monitor(self, x: np.ndarray, nh: AcHandles, data: ScenarioData) -> bool:
        """Lines and buses past a limit at the plan (any period) that the window did not
        monitor: watched from now on; True if there were any (solve again)."""
        new = False
        for t in range(data.periods):
            flow = nh.flow0[t] + self._change(x, nh, t, 2)
            vm = nh.vm0[t] + self._change(x, nh, t, 1)
            over = (np.abs(flow) > nh.p_limit) & data.line_active[t]
            off = ((vm < nh.v_min) | (vm > nh.v_max)) & data.energised[t]
            for line in np.flatnonzero(over):
                if line not in nh.lines and line not in self.watched_lines:
                    self.watched_lines.add(int(line))
                    new = True
            for bus in np.flatnonzero(off):
                if bus not in nh.buses and bus not in self.watched_buses:
                    self.watched_buses.add(int(bus))
                    new = True
        return new

    def _change(self, x: np.ndarray, nh: AcHandles, t: int, what: int) -> np.ndarray:
        """Period t's change from the point by the decisions (1: voltages, 2: flows)."""
        out = 0.0
        for bus, cols, sign, q_ratio in nh.decisions:
            (sp, sq) = nh.sens[bus]
            out = out + sign * x[cols[t]] * (sp[what - 1] + q_ratio * sq[what - 1])
        for bus in {bus for bus, _, _, _ in nh.decisions}:
            sp, sq = nh.sens[bus]
            out = out - nh.point.injection_mw[bus] * sp[what - 1]
            out = out - nh.point.injection_mvar[bus] * sq[what - 1]
        return out

    # ---- losses, as every network model takes them --------------------------------------
    def losses(self, res: PowerFlowResult, live: np.ndarray, injection_mw, injection_mvar=None):
        """The solution measured at a dispatch call, to linearise the window at."""
        q = np.zeros_like(injection_mw) if injection_mvar is None else injection_mvar
        return at_solution(res, injection_mw, q)

    def with_losses(self, data: ScenarioData, losses: Point) -> ScenarioData:
        return replace(data, point=losses)

    def expected_losses_mw(self, losses: Point, injection_mw: np.ndarray) -> float:
        """The losses at other injections: the point's plus their linearised change (in the
        topology the point was last linearised in)."""
        dp = injection_mw - losses.injection_mw
        known = [lin for point, lin in self._lin.values() if point is losses]
        if not np.any(dp) or not known:
            return losses.total_mw
        return losses.total_mw + float(known[-1].response(dp, np.zeros_like(dp))[2][0])

    def sensitivity(self, line_in_service: np.ndarray):
        """The real-time layer's: this topology linearised at the base point."""
        return _GuardView(self, self._linearised(self.base, line_in_service))

    # ---- helpers ----------------------------------------------------------------------
    def _linearised(self, point: Point, line_in_service: np.ndarray) -> Linearised:
        """The linearisation at `point` in a topology (the last few kept, with their points:
        an entry is found only for the very point object it was made at)."""
        key = (id(point), line_in_service.tobytes())
        known = self._lin.get(key)
        if known is not None and known[0] is point:
            return known[1]
        if len(self._lin) >= 8:  # a run's points come and go
            self._lin.pop(next(iter(self._lin)))
        lin = Linearised(self.grid, point.vm_pu, point.va_degree, line_in_service)
        self._lin[key] = (point, lin)
        return lin

    def _sensitivities(self, nh: AcHandles, buses: set) -> None:
        """Per decision bus, the response to a MW and to a Mvar injected there."""
        todo = sorted(b for b in buses if b not in nh.sens)
        if not todo:
            return
        n = self.buses.n_bus
        e = np.zeros((n, len(todo)))
        e[todo, np.arange(len(todo))] = 1.0
        zero = np.zeros_like(e)
        dvm_p, dflow_p, dl_p = nh.lin.response(e, zero)
        dvm_q, dflow_q, dl_q = nh.lin.response(zero, e)
        for j, bus in enumerate(todo):
            nh.sens[bus] = (
                (dvm_p[:, j], dflow_p[:, j], float(dl_p[j])),
                (dvm_q[:, j], dflow_q[:, j], float(dl_q[j])),
            )

    def _p_limit(self, point: Point, line_in_service: np.ndarray) -> np.ndarray:
        """MW a line may carry: its MVA rating at its lower end's voltage, less the reactive
        flow it carries at the point (held)."""
        s_line = self.s_rated_mva * lower_end_pu(point.vm_pu, self.line_from, self.line_to)
        s_max = s_line * self.max_loading_percent / 100
        s_now = np.nan_to_num(point.loading_percent) / 100 * s_line
        q2 = np.maximum(s_now**2 - np.nan_to_num(point.line_p_mw) ** 2, 0.0)
        lim = np.sqrt(np.maximum(s_max**2 - q2, 0.0))
        return np.where(line_in_service, lim, np.inf)


def at_solution(res: PowerFlowResult, injection_mw, injection_mvar, demand_p=None, demand_q=None):
    """The point of an AC solution: what it was solved with (the decisions' injections, and
    the demand if given) and what it gave."""
    return Point(
        res.vm_pu,
        res.va_degree,
        np.nan_to_num(res.line_p_from_mw),
        np.nan_to_num(res.line_loading_percent),
        np.asarray(injection_mw, float),
        np.asarray(injection_mvar, float),
        float(res.losses_mw),
        demand_p,
        demand_q,
    )


@dataclass(frozen=True, eq=False)
class _GuardView:
    """What the real-time layer asks of a network model's sensitivities (see
    lindistflow.Response), from a linearisation: squared-voltage changes are 2 V dV."""

    model: LinearAC
    lin: Linearised

    @property
    def line_from(self) -> np.ndarray:
        return self.model.line_from

    @property
    def line_to(self) -> np.ndarray:
        return self.model.line_to

    @property
    def s_rated_mva(self) -> np.ndarray:
        return self.model.s_rated_mva

    def at(self, vm_pu: np.ndarray, line_p_mw: np.ndarray) -> _GuardView:
        return self

    def v2(self, dp: np.ndarray, dq: np.ndarray) -> np.ndarray:
        dvm = self.lin.response(dp[:, COL], dq[:, COL])[0][:, 0]
        return 2 * self.lin.vm_pu * dvm

    def flow(self, dp: np.ndarray) -> np.ndarray:
        return self.lin.response(dp[:, COL], np.zeros((len(dp), 1)))[1][:, 0]

    def v2_columns(self, buses: np.ndarray) -> np.ndarray:
        e = self._unit(buses)
        return 2 * self.lin.vm_pu[:, COL] * self.lin.response(e, np.zeros_like(e))[0]

    def flow_columns(self, buses: np.ndarray) -> np.ndarray:
        e = self._unit(buses)
        return self.lin.response(e, np.zeros_like(e))[1]

    def _unit(self, buses: np.ndarray) -> np.ndarray:
        e = np.zeros((self.model.buses.n_bus, len(buses)))
        e[buses, np.arange(len(buses))] = 1.0
        return e
