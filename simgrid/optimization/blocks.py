"""The dispatch model's blocks, one `define_*` function each, shared by Stage-I and Stage-II.

Each block adds its columns and rows to a builder (ArrayBuilder or PyomoBuilder) for a window
of H periods and returns its handles (column ids) and its cost as terms (coef, cols): a
scenario's recourse cost is the sum of the blocks' terms, which Stage-II puts in its objective
and Stage-I in one row per scenario that its risk rows refer to.

A unit's size is a `Capacity`: fixed counts of its module (Stage-II: the allocation), or
first-stage integer columns (Stage-I: how many modules to place). Limits that scale with the
size are column bounds for fixed counts and rows with the first-stage column otherwise; limits
gated by a binary (storage mode, commitment, DR activation) use the largest size allowed as
their big-M when the size is a column, so the same physics holds exactly for fixed sizes and as
its tightest linear form for chosen ones.

Network: LinDistFlow on the feeder tree (P/Q flows, squared voltage drops v_to = v_from - 2 (r
P + x Q) / V_base^2, voltage limits with penalised violation, a hard octagon around each line's
MVA rating: shedding at VoLL is the feasible last resort). Losses enter as demand: the
caller's demand carries each line's losses at its receiving end, and marginal loss factors
carry how they change with the decisions to the substation. Import follows its schedule
within a band and ramp limit; the rest is imbalance. Units: BESS, LDES (a minimum discharge
block), fast generation, DR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.optimization.builder import INF, Term

SOC_DEAD_BAND = 0.05  # of a storage unit's usable energy, around its target
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
class StorageData:
    """Storage units of one kind, ratings per module (energies in MWh, powers in MW)."""

    bus: np.ndarray
    p: np.ndarray
    e: np.ndarray
    soc_min: np.ndarray  # fractions of e
    soc_max: np.ndarray
    soc_target: np.ndarray
    eta_c: np.ndarray
    eta_d: np.ndarray
    p_block: np.ndarray  # smallest discharge (0: none)
    deg_cost: np.ndarray  # $/MWh through the unit

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class GenData:
    """Fast generators, ratings per module; times in periods of the window."""

    bus: np.ndarray
    p: np.ndarray
    p_min: np.ndarray
    ramp: np.ndarray  # MW per period
    ramp_per_s: np.ndarray  # MW per second
    up: np.ndarray  # min up, periods
    down: np.ndarray  # min down, periods
    start_cost: np.ndarray
    delay_s: np.ndarray
    mc: np.ndarray

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class DrData:
    """Demand response blocks, per module; times in periods of the window."""

    bus: np.ndarray
    p: np.ndarray
    payback: np.ndarray
    rebound: np.ndarray
    max_on: np.ndarray  # max consecutive active periods
    cost: np.ndarray
    notice_s: np.ndarray
    energy: np.ndarray  # budget, MWh

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True, eq=False)
class Capacity:
    """Modules per unit: fixed `count`, or first-stage columns `cols` of at most `count`."""

    count: np.ndarray
    cols: np.ndarray | None = None

    @classmethod
    def fixed(cls, count) -> Capacity:
        return cls(np.asarray(count, dtype=float))

    @property
    def chosen(self) -> bool:
        return self.cols is not None

    def upper(self, per_module) -> np.ndarray:
        """The largest value of per_module x size: (U, 1) for per-unit values, (U, H) for
        per-period ones."""
        per = np.asarray(per_module, dtype=float)
        return per * self.count[:, COL] if per.ndim == 2 else (per * self.count)[:, COL]

    def size_terms(self, per_module, h: int, sign: float = -1.0) -> list[Term]:
        """sign * per_module x size, as a row term (none for fixed sizes)."""
        if not self.chosen:
            return []
        per = np.asarray(per_module, dtype=float)
        per = per if per.ndim == 2 else per[:, COL]
        coef = np.broadcast_to(sign * per, (len(self.count), h))
        return [(coef, np.broadcast_to(self.cols[:, COL], (len(self.count), h)))]

    def limit(self, b, terms: list[Term], per_module, h: int, *, below: bool, extra=0.0):
        """sum(terms) <= per_module x size + extra (or >= with `below=False`)."""
        if self.chosen:
            rows = [*terms, *self.size_terms(per_module, h)]
            bound = extra
        else:
            rows, bound = terms, self.upper(np.asarray(per_module)) + extra
        if below:
            return b.add_rows(rows, hi=bound)
        return b.add_rows(rows, lo=bound)

    def gated(self, b, x: np.ndarray, per_module, gate: np.ndarray, *, on: bool = True):
        """x <= per_module x size x gate (`on`) or x (1 - gate) (not `on`)."""
        m = self.upper(np.asarray(per_module))
        if on:
            b.add_rows([(1.0, x), (-m, gate)], hi=0.0)
        else:
            b.add_rows([(1.0, x), (m, gate)], hi=m)
        if self.chosen:
            self.limit(b, [(1.0, x)], per_module, x.shape[-1], below=True)

    def gated_floor(self, b, x: np.ndarray, per_module, gate: np.ndarray):
        """x >= per_module x size x gate (a minimum output when on)."""
        m = self.upper(np.asarray(per_module))
        if not self.chosen:
            return b.add_rows([(1.0, x), (-m, gate)], lo=0.0)
        # chosen size N: x >= k N - k N_max (1 - gate)
        terms = [(1.0, x), (-m, gate), *self.size_terms(per_module, x.shape[-1])]
        return b.add_rows(terms, lo=-m)


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
    """Where the units and the upstream follower start the window, and what state forbids.

    Storage energy and the DR budget left are fractions of the unit's size (so that they
    scale with a chosen size); the rest is absolute.
    """

    follow_lo: float  # bounds of the upstream follow in period 0
    follow_hi: float
    st_e0: np.ndarray  # fraction of the unit's energy
    g_p0: np.ndarray
    g_ramp0_s: np.ndarray  # seconds of ramping available before period 0
    g_u0: np.ndarray
    g_u_lb: np.ndarray  # (G, H): forced on (min up, pending start)
    g_u_ub: np.ndarray  # (G, H): forced off (min down)
    g_s_ub: np.ndarray  # (G, H): start allowed (start-up delay)
    d_a0: np.ndarray
    d_z_ub: np.ndarray  # (D, H): activation allowed (notification delay)
    d_run_left: np.ndarray  # (D, H): active periods allowed in the max_on + 1 periods to t
    d_budget: np.ndarray  # fraction of the budget left
    d_owed0: np.ndarray


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


# ---- helpers --------------------------------------------------------------------------------


def lagged(ids: np.ndarray, lag: int, within: np.ndarray) -> Term:
    """The term x[..., t - lag] (along the last axis), counted where t >= lag and `within`."""
    t = np.arange(ids.shape[-1])
    return (t >= lag) * within * np.ones(ids.shape), ids[..., np.maximum(t - lag, 0)]


def previous(ids: np.ndarray) -> np.ndarray:
    """x[..., t-1]; period 0 points at itself and is masked out by a zero coefficient."""
    return ids[..., np.maximum(np.arange(ids.shape[-1]) - 1, 0)]


def at_start(values: np.ndarray, h: int) -> np.ndarray:
    """(U, H) zeros with `values` in period 0: the right-hand side of a state equation."""
    out = np.zeros((len(values), h))
    out[:, 0] = values
    return out


def _later(h: int) -> np.ndarray:
    return (np.arange(h) > 0).astype(float)  # 0 in period 0: its "previous" is the state


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


@dataclass(frozen=True, eq=False)
class StorageHandles:
    pc: np.ndarray  # (S, H)
    pd: np.ndarray
    mode: np.ndarray
    e: np.ndarray
    dev_up: np.ndarray
    dev_dn: np.ndarray


def define_storage(
    b,
    u: StorageData,
    cap: Capacity,
    d: ScenarioData,
    state_e0: np.ndarray,
    wt: Weights,
    head: np.ndarray,
):
    """Storage: energy balance with efficiencies, no simultaneous charge and discharge (mode
    binary), a minimum discharge block where one is set (LDES), restoration of the stored
    energy to its target outside a dead band. `state_e0`: energy at the start, as a fraction
    of the unit's energy rating."""
    s, h, dt = len(u), d.periods, d.dt_h
    pc = b.add_vars((s, h), 0.0, cap.upper(u.p))
    pd = b.add_vars((s, h), 0.0, cap.upper(u.p))
    mode = b.add_vars((s, h), 0.0, 1.0, integer=head)
    e_min, e_max = u.soc_min * u.e, u.soc_max * u.e
    if cap.chosen:
        e = b.add_vars((s, h), 0.0, cap.upper(e_max))
        cap.limit(b, [(1.0, e)], e_max, h, below=True)
        cap.limit(b, [(1.0, e)], e_min, h, below=False)
    else:
        e = b.add_vars((s, h), cap.upper(e_min), cap.upper(e_max))
    cap.gated(b, pd, u.p, mode, on=True)
    cap.gated(b, pc, u.p, mode, on=False)
    b.add_rows([(1.0, pd), (-u.p_block[:, COL], mode)], lo=0.0)
    later = _later(h)
    balance = [
        (1.0, e),
        (-later, previous(e)),
        (-dt * u.eta_c[:, COL], pc),
        (dt / u.eta_d[:, COL], pd),
    ]
    _energy_start(b, balance, cap, at_start(state_e0, h) * u.e[:, COL])
    dev_up = b.add_vars((s, h), 0.0, INF)
    dev_dn = b.add_vars((s, h), 0.0, INF)
    band = SOC_DEAD_BAND * (e_max - e_min)
    cap.limit(b, [(1.0, e), (-1.0, dev_up)], u.soc_target * u.e + band, h, below=True)
    cap.limit(b, [(1.0, e), (1.0, dev_dn)], u.soc_target * u.e - band, h, below=False)
    deg = u.deg_cost[:, COL] * dt
    rest = wt.restoration * dt
    cost = [(deg, pc), (deg, pd), (rest, dev_up), (rest, dev_dn)]
    return StorageHandles(pc, pd, mode, e, dev_up, dev_dn), cost


def _energy_start(b, balance: list[Term], cap: Capacity, e0_per_module: np.ndarray) -> None:
    """The energy balance rows: e_t - e_{t-1} - charge + discharge = e0 (period 0) or 0."""
    if cap.chosen:
        coef = -e0_per_module  # (S, H): nonzero in period 0 only
        terms = [*balance, (coef, np.broadcast_to(cap.cols[:, COL], coef.shape))]
        b.add_rows(terms, lo=0.0, hi=0.0)
    else:
        rhs = e0_per_module * cap.count[:, COL]
        b.add_rows(balance, lo=rhs, hi=rhs)


@dataclass(frozen=True, eq=False)
class GenHandles:
    p: np.ndarray  # (G, H)
    u: np.ndarray  # committed
    s: np.ndarray  # start
    w: np.ndarray  # stop


def define_fast_gen(
    b, u: GenData, cap: Capacity, d: ScenarioData, state: InitialState, head: np.ndarray
):
    """Fast generation: commitment with start-up delay (state bounds), synchronisation at
    minimum output then ramps (from the output of the last step in period 0), min up/down,
    start cost and marginal cost. The modules at a bus commit together."""
    g, h, dt = len(u), d.periods, d.dt_h
    p = b.add_vars((g, h), 0.0, cap.upper(u.p))
    on = b.add_vars((g, h), state.g_u_lb, state.g_u_ub, integer=head)
    start = b.add_vars((g, h), 0.0, state.g_s_ub, integer=head)
    stop = b.add_vars((g, h), 0.0, 1.0, integer=head)
    cap.gated(b, p, u.p, on, on=True)
    cap.gated_floor(b, p, u.p_min, on)
    later = _later(h)
    u0 = at_start(state.g_u0, h)
    b.add_rows([(1.0, on), (-later, previous(on)), (-1.0, start), (1.0, stop)], lo=u0, hi=u0)
    b.add_rows([(1.0, start), (1.0, stop)], hi=1.0)
    # period 0 starts now: the unit moves only as far as its ramp allows since the last step;
    # a start synchronises at p_min and ramps from there
    p0 = at_start(state.g_p0, h)
    ramp = np.repeat(u.ramp[:, COL], h, axis=1)
    ramp[:, 0] = u.ramp_per_s * state.g_ramp0_s
    up = [(1.0, p), (-later, previous(p)), (-cap.upper(u.p_min), start)]
    cap.limit(b, up, ramp, h, below=True, extra=p0)
    down = [(-1.0, p), (later, previous(p)), (-cap.upper(u.p), stop)]
    cap.limit(b, down, ramp, h, below=True, extra=-p0)
    # min up / down: a start in the last `up` periods keeps the unit on (history: bounds on u)
    for starts, periods, sign, rhs in ((start, u.up, -1.0, 0.0), (stop, u.down, 1.0, 1.0)):
        lags = range(int(min(periods.max(initial=1), h)))
        terms = [lagged(starts, lag, lag < periods[:, COL]) for lag in lags]
        b.add_rows([*terms, (sign, on)], hi=rhs)
    # a start costs the group's start cost; for a chosen size, one module's (a lower bound:
    # the product of a start and a size is not linear, and start costs are small)
    per_start = u.start_cost if cap.chosen else u.start_cost * cap.count
    cost = [(u.mc[:, COL] * dt, p), (per_start[:, COL], start)]
    return GenHandles(p, on, start, stop), cost


@dataclass(frozen=True, eq=False)
class DrHandles:
    curtail: np.ndarray  # (D, H)
    active: np.ndarray
    activate: np.ndarray
    payback: np.ndarray
    owed: np.ndarray


def define_dr(b, u: DrData, cap: Capacity, d: ScenarioData, state: InitialState, wt: Weights, head):
    """Demand response: activation after its notice, curtailment up to its block, at most
    `max_on` consecutive periods, an energy budget over the window, and a rebound owed and
    paid back later (owed energy carries the restoration weight)."""
    n, h, dt = len(u), d.periods, d.dt_h
    dd = b.add_vars((n, h), 0.0, cap.upper(u.p))
    active = b.add_vars((n, h), 0.0, 1.0, integer=head)
    activate = b.add_vars((n, h), 0.0, state.d_z_ub, integer=head)
    pb = b.add_vars((n, h), 0.0, cap.upper(u.payback))
    owed = b.add_vars((n, h), 0.0, INF)
    cap.gated(b, dd, u.p, active, on=True)
    cap.gated(b, pb, u.payback, active, on=False)
    later = _later(h)
    a0 = at_start(state.d_a0, h)
    b.add_rows([(1.0, active), (-later, previous(active)), (-1.0, activate)], hi=a0)
    # max duration: of any max_on + 1 consecutive periods at least one is inactive
    lags = range(int(min(u.max_on.max(initial=-1), h - 1)) + 1)
    if len(lags) and n:
        terms = [lagged(active, lag, lag <= u.max_on[:, COL]) for lag in lags]
        b.add_rows(terms, hi=state.d_run_left)
    # the energy budget left bounds what the whole window curtails
    _budget_rows(b, dd, dt, state.d_budget * u.energy, cap)
    own0 = at_start(state.d_owed0, h)
    b.add_rows(
        [(1.0, owed), (-later, previous(owed)), (-dt * u.rebound[:, COL], dd), (dt, pb)],
        lo=own0,
        hi=own0,
    )
    cost = [(u.cost[:, COL] * dt, dd), (wt.restoration * dt, owed)]
    return DrHandles(dd, active, activate, pb, owed), cost


def _budget_rows(b, dd: np.ndarray, dt: float, budget: np.ndarray, cap: Capacity) -> None:
    """sum over the window of dt x curtailment <= the budget left (scaled by the size)."""
    n, h = dd.shape
    if n == 0:
        return
    terms = [(np.full(n, dt), dd[:, t]) for t in range(h)]
    if cap.chosen:
        b.add_rows([*terms, (-budget, cap.cols)], hi=0.0)
    else:
        b.add_rows(terms, hi=budget * cap.count)


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
