"""Live campus load that event processes change at their own instants.

Each event process installs, at each of its knots (`Event.knots`), the segment that runs to its
next knot; the load at any instant is exact (linear ramps, sinusoids), not only on the grid.
`simgrid.aiload.campus_load_mw` is the vectorised twin used for scenario sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simgrid.profiles import LoadProfile
from simgrid.types import Campus


@dataclass(frozen=True)
class Ramp:
    """Linear from v0 at t0 to v1 at t1, then held at v1."""

    t0_s: float
    v0: float
    t1_s: float
    v1: float

    def at(self, t_s: float) -> float:
        if t_s >= self.t1_s or self.t1_s <= self.t0_s:
            return self.v1
        if t_s <= self.t0_s:
            return self.v0
        return self.v0 + (self.v1 - self.v0) * (t_s - self.t0_s) / (self.t1_s - self.t0_s)


@dataclass(frozen=True)
class Sine:
    """amplitude * sin(2 pi (t - t0) / period)."""

    t0_s: float
    amplitude: float
    period_s: float

    def at(self, t_s: float) -> float:
        return self.amplitude * math.sin(2 * math.pi * (t_s - self.t0_s) / self.period_s)


@dataclass
class CampusLoad:
    """Live load of one campus: (base + additive MW) x prod(1 - tripped fraction), in [0, p_nom]."""

    campus: Campus
    profile: LoadProfile
    additive_mw: dict[int, Ramp | Sine] = field(default_factory=dict)
    tripped_fraction: dict[int, Ramp] = field(default_factory=dict)

    def base_mw(self, t_s: float) -> float:
        return self.campus.base_utilisation * self.campus.p_nom_mw * float(self.profile.at(t_s))

    def p_mw(self, t_s: float) -> float:
        p = self.base_mw(t_s) + sum(c.at(t_s) for c in self.additive_mw.values())
        for trip in self.tripped_fraction.values():
            p *= 1.0 - trip.at(t_s)
        return min(max(p, 0.0), self.campus.p_nom_mw)
