"""LinDistFlow: the network model of a radial feeder (one `NetworkModel`).

P/Q flows on the feeder tree, squared voltage drops v_to = v_from - 2 (r P + x Q) / V_base^2,
voltage limits with penalised violation, a hard 16-gon inside each line's MVA rating (the
rating is a current: at the measured voltage of the line's lower end), and per bus and period
the balance of flows, import, units and shedding. Shedding at VoLL is the feasible last resort.

Losses: LinDistFlow with sending-end flows drops only the (r^2 + x^2) l term of DistFlow, which
makes it conservative (the AC voltage is at or above the linear one); without the losses in
the flows it is optimistic and its import misses the losses the schedule carries. So the
losses of an AC load flow at the measured point are demand at each line's receiving end, and
marginal loss factors carry how they change with the decisions to the substation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from simgrid.network import Network, lower_end_pu
from simgrid.optimization.blocks import (
    BusData,
    ImportHandles,
    ScenarioData,
    ShedHandles,
    Weights,
)
from simgrid.optimization.builder import INF, Term
from simgrid.powerflow import PowerFlowEngine, PowerFlowResult
from simgrid.types import Campus

COL = np.newaxis
# the angles of the line-rating polygon's facets between the P and Q axes' own (the bounds)
_FACETS = np.pi / 8 * np.arange(1, 4)


@dataclass(frozen=True, eq=False)
class LinDistFlow:
    """A radial feeder as the model sees it: its buses, lines as built (LinDistFlow
    coefficients, MVA ratings) and marginal loss factors."""

    buses: BusData
    line_from: np.ndarray
    line_to: np.ndarray
    r_coef: np.ndarray  # 2 r / V_base^2 (pu^2 per MW)
    x_coef: np.ndarray  # 2 x / V_base^2 (pu^2 per Mvar)
    s_max_mva: np.ndarray  # the rating at the config's maximum loading
    mlf: np.ndarray  # (N,) marginal loss factor: d(losses)/d(injection at the bus)
    s_rated_mva: np.ndarray  # (L,) 100 % loading at 1 pu
    fixed_matrix: bool = True  # a window's rows change only in their bounds

    @classmethod
    def of(
        cls,
        nw: Network,
        max_loading_percent: float,
        campuses: Sequence[Campus] = (),
        mlf: np.ndarray | None = None,
    ) -> LinDistFlow:
        """The model's view of a network: tree, coefficients, ratings, load shares."""
        vb2 = nw.vn_kv[nw.line_from] ** 2
        s_rated = np.sqrt(3) * nw.vn_kv[nw.line_from] * nw.line_max_i_ka
        buses = BusData.of(nw, campuses)
        return cls(
            buses,
            nw.line_from,
            nw.line_to,
            2 * nw.line_r_ohm / vb2,
            2 * nw.line_x_ohm / vb2,
            s_rated * max_loading_percent / 100,
            np.zeros(nw.n_bus) if mlf is None else mlf,
            s_rated,
        )

    def define(self, b, d: ScenarioData, wt: Weights, disc: np.ndarray):
        """The network's columns and rows for a window; its handles and cost (violations)."""
        return _define(self, b, d, wt, disc)

    def balance(self, b, d, nh, shed, ih, injections) -> None:
        """Per bus and period: flows, import, shedding and the units' injections = demand."""
        _balances(self, b, d, nh, shed, ih, injections)

    def planned_vm(self, x: np.ndarray, nh: NetworkHandles, energised: np.ndarray) -> np.ndarray:
        """The voltages (pu) the model predicts in period 0 (NaN at dead buses)."""
        v2 = np.maximum(x[nh.v2[0]], 0.0)
        return np.where(energised, np.sqrt(v2), np.nan)

    def planned_flows_mw(self, x: np.ndarray, nh: NetworkHandles) -> np.ndarray:
        """The active power (MW) the model predicts on each line in period 0, from-to."""
        return x[nh.p[0]]

    def losses(
        self, res: PowerFlowResult, live: np.ndarray, injection_mw, injection_mvar=None
    ) -> Losses:
        """A solved load flow's line losses as demand at each line's receiving end."""
        return _at_receiving_ends(self.line_from, self.line_to, res, live, injection_mw)

    def monitor(self, x: np.ndarray, nh: NetworkHandles, data: ScenarioData) -> bool:
        """Every line and bus is in the window: nothing to add."""
        return False

    def with_losses(self, data: ScenarioData, losses: Losses) -> ScenarioData:
        """The window with `losses` in its demand (see `_with_losses`)."""
        return _with_losses(data, losses, self.buses.slack, self.mlf)

    def expected_losses_mw(self, losses: Losses, injection_mw: np.ndarray) -> float:
        """Losses at `injection_mw`: the measured ones plus their marginal change."""
        return losses.total_mw + self.mlf @ (injection_mw - losses.injection_mw)

    def sensitivity(self, line_in_service: np.ndarray) -> Sensitivity:
        """How voltages and flows move with injections on the tree of the lines in service."""
        return _sensitivity(self, line_in_service)

    def with_campuses(self, campus_bus, campus_q_per_p) -> LinDistFlow:
        return replace(
            self, buses=replace(self.buses, campus_bus=campus_bus, campus_q_per_p=campus_q_per_p)
        )


@dataclass(frozen=True, eq=False)
class NetworkHandles:
    p: np.ndarray  # (H, L) active flow
    q: np.ndarray
    v2: np.ndarray  # (H, N) squared voltage
    under: np.ndarray
    over: np.ndarray


def _define(net: LinDistFlow, b, d: ScenarioData, wt: Weights, disc: np.ndarray):
    """Flows within the rating's inscribed 16-gon, squared voltages, penalised violations."""
    h, n, lines = d.periods, net.buses.n_bus, len(net.line_from)
    active = np.broadcast_to(d.line_active, (h, lines))
    # the rating circle's inscribed 16-gon: no flow it allows exceeds the rating (its corners
    # are on the circle), and it gives away at most 1 - cos(pi/16) = 1.9 % of it
    s_max = net.s_max_mva * d.line_v_pu * np.cos(np.pi / 16)
    lim = np.where(active, s_max, 0.0)
    p = b.add_vars((h, lines), -lim, lim)
    q = b.add_vars((h, lines), -lim, lim)
    slack = np.zeros((h, n), bool)
    slack[:, net.buses.slack] = True
    v2 = b.add_vars((h, n), np.where(slack, 1.0, 0.0), np.where(slack, 1.0, 4.0))
    under = b.add_vars((h, n), 0.0, INF)
    over = b.add_vars((h, n), 0.0, INF)
    live = np.broadcast_to(d.energised, (h, n))
    b.add_rows([(1.0, v2), (1.0, under)], lo=np.where(live, d.v2_min, -INF))
    b.add_rows([(1.0, v2), (-1.0, over)], hi=np.where(live, d.v2_max, INF))
    drop = np.where(active, 0.0, -INF), np.where(active, 0.0, INF)
    b.add_rows(
        [(1.0, v2[:, net.line_to]), (-1.0, v2[:, net.line_from]), (net.r_coef, p), (net.x_coef, q)],
        lo=drop[0],
        hi=drop[1],
    )
    for angle in _FACETS:  # the 16-gon's other facets (those at 0 and 90 deg are the bounds)
        for sign in (1.0, -1.0):
            b.add_rows([(np.cos(angle), p), (sign * np.sin(angle), q)], lo=-lim, hi=lim)
    weight = wt.voltage * d.dt_h * disc[:, COL]
    cost = [(weight, under), (weight, over)]
    return NetworkHandles(p, q, v2, under, over), cost


def _balances(
    net: LinDistFlow,
    b,
    d: ScenarioData,
    nh: NetworkHandles,
    shed: ShedHandles,
    ih: ImportHandles,
    injections: Sequence[tuple[np.ndarray, np.ndarray, float]],
) -> None:
    """Per bus and period: inflow - outflow + injections + shed (+ import at the slack) = demand.

    `injections`: (bus of each unit, its (U, H) columns, sign). Demand includes the losses
    measured at a reference point as load at each line's receiving end; how they change with
    the decisions enters the substation's balance through marginal loss factors: the slack draws
    sum_b mlf_b (injection_b - injection_b at the reference) more (that constant is in the
    demand the caller passes).
    """
    h, n = d.demand_p.shape
    if not b.collects_matrix:  # bounds only: the rows' right-hand sides are all that change
        b.add_rows([(1.0, shed.conv)], lo=d.demand_p, hi=d.demand_p)
        b.add_rows([(1.0, shed.conv)], lo=d.demand_q, hi=d.demand_q)
        return
    lines = len(net.line_from)
    # incidence as dense (bus, line) coefficient arrays: +1 into `to`, -1 out of `from`
    inc = np.zeros((n, lines))
    inc[net.line_to, np.arange(lines)] += 1.0
    inc[net.line_from, np.arange(lines)] -= 1.0
    terms_p, terms_q = [], []
    for l_ in range(lines):
        coef = np.broadcast_to(inc[:, l_], (h, n))
        terms_p.append((coef, np.broadcast_to(nh.p[:, [l_]], (h, n))))
        terms_q.append((coef, np.broadcast_to(nh.q[:, [l_]], (h, n))))
    at_slack = np.zeros((h, n))
    at_slack[:, net.buses.slack] = 1.0
    terms_p += [(at_slack, np.broadcast_to(ih.imp[:, COL], (h, n)))]
    terms_q += [
        (at_slack, np.broadcast_to(ih.imp_q[:, COL], (h, n))),
        (np.broadcast_to(net.buses.q_per_p, (h, n)), shed.conv),
    ]

    def injection(bus: int, cols: np.ndarray, sign: float) -> Term:
        """A column (per period) injecting at `bus`, and its marginal losses at the slack."""
        coef = np.zeros((h, n))
        coef[:, bus] = sign
        coef[:, net.buses.slack] -= net.mlf[bus] * sign
        return coef, np.broadcast_to(cols[:, COL], (h, n))

    for bus in range(n):
        terms_p.append(injection(bus, shed.conv[:, bus], 1.0))
    for k, bus in enumerate(net.buses.campus_bus):
        terms_p.append(injection(bus, shed.ai[:, k], 1.0))
        coef = np.zeros((h, n))
        coef[:, bus] = net.buses.campus_q_per_p[k]
        terms_q.append((coef, np.broadcast_to(shed.ai[:, [k]], (h, n))))
    for bus_of, cols, sign in injections:
        for k, bus in enumerate(bus_of):
            terms_p.append(injection(bus, cols[k], sign))
    b.add_rows(terms_p, lo=d.demand_p, hi=d.demand_p)
    b.add_rows(terms_q, lo=d.demand_q, hi=d.demand_q)


@dataclass(frozen=True, eq=False)
class Losses:
    """Network losses measured at a point, as demand at each line's receiving bus (MW, Mvar),
    the injections (units and shedding, per bus) of that point, and each line's lower end
    voltage there (pu; 1 for a dead line)."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    injection_mw: np.ndarray
    line_v_pu: np.ndarray

    @property
    def total_mw(self) -> float:
        return float(self.p_mw.sum())


def at_receiving_ends(nw: Network, res: PowerFlowResult, live: np.ndarray, injection_mw):
    """A solved load flow's line losses as demand at each line's receiving end."""
    return _at_receiving_ends(nw.line_from, nw.line_to, res, live, injection_mw)


def _at_receiving_ends(line_from, line_to, res, live, injection_mw) -> Losses:
    recv = np.where(res.line_p_from_mw >= 0, line_to, line_from)
    n_bus = len(live)
    return Losses(
        np.bincount(recv, res.line_loss_mw, minlength=n_bus) * live,
        np.bincount(recv, res.line_loss_mvar, minlength=n_bus) * live,
        injection_mw,
        lower_end_pu(res.vm_pu, line_from, line_to),
    )


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """A network model's linear response to injections around a measured point: squared
    voltages (pu^2 per MW / Mvar injected at a bus), lines' active flows at the from end (MW
    per MW injected) and the lines' ratings (MVA at 100 % loading and 1 pu)."""

    dv2_dp: np.ndarray  # (N, N)
    dv2_dq: np.ndarray  # (N, N)
    dflow_dp: np.ndarray  # (L, N)
    s_rated_mva: np.ndarray  # (L,)
    line_from: np.ndarray  # (L,) the lines' ends (bus positions)
    line_to: np.ndarray
    upstream: np.ndarray  # (L,) each line's end towards the substation (-1: not in the tree)
    r_coef: np.ndarray  # (L,) 2 r / V_base^2: the losses' derivative is r_coef P / v^2

    def at(self, vm_pu: np.ndarray, line_p_mw: np.ndarray) -> Response:
        """The response at a measured point (voltages, flows): with its losses."""
        return Response(self.dv2_dp, self.dv2_dq, self.flows_at(vm_pu, line_p_mw))

    def flows_at(self, vm_pu: np.ndarray, line_p_mw: np.ndarray) -> np.ndarray:
        """`dflow_dp` with the losses at a measured point: a MW injected at bus k saves the
        losses of the lines between line l and k as well (r_coef P / v^2 per MW on each),
        which line l no longer carries either (up to 16 % of the change at the feeder's
        peak, at its head)."""
        down = -self.dflow_dp  # (L, N): sign of the line on the bus's path
        tree = self.upstream >= 0
        v2 = np.where(tree, vm_pu[np.maximum(self.upstream, 0)] ** 2, 1.0)
        toward = np.sign(down.sum(axis=1))  # +1: the from end is upstream; 0: off the tree
        g = self.r_coef * np.nan_to_num(line_p_mw) * toward / np.nan_to_num(v2, nan=1.0)
        saved = np.abs(down).T @ g  # (N,) per MW injected at the bus, on its whole path
        above = np.where(tree, saved[np.maximum(self.upstream, 0)], 0.0)
        return self.dflow_dp * (1.0 + saved[None, :] - above[:, None])


@dataclass(frozen=True, eq=False)
class Response:
    """How a network responds at one point, as the real-time layer asks (any network model
    provides one): squared voltages to P and Q injected (pu^2 per MW, Mvar), active flows at
    the lines' from ends to P injected (MW per MW); whole changes or per injecting bus."""

    dv2_dp: np.ndarray  # (N, N)
    dv2_dq: np.ndarray
    dflow_dp: np.ndarray  # (L, N)

    def v2(self, dp: np.ndarray, dq: np.ndarray) -> np.ndarray:
        return self.dv2_dp @ dp + self.dv2_dq @ dq

    def flow(self, dp: np.ndarray) -> np.ndarray:
        return self.dflow_dp @ dp

    def v2_columns(self, buses: np.ndarray) -> np.ndarray:
        return self.dv2_dp[:, buses]

    def flow_columns(self, buses: np.ndarray) -> np.ndarray:
        return self.dflow_dp[:, buses]


def _sensitivity(net: LinDistFlow, line_in_service: np.ndarray) -> Sensitivity:
    """LinDistFlow's response: an injection at bus k lowers the flow towards k on every line of
    its path from the substation by as much (its sign by the line's orientation), and raises
    the squared voltage of bus j by r_coef P (x_coef Q) summed over the lines the two paths
    share. Buses the lines in service do not reach respond to nothing."""
    n = net.buses.n_bus
    on = np.flatnonzero(line_in_service)
    f, t = net.line_from[on], net.line_to[on]
    graph = sparse.coo_matrix((np.ones(len(on)), (f, t)), shape=(n, n)).tocsr()
    order, pred = csgraph.breadth_first_order(
        graph, net.buses.slack, directed=False, return_predecessors=True
    )
    line_of = {}
    for k, (a, b) in enumerate(zip(f, t, strict=True)):
        line_of.setdefault((a, b), (on[k], 1.0))  # from end upstream: flow towards `b`
        line_of.setdefault((b, a), (on[k], -1.0))
    path = np.zeros((len(net.line_from), n))  # sign of the line on the bus's path
    upstream = np.full(len(net.line_from), -1)
    for k in order[1:]:
        line, sign = line_of[(pred[k], k)]
        path[:, k] = path[:, pred[k]]
        path[line, k] = sign
        upstream[line] = pred[k]
    share = np.abs(path)
    return Sensitivity(
        share.T @ (net.r_coef[:, COL] * share),
        share.T @ (net.x_coef[:, COL] * share),
        -path,
        net.s_rated_mva,
        net.line_from,
        net.line_to,
        upstream,
        net.r_coef,
    )


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


def _with_losses(data: ScenarioData, losses: Losses, slack: int, mlf: np.ndarray) -> ScenarioData:
    """The window's demand with `losses` at the receiving ends (scaled through the window with
    the square of the load), the marginal-loss reference at the substation, and line ratings
    at the measured voltages."""
    dp, dq = data.demand_p, data.demand_q
    grow = (dp.sum(axis=1) / max(dp[0].sum(), 1e-9))[:, None] ** 2
    dp = dp + grow * losses.p_mw
    dq = dq + grow * losses.q_mvar
    dp = dp.copy()
    dp[:, slack] -= mlf @ losses.injection_mw
    return ScenarioData(
        **{**data.__dict__, "demand_p": dp, "demand_q": dq, "line_v_pu": losses.line_v_pu}
    )
