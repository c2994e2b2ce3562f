"""The dispatch model's network-side blocks, one `define_*` function each, shared by Stage-I
and Stage-II; the units' blocks are their families' (simgrid.units).

Each block adds its columns and rows to a builder (ArrayBuilder or PyomoBuilder) for a window
of H periods and returns its handles (column ids) and its cost as terms (coef, cols): a
scenario's recourse cost is the sum of the blocks' terms, which Stage-II puts in its objective
and Stage-I in one row per scenario that its risk rows refer to.

Network: LinDistFlow on the feeder tree (P/Q flows, squared voltage drops v_to = v_from - 2 (r
P + x Q) / V_base^2, voltage limits with penalised violation, a hard octagon around each line's
MVA rating: shedding at VoLL is the feasible last resort). Losses enter as demand: the
caller's demand carries each line's losses at its receiving end, and marginal loss factors
carry how they change with the decisions to the substation. Import follows its schedule
within a band and ramp limit; the rest is imbalance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.optimization.builder import INF, Term

COL = np.newaxis


@dataclass(frozen=True, eq=False)
class NetworkData:
    """Static tree data (bus positions; lines as built)."""

    n_bus: int
    slack: int
    line_from: np.ndarray
    line_to: np.ndarray
    r_coef: np.ndarray  # 2 r / V_base^2 (pu^2 per MW)
    x_coef: np.ndarray  # 2 x / V_base^2 (pu^2 per Mvar)
    s_max_mva: np.ndarray
    q_per_p: np.ndarray  # reactive share of each bus's conventional load, for shedding
    campus_bus: np.ndarray  # (C,) bus of each AI campus
    campus_q_per_p: np.ndarray  # (C,) reactive share of each campus's load, for shedding
    mlf: np.ndarray  # (N,) marginal loss factor: d(losses)/d(injection at the bus)


@dataclass(frozen=True, eq=False)
class ScenarioData:
    """What a window faces: demand, topology, schedule (per period) and the upstream's limits."""

    dt_h: float
    demand_p: np.ndarray  # (H, N) everything the buses draw: loads and the network's losses
    demand_q: np.ndarray
    conv_p: np.ndarray  # (H, N) conventional load that may be shed (at its own Q/P)
    ai_p: np.ndarray  # (H, C) AI campus load that may be shed (at the campus's Q/P)
    energised: np.ndarray  # (H, N)
    line_active: np.ndarray  # (H, L)
    schedule: np.ndarray  # (H,)
    band: float
    ramp: float  # upstream ramp per period (MW)
    v2_min: float
    v2_max: float
    # (L,) the voltage (pu) at which each line's current rating becomes MVA: the lower of its
    # two ends as last measured (a rating is a current: at 0.97 pu a line carries 3 % less
    # power); 1 where nothing was measured (the Stage-I planner)
    line_v_pu: np.ndarray | float = 1.0

    @property
    def periods(self) -> int:
        return self.demand_p.shape[0]


@dataclass(frozen=True, eq=False)
class InitialState:
    """Where the upstream follower and the units start the window: the follow's bounds in
    period 0 and, per family (simgrid.units), its units' start (what they have and what their
    state forbids; storage energy and a budget left are fractions of the unit's size, so that
    they scale with a chosen size)."""

    follow_lo: float
    follow_hi: float
    units: tuple


@dataclass(frozen=True)
class Weights:
    voll: float
    imbalance: float
    voltage: float
    restoration: float


@dataclass(frozen=True)
class ModelOptions:
    """`integer_periods`: binaries integral in these first periods, relaxed after (None: all;
    0: none). `discount`: later periods weigh discount^t (Stage-II's guard against
    procrastination under a flat forecast; 1 for Stage-I's actual cost)."""

    integer_periods: int | None = None
    discount: float = 1.0

    def head(self, h: int) -> np.ndarray:
        n = h if self.integer_periods is None else self.integer_periods
        return np.arange(h) < n


# ---- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NetworkHandles:
    p: np.ndarray  # (H, L) active flow
    q: np.ndarray
    v2: np.ndarray  # (H, N) squared voltage
    under: np.ndarray
    over: np.ndarray


def define_network(b, net: NetworkData, d: ScenarioData, wt: Weights, disc: np.ndarray):
    """LinDistFlow: flows within the rating octagon, squared voltages, penalised violations."""
    h, n, lines = d.periods, net.n_bus, len(net.line_from)
    active = np.broadcast_to(d.line_active, (h, lines))
    s_max = net.s_max_mva * d.line_v_pu
    lim = np.where(active, s_max, 0.0)
    p = b.add_vars((h, lines), -lim, lim)
    q = b.add_vars((h, lines), -lim, lim)
    slack = np.zeros((h, n), bool)
    slack[:, net.slack] = True
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
    diag = np.sqrt(2) * s_max
    for sign in (1.0, -1.0):
        b.add_rows([(1.0, p), (sign, q)], lo=-diag, hi=diag)
    weight = wt.voltage * d.dt_h * disc[:, COL]
    cost = [(weight, under), (weight, over)]
    return NetworkHandles(p, q, v2, under, over), cost


@dataclass(frozen=True, eq=False)
class ShedHandles:
    conv: np.ndarray  # (H, N) conventional load shed
    ai: np.ndarray  # (H, C) campus load shed


def define_shedding(b, net: NetworkData, d: ScenarioData, wt: Weights, disc: np.ndarray):
    """Shedding of conventional or campus load at VoLL, each at its own Q/P (the plant applies
    the very same P and Q)."""
    h, n = d.periods, net.n_bus
    live = np.broadcast_to(d.energised, (h, n))
    conv = b.add_vars((h, n), 0.0, np.maximum(d.conv_p, 0.0) * live)
    campus_live = live[:, net.campus_bus] if len(net.campus_bus) else np.zeros((h, 0), bool)
    ai = b.add_vars(d.ai_p.shape, 0.0, np.maximum(d.ai_p, 0.0) * campus_live)
    voll = wt.voll * d.dt_h * disc[:, COL]
    return ShedHandles(conv, ai), [(voll, conv), (voll, ai)]


@dataclass(frozen=True, eq=False)
class ImportHandles:
    imp: np.ndarray  # (H,)
    imp_q: np.ndarray
    follow: np.ndarray
    imb_pos: np.ndarray
    imb_neg: np.ndarray


def define_import(b, d: ScenarioData, state: InitialState, wt: Weights, disc: np.ndarray):
    """Import = schedule + what the upstream follows (band, ramp) + imbalance (penalised)."""
    h = d.periods
    imp = b.add_vars(h, -INF, INF)
    imp_q = b.add_vars(h, -INF, INF)
    follow_lo = np.full(h, -d.band)
    follow_hi = np.full(h, d.band)
    follow_lo[0], follow_hi[0] = state.follow_lo, state.follow_hi
    follow = b.add_vars(h, follow_lo, follow_hi)
    imb_pos = b.add_vars(h, 0.0, INF)
    imb_neg = b.add_vars(h, 0.0, INF)
    b.add_rows(
        [(1.0, imp), (-1.0, follow), (-1.0, imb_pos), (1.0, imb_neg)], lo=d.schedule, hi=d.schedule
    )
    if h > 1:
        b.add_rows([(1.0, follow[1:]), (-1.0, follow[:-1])], lo=-d.ramp, hi=d.ramp)
    weight = wt.imbalance * d.dt_h * disc
    return ImportHandles(imp, imp_q, follow, imb_pos, imb_neg), [
        (weight, imb_pos),
        (weight, imb_neg),
    ]


def define_balances(
    b,
    net: NetworkData,
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
    at_slack[:, net.slack] = 1.0
    terms_p += [(at_slack, np.broadcast_to(ih.imp[:, COL], (h, n)))]
    terms_q += [
        (at_slack, np.broadcast_to(ih.imp_q[:, COL], (h, n))),
        (np.broadcast_to(net.q_per_p, (h, n)), shed.conv),
    ]

    def injection(bus: int, cols: np.ndarray, sign: float) -> Term:
        """A column (per period) injecting at `bus`, and its marginal losses at the slack."""
        coef = np.zeros((h, n))
        coef[:, bus] = sign
        coef[:, net.slack] -= net.mlf[bus] * sign
        return coef, np.broadcast_to(cols[:, COL], (h, n))

    for bus in range(n):
        terms_p.append(injection(bus, shed.conv[:, bus], 1.0))
    for k, bus in enumerate(net.campus_bus):
        terms_p.append(injection(bus, shed.ai[:, k], 1.0))
        coef = np.zeros((h, n))
        coef[:, bus] = net.campus_q_per_p[k]
        terms_q.append((coef, np.broadcast_to(shed.ai[:, [k]], (h, n))))
    for bus_of, cols, sign in injections:
        for k, bus in enumerate(bus_of):
            terms_p.append(injection(bus, cols[k], sign))
    b.add_rows(terms_p, lo=d.demand_p, hi=d.demand_p)
    b.add_rows(terms_q, lo=d.demand_q, hi=d.demand_q)
