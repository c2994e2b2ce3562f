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

from simgrid.fcm import Unit
from simgrid.network import Network
from simgrid.optimization.blocks import (
    ImportHandles,
    InitialState,
    ModelOptions,
    NetworkData,
    NetworkHandles,
    ScenarioData,
    ShedHandles,
    Weights,
    define_balances,
    define_import,
    define_network,
    define_shedding,
)
from simgrid.optimization.builder import Term
from simgrid.types import Campus
from simgrid.units import FAMILIES, Module
from simgrid.units.base import Capacity, Window


@dataclass(frozen=True, eq=False)
class UnitData:
    """The units of a model by family (`parts`, in the registry's order; ratings per module,
    and in Stage-II an aggregated unit is one module of its aggregated size). `index[f]`:
    where family f's units stand in the order the caller gave them."""

    parts: tuple
    index: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


@dataclass(frozen=True, eq=False)
class Sizes:
    """How many modules each unit has, per family (fixed, or first-stage columns)."""

    caps: tuple[Capacity, ...]

    @classmethod
    def fixed(cls, units: UnitData) -> Sizes:
        return cls(tuple(Capacity.fixed(np.ones(len(p))) for p in units.parts))


@dataclass(frozen=True, eq=False)
class Handles:
    """Column ids of everything a caller reads back (`units`: per family)."""

    network: NetworkHandles
    shed: ShedHandles
    imports: ImportHandles
    units: tuple

    def of(self, family: str):
        """One family's handles (by its name, e.g. "storage")."""
        return self.units[[f.name for f in FAMILIES].index(family)]


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
    nh, c_net = define_network(b, net, data, wt, disc)
    sh, c_shed = define_shedding(b, net, data, wt, disc)
    ih, c_imp = define_import(b, data, state, wt, disc)
    window = Window(data.dt_h, h, options.head(h), wt.restoration)
    handles, cost, injections = [], [*c_net, *c_shed, *c_imp], []
    for fam, part, cap, start in zip(FAMILIES, units.parts, sizes.caps, state.units, strict=True):
        hd, c = fam.define(b, part, cap, start, window)
        handles.append(hd)
        cost += c
        injections += fam.injections(part, hd)
    define_balances(b, net, data, nh, sh, ih, injections)
    return Handles(nh, sh, ih, tuple(handles)), cost


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


def unit_data(modules: Sequence[Module], buses: Sequence[int], dt_s: float, h: int) -> UnitData:
    """Model data of modules (catalogue modules, or a unit's aggregated module) at buses."""
    parts, index = [], []
    for fam in FAMILIES:
        idx = [i for i, m in enumerate(modules) if m.type in fam.types]
        parts.append(fam.data([modules[i] for i in idx], [buses[i] for i in idx], dt_s, h))
        index.append(np.array(idx, dtype=int))
    return UnitData(tuple(parts), tuple(index))


def units_data(units: Sequence[Unit], dt_s: float, horizon: int) -> UnitData:
    """Model data of allocated units: each aggregated unit is one module of its total size."""
    return unit_data([u.module for u in units], [u.bus for u in units], dt_s, horizon)


def idle_state(units: UnitData, data: ScenarioData, follow_mw: float = 0.0) -> InitialState:
    """Units at rest and at their targets, budgets full, no history: the start of a planning
    window."""
    h, reach = data.periods, data.ramp
    dt_s = data.dt_h * 3600
    return InitialState(
        follow_lo=max(-data.band, follow_mw - reach),
        follow_hi=min(data.band, follow_mw + reach),
        units=tuple(f.idle_start(p, dt_s, h) for f, p in zip(FAMILIES, units.parts, strict=True)),
    )
