"""One window of the dispatch model, composed from the blocks (blocks.py).

Stage-II builds one window per call with fixed sizes (the allocation); Stage-I builds one per
scenario window with the sizes as first-stage columns. Everything that changes between
Stage-II calls (forecasts, state, topology) enters through column and row bounds only, so the
matrix is identical call after call and the persistent solver only updates bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simgrid.fcm import Unit
from simgrid.optimization.blocks import (
    ImportHandles,
    InitialState,
    ModelOptions,
    ScenarioData,
    ShedHandles,
    Weights,
    define_import,
    define_shedding,
)
from simgrid.optimization.builder import Term
from simgrid.optimization.network_model import NetworkModel
from simgrid.units import FAMILIES, Module
from simgrid.units.base import Capacity, Regulariser, Window


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
    """Column ids of everything a caller reads back (`units`: per family; `regulariser`: the
    cost terms no one pays, simgrid.units.base.Regulariser)."""

    network: Any  # the network model's
    shed: ShedHandles
    imports: ImportHandles
    units: tuple
    regulariser: tuple[Term, ...] = ()

    def of(self, family: str):
        """One family's handles (by its name, e.g. "storage")."""
        return self.units[[f.name for f in FAMILIES].index(family)]


def assemble(
    b,
    net: NetworkModel,
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
    nh, c_net = net.define(b, data, wt, disc)
    sh, c_shed = define_shedding(b, net.buses, data, wt, disc)
    ih, c_imp = define_import(b, data, state, wt, disc)
    window = Window(data.dt_h, h, options.head(h), wt.restoration, options.commitment)
    handles, cost, injections = [], [*c_net, *c_shed, *c_imp], []
    for fam, part, cap, start in zip(FAMILIES, units.parts, sizes.caps, state.units, strict=True):
        hd, c = fam.define(b, part, cap, start, window)
        handles.append(hd)
        cost += c
        injections += fam.injections(part, hd)
    net.balance(b, data, nh, sh, ih, injections)
    regulariser = tuple(t for t in cost if isinstance(t, Regulariser))
    return Handles(nh, sh, ih, tuple(handles), regulariser), cost


def unit_data(modules: Sequence[Module], buses: Sequence[int], period_s: float, h: int) -> UnitData:
    """Model data of modules (catalogue modules, or a unit's aggregated module) at buses."""
    parts, index = [], []
    for fam in FAMILIES:
        idx = [i for i, m in enumerate(modules) if m.type in fam.types]
        parts.append(fam.data([modules[i] for i in idx], [buses[i] for i in idx], period_s, h))
        index.append(np.array(idx, dtype=int))
    return UnitData(tuple(parts), tuple(index))


def units_data(units: Sequence[Unit], period_s: float, horizon: int) -> UnitData:
    """Model data of allocated units: each aggregated unit is one module of its total size."""
    return unit_data([u.module for u in units], [u.bus for u in units], period_s, horizon)


def idle_state(units: UnitData, data: ScenarioData, follow_mw: float = 0.0) -> InitialState:
    """Units at rest and at their targets, budgets full, no history: the start of a planning
    window."""
    h, period_s = data.periods, data.dt_h * 3600
    return InitialState(
        follow_mw=follow_mw,
        units=tuple(
            f.idle_start(p, period_s, h) for f, p in zip(FAMILIES, units.parts, strict=True)
        ),
    )
