"""Storage: battery storage (BESS) and long-duration storage (LDES, with a minimum discharge
block). Energy balance with charge and discharge efficiencies, no simultaneous charge and
discharge (a mode binary), restoration of the stored energy to its target outside a dead band,
and degradation cost on the energy passed through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.errors import ConfigError
from simgrid.units.base import (
    COL,
    INF,
    Capacity,
    Follower,
    Key,
    Module,
    Regulariser,
    Term,
    Window,
    at_start,
    later,
    period,
    pick,
    previous,
)

SOC_DEAD_BAND = 0.05  # of a storage unit's usable energy, around its target

_KEYS = (
    Key("e_mwh", required=True, lo_open=True),
    Key("eta_charge", lo_open=True, hi=1.0),
    Key("eta_discharge", lo_open=True, hi=1.0),
    Key("soc_min", hi=1.0),
    Key("soc_max", hi=1.0),
    Key("soc_target", hi=1.0),
    Key("degradation_cost_per_mwh"),
)


@dataclass(frozen=True)
class StorageModule(Module):
    """p_mw, e_mwh, eta_charge, eta_discharge, soc_min/max/target (fractions of e_mwh),
    degradation_cost_per_mwh (throughput), p_min_block_mw (ldes: smallest discharge)."""

    e_mwh: float = 0.0
    eta_charge: float = 1.0
    eta_discharge: float = 1.0
    soc_min: float = 0.0
    soc_max: float = 1.0
    soc_target: float = 0.5
    degradation_cost_per_mwh: float = 0.0
    p_min_block_mw: float = 0.0

    SCALED = ("p_mw", "capex", "e_mwh", "p_min_block_mw")


@dataclass(frozen=True, eq=False)
class StorageData:
    """Storage units, ratings per module (energies in MWh, powers in MW)."""

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
class StorageHandles:
    pc: np.ndarray  # (S, H)
    pd: np.ndarray
    mode: np.ndarray
    e: np.ndarray
    dev_up: np.ndarray
    dev_dn: np.ndarray


@dataclass(frozen=True, eq=False)
class StorageStart:
    e0: np.ndarray  # stored energy, as a fraction of the unit's energy rating
    e0_mwh: np.ndarray | None = None  # or in MWh (a planned day's later blocks)


@dataclass
class StorageState:
    e: np.ndarray  # MWh


@dataclass(frozen=True, eq=False)
class StorageApplied:
    pc: np.ndarray  # charge (MW)
    pd: np.ndarray  # discharge


@dataclass(frozen=True, eq=False)
class StoragePlan:
    pc: np.ndarray  # (S, H)
    pd: np.ndarray


class Storage(Follower):
    name = "storage"
    module = StorageModule
    types = {"bess": _KEYS, "ldes": (*_KEYS, Key("p_min_block_mw"))}

    def check(self, m, fail) -> None:
        if m.soc_min > m.soc_max:
            raise fail("soc_min", f"must not exceed soc_max ({m.soc_max:g})")
        if not m.soc_min <= m.soc_target <= m.soc_max:
            raise fail(
                "soc_target",
                f"must lie within [soc_min, soc_max] = [{m.soc_min:g}, {m.soc_max:g}]",
            )
        if m.p_min_block_mw > m.p_mw:
            raise fail("p_min_block_mw", f"must not exceed p_mw ({m.p_mw:g})")

    def data(self, modules: Sequence[StorageModule], buses, period_s, h) -> StorageData:
        return StorageData(
            bus=np.array(buses, dtype=int),
            p=pick(modules, "p_mw"),
            e=pick(modules, "e_mwh"),
            soc_min=pick(modules, "soc_min"),
            soc_max=pick(modules, "soc_max"),
            soc_target=pick(modules, "soc_target"),
            eta_c=pick(modules, "eta_charge"),
            eta_d=pick(modules, "eta_discharge"),
            p_block=pick(modules, "p_min_block_mw"),
            deg_cost=pick(modules, "degradation_cost_per_mwh"),
        )

    def define(self, b, u: StorageData, cap: Capacity, start: StorageStart, w: Window):
        """Energy balance with efficiencies, no simultaneous charge and discharge (mode
        binary), a minimum discharge block where one is set (LDES), restoration of the stored
        energy to its target outside a dead band."""
        s, h, dt = len(u), w.periods, w.dt_h
        pc = b.add_vars((s, h), 0.0, cap.upper(u.p))
        pd = b.add_vars((s, h), 0.0, cap.upper(u.p))
        mode = b.add_vars((s, h), 0.0, 1.0, integer=w.head)
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
        balance = [
            (1.0, e),
            (-later(h), previous(e)),
            (-dt * u.eta_c[:, COL], pc),
            (dt / u.eta_d[:, COL], pd),
        ]
        if start.e0_mwh is not None:
            rhs = at_start(start.e0_mwh, h)
            b.add_rows(balance, lo=rhs, hi=rhs)
        else:
            _energy_start(b, balance, cap, at_start(start.e0, h) * u.e[:, COL])
        dev_up = b.add_vars((s, h), 0.0, INF)
        dev_dn = b.add_vars((s, h), 0.0, INF)
        band = SOC_DEAD_BAND * (e_max - e_min)
        cap.limit(b, [(1.0, e), (-1.0, dev_up)], u.soc_target * u.e + band, h, below=True)
        cap.limit(b, [(1.0, e), (1.0, dev_dn)], u.soc_target * u.e - band, h, below=False)
        deg = u.deg_cost[:, COL] * dt
        rest = w.restoration_per_mwh * dt
        cost = [(deg, pc), (deg, pd), Regulariser(rest, dev_up), Regulariser(rest, dev_dn)]
        return StorageHandles(pc, pd, mode, e, dev_up, dev_dn), cost

    def injections(self, u: StorageData, hd: StorageHandles):
        return [(u.bus, hd.pd, 1.0), (u.bus, hd.pc, -1.0)]

    def idle_start(self, u: StorageData, period_s, h) -> StorageStart:
        return StorageStart(u.soc_target.copy())

    def next_start(
        self, start, x, hd: StorageHandles, u: StorageData, size, w, nxt, period_s, h, news
    ):
        e = x[hd.e[:, -1]]
        cap = u.e * size
        return StorageStart(np.divide(e, cap, out=u.soc_target.copy(), where=cap > 0), e)

    def absolute(self, start: StorageStart, u: StorageData, size) -> StorageStart:
        return StorageStart(start.e0, start.e0 * u.e * size)

    def initial(self, u: StorageData) -> StorageState:
        """At its target."""
        return StorageState(u.soc_target * u.e)

    def advance(self, state: StorageState, ap: StorageApplied, u: StorageData, since_s, t_s):
        flow = u.eta_c * ap.pc - ap.pd / u.eta_d
        state.e = np.clip(state.e + since_s / 3600.0 * flow, u.soc_min * u.e, u.soc_max * u.e)

    def window_start(self, state: StorageState, u: StorageData, t_s, period_s, h, since_s):
        return StorageStart(np.divide(state.e, u.e, out=np.zeros(len(u)), where=u.e > 0))

    def restore(self, snap, u: StorageData) -> StorageState:
        state = super().restore(snap, u)
        e, tol = state.e, 1e-9
        if not np.all((e >= u.soc_min * u.e - tol) & (e <= u.soc_max * u.e + tol)):
            raise ConfigError(
                snap.source, snap.prefix + "e", "...", "stored energy outside the units' range"
            )
        return state

    def plan_of(self, x, hd: StorageHandles) -> StoragePlan:
        return StoragePlan(x[hd.pc], x[hd.pd])

    def plan_zeros(self, u: StorageData, h) -> StoragePlan:
        return StoragePlan(np.zeros((len(u), h)), np.zeros((len(u), h)))

    def at(self, plan: StoragePlan, k: int) -> StorageApplied:
        return StorageApplied(period(plan.pc, k), period(plan.pd, k))

    def idle(self, u: StorageData) -> StorageApplied:
        return StorageApplied(np.zeros(len(u)), np.zeros(len(u)))

    def injection_mw(self, ap: StorageApplied) -> np.ndarray:
        return ap.pd - ap.pc

    def round(self, x, put, lb, hd: StorageHandles, start, u: StorageData) -> None:
        # by the net flow: the relaxation may charge and discharge at once to spend energy
        # above the SoC target, which the rounded point must do by charging less (an LDES
        # below half its minimum block: not at all)
        put(hd.mode, x[hd.pd] - x[hd.pc] >= np.maximum(u.p_block[:, None] / 2, 1e-7))

    def limits(self, state: StorageState, u: StorageData, hold_h, since_s):
        """Discharge and charge within the rating and the energy left over the hold (an LDES
        discharges a block or nothing)."""
        dis = np.minimum(u.p, np.maximum(state.e - u.soc_min * u.e, 0) * u.eta_d / hold_h)
        dis = np.where(dis >= u.p_block, dis, 0.0)
        ch = np.minimum(u.p, np.maximum(u.soc_max * u.e - state.e, 0) / u.eta_c / hold_h)
        return -ch, dis

    def followed(self, p_mw, base, state, u: StorageData) -> StorageApplied:
        block = (p_mw > 0) & (p_mw < u.p_block)  # LDES: round to the nearer of 0 and a block
        p = np.where(block, np.where(p_mw >= u.p_block / 2, u.p_block, 0.0), p_mw)
        return StorageApplied(np.maximum(-p, 0.0), np.maximum(p, 0.0))

    def report(self, ap: StorageApplied, state: StorageState, u: StorageData):
        return ap.pd - ap.pc, state.e.copy(), np.ones(len(u)), np.zeros(len(u))

    def cost_per_mwh(self, m: StorageModule) -> float:
        return m.degradation_cost_per_mwh

    def energy_mwh(self, m: StorageModule) -> float:
        return m.e_mwh


def _energy_start(b, balance: list[Term], cap: Capacity, e0_per_module: np.ndarray) -> None:
    """The energy balance rows: e_t - e_{t-1} - charge + discharge = e0 (period 0) or 0."""
    if cap.chosen:
        coef = -e0_per_module  # (S, H): nonzero in period 0 only
        terms = [*balance, (coef, np.broadcast_to(cap.cols[:, COL], coef.shape))]
        b.add_rows(terms, lo=0.0, hi=0.0)
    else:
        rhs = e0_per_module * cap.count[:, COL]
        b.add_rows(balance, lo=rhs, hi=rhs)


FAMILY = Storage()
