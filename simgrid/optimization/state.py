"""What Stage-II's units carry between steps, and what that state allows in the next window.

The units' state (per family, simgrid.units) is advanced step by step under the powers the
plant applied (`Applied`); at a call it becomes the window's `InitialState`. A solved window
is a `Plan`; its first period is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.optimization.blocks import InitialState
from simgrid.optimization.dispatch_model import Handles, UnitData
from simgrid.types import Snapshot
from simgrid.units import FAMILIES


@dataclass(frozen=True, eq=False)
class Applied:
    """What the units (per family) and the shedding do at one step; held until the next."""

    units: tuple
    shed_p: np.ndarray  # per bus
    shed_q: np.ndarray

    @classmethod
    def idle(cls, ud: UnitData, n_bus: int) -> Applied:
        idle = tuple(f.idle(p) for f, p in zip(FAMILIES, ud.parts, strict=True))
        return cls(idle, np.zeros(n_bus), np.zeros(n_bus))

    def injection_mw(self, ud: UnitData, n_bus: int) -> np.ndarray:
        """Per bus, the active power the units inject (generation-positive)."""
        p = np.zeros(n_bus)
        for f, part, ap in zip(FAMILIES, ud.parts, self.units, strict=True):
            np.add.at(p, part.bus, f.injection_mw(ap))
        return p

    def snapshot(self) -> Snapshot:
        return Snapshot.join(
            **{f.name: Snapshot.of_fields(a) for f, a in zip(FAMILIES, self.units, strict=True)},
            shed_p=self.shed_p,
            shed_q=self.shed_q,
        )

    @classmethod
    def restore(cls, snap: Snapshot, ud: UnitData, n_bus: int) -> Applied:
        like = cls.idle(ud, n_bus)
        units = tuple(
            snap.require(f.name).fields_like(a) for f, a in zip(FAMILIES, like.units, strict=True)
        )
        return cls(units, snap.like("shed_p", like.shed_p), snap.like("shed_q", like.shed_q))


@dataclass(frozen=True, eq=False)
class Plan:
    """A solved window: its decisions over all periods (for the fallback) and what it assumed."""

    t_s: float
    units: tuple  # per family: (U, H) decisions
    shed_p: np.ndarray  # (H, N) conventional + campus shed at each bus
    shed_q: np.ndarray
    demand_mw: float = 0.0  # connected demand the plan's first period assumed (no losses)
    schedule_mw: float = 0.0  # the import schedule it assumed

    def at(self, k: int) -> Applied:
        """Period k's decisions (held when a solve fails; the last period repeats)."""
        units = tuple(f.at(p, k) for f, p in zip(FAMILIES, self.units, strict=True))
        row = min(k, self.shed_p.shape[0] - 1)
        return Applied(units, self.shed_p[row], self.shed_q[row])

    def snapshot(self) -> Snapshot:
        plans = {f.name: Snapshot.of_fields(p) for f, p in zip(FAMILIES, self.units, strict=True)}
        return Snapshot.join(
            **plans,
            t_s=self.t_s,
            shed_p=self.shed_p,
            shed_q=self.shed_q,
            demand_mw=self.demand_mw,
            schedule_mw=self.schedule_mw,
        )

    @classmethod
    def restore(cls, snap: Snapshot, ud: UnitData, h: int, n_bus: int) -> Plan:
        units = tuple(
            snap.require(f.name).fields_like(f.plan_zeros(p, h))
            for f, p in zip(FAMILIES, ud.parts, strict=True)
        )
        shed = np.zeros((h, n_bus))
        return cls(
            snap.number("t_s", 0.0),
            units,
            snap.like("shed_p", shed),
            snap.like("shed_q", shed),
            snap.number("demand_mw", 0.0),
            snap.number("schedule_mw", 0.0),
        )


@dataclass
class UnitState:
    """What the units carry between steps, per family."""

    units: list

    def of(self, family: str):
        """The state of one family's units (by its name, e.g. "storage")."""
        return self.units[[f.name for f in FAMILIES].index(family)]

    @classmethod
    def initial(cls, ud: UnitData) -> UnitState:
        """Storage at its target, everything else off and fresh."""
        return cls([f.initial(p) for f, p in zip(FAMILIES, ud.parts, strict=True)])

    def advance(self, ap: Applied, ud: UnitData, since_s: float, t_s: float) -> None:
        """Move the state forward `since_s` seconds (to `t_s`) under the applied powers."""
        for f, s, a, p in zip(FAMILIES, self.units, ap.units, ud.parts, strict=True):
            f.advance(s, a, p, since_s, t_s)

    def window_start(
        self,
        ud: UnitData,
        t_s: float,
        period_s: float,
        h: int,
        *,
        since_s: float,
        follow_mw: float,
    ) -> InitialState:
        """The window's initial state: what the units have and what their state forbids."""
        starts = tuple(
            f.window_start(s, p, t_s, period_s, h, since_s)
            for f, s, p in zip(FAMILIES, self.units, ud.parts, strict=True)
        )
        return InitialState(follow_mw=follow_mw, units=starts)

    def issue_commands(
        self, ud: UnitData, x: np.ndarray, hd: Handles, t_s: float, period_s: float, h: int
    ) -> None:
        """Start commands and DR notifications the plan needs now (delays are real)."""
        for f, s, p, fh in zip(FAMILIES, self.units, ud.parts, hd.units, strict=True):
            f.issue_commands(s, p, x, fh, t_s, period_s, h)

    def snapshot(self) -> Snapshot:
        return Snapshot.join(
            **{f.name: Snapshot.of_fields(s) for f, s in zip(FAMILIES, self.units, strict=True)}
        )

    @classmethod
    def restore(cls, snap: Snapshot, ud: UnitData) -> UnitState:
        return cls(
            [f.restore(snap.require(f.name), p) for f, p in zip(FAMILIES, ud.parts, strict=True)]
        )
