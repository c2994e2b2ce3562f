"""The dispatch model's blocks around the network: the window's data, the shedding and import
blocks, shared by Stage-I and Stage-II. The network itself is a `NetworkModel`
(network_model.py; LinDistFlow for radial feeders) and the units are their families'
(simgrid.units).

Each block adds its columns and rows to a builder (ArrayBuilder or PyomoBuilder) for a window
of H periods and returns its handles (column ids) and its cost as terms (coef, cols): a
scenario's recourse cost is the sum of the blocks' terms, which Stage-II puts in its objective
and Stage-I in one row per scenario that its risk rows refer to. Import follows its schedule
within a band and ramp limit; the rest is imbalance. Shedding of conventional or campus load
is priced at VoLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simgrid.optimization.builder import INF

COL = np.newaxis


@dataclass(frozen=True, eq=False)
class BusData:
    """What every network model and the shedding block know of the buses (positions in the
    network's bus order)."""

    n_bus: int
    slack: int
    q_per_p: np.ndarray  # reactive share of each bus's conventional load, for shedding
    campus_bus: np.ndarray  # (C,) bus of each AI campus
    campus_q_per_p: np.ndarray  # (C,) reactive share of each campus's load, for shedding
    sheddable: np.ndarray | None = None  # (N,) where conventional load may be shed (None: all)

    @classmethod
    def of(cls, nw, campuses, *, campuses_only: bool = False) -> BusData:
        """The buses of network `nw` with `campuses` on them; `campuses_only`: only the
        campuses' load may be shed (a transmission grid's other customers are not)."""
        campus_bus = np.array([c.bus for c in campuses], dtype=int)
        q_per_p = np.divide(
            nw.base_load_q_mvar,
            nw.base_load_p_mw,
            out=np.zeros(nw.n_bus),
            where=nw.base_load_p_mw > 0,
        )
        sheddable = None
        if campuses_only:
            sheddable = np.zeros(nw.n_bus, bool)
            sheddable[campus_bus] = True
        campus_q = np.array([c.q_per_p for c in campuses])
        return cls(nw.n_bus, nw.slack_bus, q_per_p, campus_bus, campus_q, sheddable)


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
    # the plant's step (h): the upstream moves by ramp * step_h / dt_h per step, so a change of
    # what it follows within a period lags (0: the period is the step, nothing lags)
    step_h: float = 0.0
    # (L,) the voltage (pu) at which each line's current rating becomes MVA: the lower of its
    # two ends as last measured (a rating is a current: at 0.97 pu a line carries 3 % less
    # power); 1 where nothing was measured (the Stage-I planner)
    line_v_pu: np.ndarray | float = 1.0
    # the solution a network model linearises at (its own kind; None: the model's default)
    point: object = None
    # a planned day's block that begins at an event's instant: nothing in it can have been
    # decided before its start (start-up delays and notices bind from it; see operation.py)
    news: bool = False

    @property
    def periods(self) -> int:
        return self.demand_p.shape[0]


@dataclass(frozen=True, eq=False)
class InitialState:
    """Where the upstream follower and the units start the window: what the upstream follows
    now and, per family (simgrid.units), its units' start (what they have and what their
    state forbids; storage energy and a budget left are fractions of the unit's size, so that
    they scale with a chosen size)."""

    follow_mw: float
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
    procrastination under a flat forecast; 1 for Stage-I's actual cost). `commitment`:
    generators' commitment and DR's activation integral in every period whatever
    `integer_periods` says (a planned day's, so that a start costs its minimum output and
    start cost and DR curtails or pays back as in the plant)."""

    integer_periods: int | None = None
    discount: float = 1.0
    commitment: bool = False

    def head(self, h: int) -> np.ndarray:
        n = h if self.integer_periods is None else self.integer_periods
        return np.arange(h) < n


# ---- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShedHandles:
    conv: np.ndarray  # (H, N) conventional load shed
    ai: np.ndarray  # (H, C) campus load shed


def define_shedding(b, net: BusData, d: ScenarioData, wt: Weights, disc: np.ndarray):
    """Shedding of conventional or campus load at VoLL, each at its own Q/P (the plant applies
    the very same P and Q)."""
    h, n = d.periods, net.n_bus
    live = np.broadcast_to(d.energised, (h, n))
    shed_at = live if net.sheddable is None else live & net.sheddable
    conv = b.add_vars((h, n), 0.0, np.maximum(d.conv_p, 0.0) * shed_at)
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
    """Import = schedule + what the upstream follows (band, ramp) + imbalance (penalised), and
    the imbalance while the upstream catches up with a change of what it follows (`lag`)."""
    h = d.periods
    imp = b.add_vars(h, -INF, INF)
    imp_q = b.add_vars(h, -INF, INF)
    follow_lo = np.full(h, -d.band)
    follow_hi = np.full(h, d.band)
    f0 = min(max(state.follow_mw, -d.band), d.band)
    follow_lo[0], follow_hi[0] = max(-d.band, f0 - d.ramp), min(d.band, f0 + d.ramp)
    follow = b.add_vars(h, follow_lo, follow_hi)
    imb_pos = b.add_vars(h, 0.0, INF)
    imb_neg = b.add_vars(h, 0.0, INF)
    b.add_rows(
        [(1.0, imp), (-1.0, follow), (-1.0, imb_pos), (1.0, imb_neg)], lo=d.schedule, hi=d.schedule
    )
    if h > 1:
        b.add_rows([(1.0, follow[1:]), (-1.0, follow[:-1])], lo=-d.ramp, hi=d.ramp)
    weight = wt.imbalance * d.dt_h * disc
    cost = [(weight, imb_pos), (weight, imb_neg)]
    lag = define_lag(b, d, follow, f0)
    if lag is not None:
        cost.append((wt.imbalance * disc, lag))
    return ImportHandles(imp, imp_q, follow, imb_pos, imb_neg), cost


def define_lag(b, d: ScenarioData, follow: np.ndarray, f0: float) -> np.ndarray | None:
    """Per period, the energy (MWh) the upstream leaves unfollowed while it moves from the last
    period's follow to this one's in steps of `r` = ramp * step_h / dt_h (the plant's follower
    moves by r each step from the step of the change on): for a change D, sum over steps
    k >= 1 of max(D - k r, 0) step_h. That is convex and piecewise linear in D, the maximum of
    0 and its pieces m step_h D - r step_h m (m + 1) / 2 (m = 1 .. n - 1; n steps a period,
    so D <= ramp < n r),
    so `lag` >= each piece of +-(follow_t - follow_t-1) is exact at the optimum. The follow
    stays a decision: where following less now spares a larger change later the model may
    choose it, which the plant's follower (it always heads for the deviation) does not; a
    lower bound then, exact where following is the best (tests/test_blocks.py). None: the
    period is the step."""
    n = math.ceil(d.dt_h / d.step_h - 1e-9) if d.step_h > 0 else 1  # steps a period
    if n < 2:
        return None
    lag = b.add_vars(d.periods, 0.0, INF)
    r = d.ramp * d.step_h / d.dt_h  # per step, also where the period is no whole of steps
    for m in range(1, n):
        piece, slope = r * d.step_h * m * (m + 1) / 2, m * d.step_h
        for sign in (1.0, -1.0):
            s = sign * slope
            b.add_rows([(1.0, lag[:1]), (-s, follow[:1])], lo=-piece - s * f0)
            if d.periods > 1:
                b.add_rows([(1.0, lag[1:]), (-s, follow[1:]), (s, follow[:-1])], lo=-piece)
    return lag
