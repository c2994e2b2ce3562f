"""The Stage-II dispatch MILP over one lookahead window, assembled from small functions.

Network: LinDistFlow on the feeder tree (lossless P/Q flows, squared voltage drops
v_to = v_from - 2 (r P + x Q) / V_base^2, voltage limits with penalised violation, a hard
octagon around each line's MVA rating: shedding at VoLL is the feasible last resort).
Import follows its schedule within a band and ramp limit; the rest is imbalance.
Units: storage (BESS, LDES), fast generation, DR.

Everything that changes between calls (forecasts, state, topology) enters through column
bounds and row bounds only, so the matrix is identical call after call: the persistent solver
updates bounds and re-solves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.optimization.builder import INF

DISCOUNT_PER_PERIOD = 0.98
SOC_DEAD_BAND = 0.05  # of a storage unit's usable energy, around its target


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
class UnitData:
    """Static unit parameters by type (arrays over the units of that type)."""

    st_bus: np.ndarray
    st_p: np.ndarray
    st_emin: np.ndarray
    st_emax: np.ndarray
    st_target: np.ndarray
    st_eta_c: np.ndarray
    st_eta_d: np.ndarray
    st_pblock: np.ndarray
    st_deg_cost: np.ndarray
    g_bus: np.ndarray
    g_p: np.ndarray
    g_pmin: np.ndarray
    g_ramp: np.ndarray  # MW per period
    g_ramp_per_s: np.ndarray  # MW per second (the plant's ramp limit between steps)
    g_up: np.ndarray  # min up, periods
    g_down: np.ndarray  # min down, periods
    g_start_cost: np.ndarray
    g_delay_s: np.ndarray
    g_mc: np.ndarray
    d_bus: np.ndarray
    d_p: np.ndarray
    d_payback: np.ndarray
    d_rebound: np.ndarray
    d_max_on: np.ndarray  # max consecutive active periods
    d_cost: np.ndarray
    d_notice_s: np.ndarray
    d_energy_mwh: np.ndarray


@dataclass(frozen=True, eq=False)
class Weights:
    voll: float
    imbalance: float
    voltage: float
    restoration: float


@dataclass(frozen=True, eq=False)
class Window:
    """Everything of one call: forecasts, topology and the bounds that encode unit state."""

    dt_h: float
    demand_p: np.ndarray  # (H, N) everything the buses draw: loads and the network's losses
    demand_q: np.ndarray
    conv_p: np.ndarray  # (H, N) conventional load that may be shed (at its own Q/P)
    ai_p: np.ndarray  # (H, C) AI campus load that may be shed (at the campus's Q/P)
    energised: np.ndarray  # (N,)
    line_active: np.ndarray  # (L,)
    schedule: np.ndarray  # (H,)
    follow_lo: float  # bounds of the upstream follow in period 0
    follow_hi: float
    band: float
    ramp: float  # upstream ramp per period (MW)
    v2_min: float
    v2_max: float
    st_e0: np.ndarray
    g_p0: np.ndarray
    g_ramp0: np.ndarray  # (G,) how far each generator can move by period 0 (MW)
    g_u0: np.ndarray
    g_u_lb: np.ndarray  # (G, H): forced on (min up, pending start)
    g_u_ub: np.ndarray  # (G, H): forced off (min down)
    g_s_ub: np.ndarray  # (G, H): start allowed (start-up delay)
    d_a0: np.ndarray
    d_z_ub: np.ndarray  # (D, H): activation allowed (notification delay)
    d_run_left: np.ndarray  # (D, H): active periods allowed in the max_on + 1 periods to t
    d_budget_mwh: np.ndarray  # (D,)
    d_owed0: np.ndarray
    integer_periods: int = 10**9  # binaries integral in these first periods, relaxed after


@dataclass(frozen=True, eq=False)
class Handles:
    """Column ids of what the dispatcher reads back."""

    shed: np.ndarray  # (H, N) conventional load shed
    shed_ai: np.ndarray  # (H, C) campus load shed
    imp: np.ndarray
    follow: np.ndarray
    imb_pos: np.ndarray
    imb_neg: np.ndarray
    v2: np.ndarray
    st_pc: np.ndarray
    st_pd: np.ndarray
    st_e: np.ndarray
    st_mode: np.ndarray
    g_p: np.ndarray
    g_u: np.ndarray
    g_s: np.ndarray
    g_w: np.ndarray
    d_d: np.ndarray
    d_a: np.ndarray
    d_z: np.ndarray
    d_pb: np.ndarray
    d_owed: np.ndarray


def _lagged(ids: np.ndarray, lag: int, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The term x[..., t - lag] (along the last axis), counted where t >= lag and `within`."""
    t = np.arange(ids.shape[-1])
    return (t >= lag) * within * np.ones(ids.shape), ids[..., np.maximum(t - lag, 0)]


def _previous(ids: np.ndarray) -> np.ndarray:
    """x[..., t-1]; period 0 points at itself and is masked out by a zero coefficient."""
    return ids[..., np.maximum(np.arange(ids.shape[-1]) - 1, 0)]


def assemble(b, net: NetworkData, u: UnitData, w: Window, wt: Weights) -> Handles:
    """Add the window's MILP to builder `b` (ArrayBuilder or PyomoBuilder)."""
    h = w.demand_p.shape[0]
    n, lines = net.n_bus, len(net.line_from)
    later = (np.arange(h) > 0).astype(float)  # 0 in period 0: its "previous" is the state
    dt = w.dt_h
    # later periods weigh a little less: under a flat forecast the relief would otherwise be
    # postponed call after call (acting later looks as good, and owed energy costs holding)
    disc = DISCOUNT_PER_PERIOD ** np.arange(h)
    # only the first period is ever applied: binaries are integral in the first
    # `w.integer_periods` (enough for start-up and notification delays), relaxed after
    head = np.arange(h) < w.integer_periods

    # ---- network: LinDistFlow --------------------------------------------------------------
    # line ratings: an octagon around the MVA rating, |P|, |Q| <= S as bounds and
    # |P + Q|, |P - Q| <= sqrt(2) S as rows (hard: shedding is the feasible last resort)
    active = np.broadcast_to(w.line_active, (h, lines))
    lim = np.where(active, net.s_max_mva, 0.0)
    p = b.add_vars((h, lines), -lim, lim)
    q = b.add_vars((h, lines), -lim, lim)
    slack = np.zeros((h, n), bool)
    slack[:, net.slack] = True
    # squared voltages; the substation is held at 1 pu
    v2 = b.add_vars((h, n), np.where(slack, 1.0, 0.0), np.where(slack, 1.0, 4.0))
    under = b.add_vars((h, n), 0.0, INF, wt.voltage * dt * disc[:, None])
    over = b.add_vars((h, n), 0.0, INF, wt.voltage * dt * disc[:, None])
    live = np.broadcast_to(w.energised, (h, n))
    b.add_rows([(1.0, v2), (1.0, under)], lo=np.where(live, w.v2_min, -INF))
    b.add_rows([(1.0, v2), (-1.0, over)], hi=np.where(live, w.v2_max, INF))
    drop = np.where(active, 0.0, -INF), np.where(active, 0.0, INF)
    b.add_rows(
        [(1.0, v2[:, net.line_to]), (-1.0, v2[:, net.line_from]), (net.r_coef, p), (net.x_coef, q)],
        lo=drop[0],
        hi=drop[1],
    )
    diag = np.sqrt(2) * net.s_max_mva
    for sign in (1.0, -1.0):
        b.add_rows([(1.0, p), (sign, q)], lo=-diag, hi=diag)

    # ---- demand, shedding, import ------------------------------------------------------------
    # shedding removes conventional or campus load, each at its own Q/P: the plant applies the
    # very same P and Q
    voll = wt.voll * dt * disc[:, None]
    shed = b.add_vars((h, n), 0.0, np.maximum(w.conv_p, 0.0) * live, voll)
    campus_live = w.energised[net.campus_bus] if len(net.campus_bus) else np.zeros(0, bool)
    shed_ai = b.add_vars(w.ai_p.shape, 0.0, np.maximum(w.ai_p, 0.0) * campus_live, voll)
    imp = b.add_vars(h, -INF, INF)
    imp_q = b.add_vars(h, -INF, INF)
    follow_lo = np.full(h, -w.band)
    follow_hi = np.full(h, w.band)
    follow_lo[0], follow_hi[0] = w.follow_lo, w.follow_hi
    follow = b.add_vars(h, follow_lo, follow_hi)
    imb_pos = b.add_vars(h, 0.0, INF, wt.imbalance * dt * disc)
    imb_neg = b.add_vars(h, 0.0, INF, wt.imbalance * dt * disc)
    b.add_rows(
        [(1.0, imp), (-1.0, follow), (-1.0, imb_pos), (1.0, imb_neg)], lo=w.schedule, hi=w.schedule
    )
    if h > 1:
        b.add_rows([(1.0, follow[1:]), (-1.0, follow[:-1])], lo=-w.ramp, hi=w.ramp)

    # ---- units -------------------------------------------------------------------------------
    st, g, d = len(u.st_bus), len(u.g_bus), len(u.d_bus)
    col = np.newaxis
    # storage: discharge-mode binary forbids simultaneous charge and discharge
    pc = b.add_vars((st, h), 0.0, u.st_p[:, col], u.st_deg_cost[:, col] * dt)
    pd = b.add_vars((st, h), 0.0, u.st_p[:, col], u.st_deg_cost[:, col] * dt)
    mode = b.add_vars((st, h), 0.0, 1.0, integer=head)
    e = b.add_vars((st, h), u.st_emin[:, col], u.st_emax[:, col])
    b.add_rows([(1.0, pd), (-u.st_p[:, col], mode)], hi=0.0)
    b.add_rows([(1.0, pc), (u.st_p[:, col], mode)], hi=u.st_p[:, col])
    b.add_rows([(1.0, pd), (-u.st_pblock[:, col], mode)], lo=0.0)
    e0 = np.zeros((st, h))
    e0[:, 0] = w.st_e0
    b.add_rows(
        [
            (1.0, e),
            (-later, _previous(e)),
            (-dt * u.st_eta_c[:, col], pc),
            (dt / u.st_eta_d[:, col], pd),
        ],
        lo=e0,
        hi=e0,
    )
    # restoration pulls the stored energy back within a dead band around its target (a
    # quiet feeder leaves its storage alone instead of trading cents of drift)
    dev_up = b.add_vars((st, h), 0.0, INF, wt.restoration * dt)
    dev_dn = b.add_vars((st, h), 0.0, INF, wt.restoration * dt)
    band = SOC_DEAD_BAND * (u.st_emax - u.st_emin)[:, col]
    b.add_rows([(1.0, e), (-1.0, dev_up)], hi=u.st_target[:, col] + band)
    b.add_rows([(1.0, e), (1.0, dev_dn)], lo=u.st_target[:, col] - band)

    # fast generation: commitment u, start s, stop w
    gp = b.add_vars((g, h), 0.0, u.g_p[:, col], u.g_mc[:, col] * dt)
    gu = b.add_vars((g, h), w.g_u_lb, w.g_u_ub, integer=head)
    gs = b.add_vars((g, h), 0.0, w.g_s_ub, u.g_start_cost[:, col], integer=head)
    gw = b.add_vars((g, h), 0.0, 1.0, integer=head)
    b.add_rows([(1.0, gp), (-u.g_p[:, col], gu)], hi=0.0)
    b.add_rows([(1.0, gp), (-u.g_pmin[:, col], gu)], lo=0.0)
    u0 = np.zeros((g, h))
    u0[:, 0] = w.g_u0
    b.add_rows([(1.0, gu), (-later, _previous(gu)), (-1.0, gs), (1.0, gw)], lo=u0, hi=u0)
    b.add_rows([(1.0, gs), (1.0, gw)], hi=1.0)
    p0 = np.zeros((g, h))
    p0[:, 0] = w.g_p0
    # period 0 starts now: the unit moves only as far as its ramp allows since the last step;
    # a start synchronises at p_min and ramps from there
    ramp = np.repeat(u.g_ramp[:, col], h, axis=1)
    ramp[:, 0] = w.g_ramp0
    b.add_rows([(1.0, gp), (-later, _previous(gp)), (-u.g_pmin[:, col], gs)], hi=ramp + p0)
    b.add_rows([(-1.0, gp), (later, _previous(gp)), (-u.g_p[:, col], gw)], hi=ramp - p0)
    # min up / down: a start in the last `up` periods keeps the unit on (history: bounds on u)
    for starts, periods, sign, rhs in ((gs, u.g_up, -1.0, 0.0), (gw, u.g_down, 1.0, 1.0)):
        lags = range(int(min(periods.max(initial=1), h)))
        terms = [_lagged(starts, lag, lag < periods[:, col]) for lag in lags]
        b.add_rows([*terms, (sign, gu)], hi=rhs)

    # demand response: active a, activation z, curtailment dd, payback pb, owed energy
    dd = b.add_vars((d, h), 0.0, u.d_p[:, col], u.d_cost[:, col] * dt)
    da = b.add_vars((d, h), 0.0, 1.0, integer=head)
    dz = b.add_vars((d, h), 0.0, w.d_z_ub, integer=head)
    pb = b.add_vars((d, h), 0.0, u.d_payback[:, col])
    owed = b.add_vars((d, h), 0.0, INF, wt.restoration * dt)
    b.add_rows([(1.0, dd), (-u.d_p[:, col], da)], hi=0.0)
    b.add_rows([(1.0, pb), (u.d_payback[:, col], da)], hi=u.d_payback[:, col])
    a0 = np.zeros((d, h))
    a0[:, 0] = w.d_a0
    b.add_rows([(1.0, da), (-later, _previous(da)), (-1.0, dz)], hi=a0)
    # max duration: of any max_on + 1 consecutive periods at least one is inactive
    lags = range(int(min(u.d_max_on.max(initial=-1), h - 1)) + 1)
    if len(lags) and d:
        terms = [_lagged(da, lag, lag <= u.d_max_on[:, col]) for lag in lags]
        b.add_rows(terms, hi=w.d_run_left)
    b.add_rows([(dt, dd)], hi=w.d_budget_mwh[:, col] * np.ones((d, h)))
    own0 = np.zeros((d, h))
    own0[:, 0] = w.d_owed0
    b.add_rows(
        [(1.0, owed), (-later, _previous(owed)), (-dt * u.d_rebound[:, col], dd), (dt, pb)],
        lo=own0,
        hi=own0,
    )

    # ---- bus balances (LinDistFlow, lossless) ------------------------------------------------
    _balances(b, net, w, p, q, shed, shed_ai, imp, imp_q, pc, pd, gp, dd, pb, u)
    return Handles(
        shed,
        shed_ai,
        imp,
        follow,
        imb_pos,
        imb_neg,
        v2,
        pc,
        pd,
        e,
        mode,
        gp,
        gu,
        gs,
        gw,
        dd,
        da,
        dz,
        pb,
        owed,
    )


def _balances(b, net, w, p, q, shed, shed_ai, imp, imp_q, pc, pd, gp, dd, pb, u) -> None:
    """Per bus and period: inflow - outflow + injections + shed (+ import at the slack) = demand.

    Demand includes the losses measured at a reference point as load at each line's receiving
    end; how they change with the decisions enters the substation's balance through marginal
    loss factors: the slack draws sum_b mlf_b (injection_b - injection_b at the reference)
    more (that constant is in the demand the dispatcher passes).
    """
    h, n = w.demand_p.shape
    if not b.collects_matrix:  # bounds only: the rows' right-hand sides are all that change
        b.add_rows([(1.0, shed)], lo=w.demand_p, hi=w.demand_p)
        b.add_rows([(1.0, shed)], lo=w.demand_q, hi=w.demand_q)
        return
    lines = len(net.line_from)
    # incidence as dense (bus, line) coefficient arrays: +1 into `to`, -1 out of `from`
    inc = np.zeros((n, lines))
    inc[net.line_to, np.arange(lines)] += 1.0
    inc[net.line_from, np.arange(lines)] -= 1.0
    terms_p, terms_q = [], []
    for l_ in range(lines):
        coef = np.broadcast_to(inc[:, l_], (h, n))
        terms_p.append((coef, np.broadcast_to(p[:, [l_]], (h, n))))
        terms_q.append((coef, np.broadcast_to(q[:, [l_]], (h, n))))
    at_slack = np.zeros((h, n))
    at_slack[:, net.slack] = 1.0
    terms_p += [(at_slack, np.broadcast_to(imp[:, None], (h, n)))]
    terms_q += [
        (at_slack, np.broadcast_to(imp_q[:, None], (h, n))),
        (np.broadcast_to(net.q_per_p, (h, n)), shed),
    ]

    def injection(bus: int, cols: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """A column (per period) injecting at `bus`, and its marginal losses at the slack."""
        coef = np.zeros((h, n))
        coef[:, bus] = sign
        coef[:, net.slack] -= net.mlf[bus] * sign
        return coef, np.broadcast_to(cols[:, None], (h, n))

    for bus in range(n):
        terms_p.append(injection(bus, shed[:, bus], 1.0))
    for k, bus in enumerate(net.campus_bus):
        terms_p.append(injection(bus, shed_ai[:, k], 1.0))
        coef = np.zeros((h, n))
        coef[:, bus] = net.campus_q_per_p[k]
        terms_q.append((coef, np.broadcast_to(shed_ai[:, [k]], (h, n))))
    for bus_of, cols, sign in (
        (u.st_bus, pd, 1.0),
        (u.st_bus, pc, -1.0),
        (u.g_bus, gp, 1.0),
        (u.d_bus, dd, 1.0),
        (u.d_bus, pb, -1.0),
    ):
        for k, bus in enumerate(bus_of):
            terms_p.append(injection(bus, cols[k], sign))
    b.add_rows(terms_p, lo=w.demand_p, hi=w.demand_p)
    b.add_rows(terms_q, lo=w.demand_q, hi=w.demand_q)
