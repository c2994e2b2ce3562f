"""One window of the dispatch model, composed from the blocks (blocks.py).

Stage-II builds one window per call with fixed sizes (the allocation); Stage-I builds one per
scenario window with the sizes as first-stage columns. Everything that changes between
Stage-II calls (forecasts, state, topology) enters through column and row bounds only, so the
matrix is identical call after call and the persistent solver only updates bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.fcm import STORAGE, Unit, UnitType
from simgrid.network import Network
from simgrid.optimization.blocks import (
    Capacity,
    DrData,
    DrHandles,
    GenData,
    GenHandles,
    ImportHandles,
    InitialState,
    ModelOptions,
    NetworkData,
    NetworkHandles,
    ScenarioData,
    ShedHandles,
    StorageData,
    StorageHandles,
    Weights,
    define_balances,
    define_dr,
    define_fast_gen,
    define_import,
    define_network,
    define_shedding,
    define_storage,
)
from simgrid.optimization.builder import Term
from simgrid.types import Campus


@dataclass(frozen=True, eq=False)
class UnitData:
    """The units of a model by type, ratings per module (Stage-II: an aggregated unit is one
    module of its aggregated size)."""

    storage: StorageData
    gen: GenData
    dr: DrData


@dataclass(frozen=True, eq=False)
class Sizes:
    """How many modules each unit has (fixed, or first-stage columns)."""

    storage: Capacity
    gen: Capacity
    dr: Capacity

    @classmethod
    def fixed(cls, units: UnitData) -> Sizes:
        return cls(*(Capacity.fixed(np.ones(len(x))) for x in (units.storage, units.gen, units.dr)))


@dataclass(frozen=True, eq=False)
class Handles:
    """Column ids of everything a caller reads back."""

    network: NetworkHandles
    shed: ShedHandles
    imports: ImportHandles
    storage: StorageHandles
    gen: GenHandles
    dr: DrHandles


def assemble(
    b,
    net: NetworkData,
    units: UnitData,
    sizes: Sizes,
    data: ScenarioData,
    state: InitialState,
    wt: Weights,
    options: ModelOptions,
) -> tuple[Handles, list[Term]]:
    """Add one window to builder `b`; return its handles and its cost as terms."""
    h = data.periods
    # later periods may weigh less (Stage-II): under a flat forecast relief would otherwise be
    # postponed call after call (acting later looks as good, and owed energy costs holding)
    disc = options.discount ** np.arange(h)
    head = options.head(h)
    nh, c_net = define_network(b, net, data, wt, disc)
    sh, c_shed = define_shedding(b, net, data, wt, disc)
    ih, c_imp = define_import(b, data, state, wt, disc)
    st, c_st = define_storage(b, units.storage, sizes.storage, data, state.st_e0, wt, head)
    gh, c_gen = define_fast_gen(b, units.gen, sizes.gen, data, state, head)
    dh, c_dr = define_dr(b, units.dr, sizes.dr, data, state, wt, head)
    injections = (
        (units.storage.bus, st.pd, 1.0),
        (units.storage.bus, st.pc, -1.0),
        (units.gen.bus, gh.p, 1.0),
        (units.dr.bus, dh.curtail, 1.0),
        (units.dr.bus, dh.payback, -1.0),
    )
    define_balances(b, net, data, nh, sh, ih, injections)
    cost = [*c_net, *c_shed, *c_imp, *c_st, *c_gen, *c_dr]
    return Handles(nh, sh, ih, st, gh, dh), cost


def network_data(
    nw: Network,
    max_loading_percent: float,
    campuses: Sequence[Campus] = (),
    mlf: np.ndarray | None = None,
) -> NetworkData:
    """The model's view of a network: tree, LinDistFlow coefficients, ratings, load shares."""
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
        np.array([c.bus for c in campuses], dtype=int),
        np.array([c.q_per_p for c in campuses]),
        np.zeros(nw.n_bus) if mlf is None else mlf,
    )


def periods(seconds, dt_s: float) -> np.ndarray:
    """Whole periods of `dt_s` that cover `seconds` (delays, minimum times)."""
    return np.ceil(np.asarray(seconds, dtype=float) / dt_s - 1e-9)


def unit_data(modules: Sequence, buses: Sequence[int], dt_s: float, horizon: int) -> UnitData:
    """Model data of modules (catalogue `Module`s, or a unit's aggregated module) at buses."""
    pairs = list(zip(modules, buses, strict=True))

    def pick(types, attr):
        return np.array([getattr(m, attr) for m, _ in pairs if m.type in types], float)

    def bus(types):
        return np.array([b for m, b in pairs if m.type in types], dtype=int)

    st, g, dr = STORAGE, (UnitType.FAST_GEN,), (UnitType.DR,)
    return UnitData(
        storage=StorageData(
            bus=bus(st),
            p=pick(st, "p_mw"),
            e=pick(st, "e_mwh"),
            soc_min=pick(st, "soc_min"),
            soc_max=pick(st, "soc_max"),
            soc_target=pick(st, "soc_target"),
            eta_c=pick(st, "eta_charge"),
            eta_d=pick(st, "eta_discharge"),
            p_block=pick(st, "p_min_block_mw"),
            deg_cost=pick(st, "degradation_cost_per_mwh"),
        ),
        gen=GenData(
            bus=bus(g),
            p=pick(g, "p_mw"),
            p_min=pick(g, "p_min_mw"),
            ramp=np.minimum(pick(g, "ramp_mw_per_min") * dt_s / 60, pick(g, "p_mw")),
            ramp_per_s=pick(g, "ramp_mw_per_min") / 60,
            up=np.maximum(periods(pick(g, "min_up_s"), dt_s), 1),
            down=np.maximum(periods(pick(g, "min_down_s"), dt_s), 1),
            start_cost=pick(g, "start_cost"),
            delay_s=pick(g, "start_delay_s"),
            mc=pick(g, "marginal_cost_per_mwh"),
        ),
        dr=DrData(
            bus=bus(dr),
            p=pick(dr, "p_mw"),
            payback=pick(dr, "payback_mw"),
            rebound=pick(dr, "rebound_fraction"),
            max_on=np.minimum(np.floor(pick(dr, "max_duration_s") / dt_s + 1e-9), horizon + 1),
            cost=pick(dr, "cost_per_mwh"),
            notice_s=pick(dr, "notification_s"),
            energy=pick(dr, "energy_mwh"),
        ),
    )


def units_data(units: Sequence[Unit], dt_s: float, horizon: int) -> UnitData:
    """Model data of allocated units: each aggregated unit is one module of its total size."""
    return unit_data([u.module for u in units], [u.bus for u in units], dt_s, horizon)


def idle_state(units: UnitData, data: ScenarioData, follow_mw: float = 0.0) -> InitialState:
    """Units at rest and at their targets, budgets full, no history: the start of a planning
    window (and of validation helpers)."""
    h = data.periods
    g, d = len(units.gen), len(units.dr)
    reach = data.ramp
    t = np.arange(h)
    s_ub = np.where(t[None, :] < periods(units.gen.delay_s, data.dt_h * 3600)[:, None], 0.0, 1.0)
    z_ub = np.where(t[None, :] < periods(units.dr.notice_s, data.dt_h * 3600)[:, None], 0.0, 1.0)
    m = units.dr.max_on[:, None]
    return InitialState(
        follow_lo=max(-data.band, follow_mw - reach),
        follow_hi=min(data.band, follow_mw + reach),
        st_e0=units.storage.soc_target.copy(),
        g_p0=np.zeros(g),
        g_ramp0_s=np.full(g, data.dt_h * 3600),
        g_u0=np.zeros(g),
        g_u_lb=np.zeros((g, h)),
        g_u_ub=np.ones((g, h)),
        g_s_ub=s_ub.reshape(g, h),
        d_a0=np.zeros(d),
        d_z_ub=z_ub.reshape(d, h),
        d_run_left=np.broadcast_to(m, (d, h)).astype(float).copy(),
        d_budget=np.ones(d),
        d_owed0=np.zeros(d),
    )
