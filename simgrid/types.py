"""Records and enums shared by every layer: events, campuses and the dispatch seam."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class EventKind(enum.StrEnum):
    """Disturbances the co-simulation can inject (DESIGN, shock table)."""

    RAMP_UP = "ramp_up"
    SURGE = "surge"
    TRIP = "trip"
    OSCILLATION = "oscillation"
    LINE_OUTAGE = "line_outage"


AI_EVENT_KINDS = frozenset(
    {EventKind.RAMP_UP, EventKind.SURGE, EventKind.TRIP, EventKind.OSCILLATION}
)


@dataclass(frozen=True)
class Campus:
    """An AI campus: a load of nameplate `p_nom_mw` at `bus`, running at `base_utilisation`."""

    name: str
    bus: int
    p_nom_mw: float
    base_utilisation: float
    power_factor: float = 0.98

    @property
    def q_per_p(self) -> float:
        """Reactive power drawn per MW (lagging power factor)."""
        return math.tan(math.acos(self.power_factor))


@dataclass(frozen=True)
class Event:
    """One timed disturbance.

    ramp_up / surge: +`magnitude_mw` over `ramp_s`, held `duration_s`, then back over `ramp_s`
    (`duration_s` = inf: held to the end).
    trip: the campus loses `fraction` of its load within `ramp_s` (0 = instantly), stays off
    `duration_s`, then returns over `return_ramp_s`.
    oscillation: a sinusoidal swing of amplitude `magnitude_mw` and period `period_s` for
    `duration_s`.
    line_outage: `line` is out of service for `duration_s` (repair time).
    """

    kind: EventKind
    start_s: float
    duration_s: float = math.inf
    campus: str | None = None
    line: int | None = None
    magnitude_mw: float = 0.0
    ramp_s: float = 0.0
    return_ramp_s: float = 0.0
    fraction: float = 1.0
    period_s: float = 0.0

    @property
    def end_s(self) -> float:
        """When the disturbance is over (the system may still be recovering)."""
        if self.kind in (EventKind.RAMP_UP, EventKind.SURGE):
            return self.start_s + 2 * self.ramp_s + self.duration_s
        if self.kind is EventKind.TRIP:
            return self.start_s + self.ramp_s + self.duration_s + self.return_ramp_s
        return self.start_s + self.duration_s

    def instants_s(self) -> tuple[float, ...]:
        """Instants at which this event changes the system (its breakpoints)."""
        s = self.start_s
        if self.kind in (EventKind.RAMP_UP, EventKind.SURGE):
            pts = (
                s,
                s + self.ramp_s,
                s + self.ramp_s + self.duration_s,
                s + 2 * self.ramp_s + self.duration_s,
            )
        elif self.kind is EventKind.TRIP:
            pts = (s, s + self.ramp_s, s + self.ramp_s + self.duration_s, self.end_s)
        else:
            pts = (s, self.end_s)
        return tuple(sorted({p for p in pts if math.isfinite(p)}))


@dataclass(frozen=True)
class GridState:
    """What a dispatch policy sees at one instant (before its set-points are applied).

    Arrays are per bus (position in the network's bus order) unless named otherwise.
    """

    t_s: float
    is_event_step: bool
    demand_p_mw: np.ndarray
    demand_q_mvar: np.ndarray
    energised: np.ndarray
    line_in_service: np.ndarray
    ai_load_mw: np.ndarray
    import_schedule_mw: float
    last_vm_pu: np.ndarray | None = None
    last_import_mw: float | None = None


@dataclass(frozen=True)
class SetPoints:
    """What a dispatch policy decides, per bus: injections (generation-positive) and shedding."""

    p_injection_mw: np.ndarray
    q_injection_mvar: np.ndarray
    shed_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def zeros(cls, n_bus: int) -> SetPoints:
        return cls(np.zeros(n_bus), np.zeros(n_bus), np.zeros(n_bus))


class DispatchPolicy(Protocol):
    """The seam the Stage-II dispatcher implements: called at event steps and on an interval."""

    def dispatch(self, state: GridState) -> SetPoints:
        """Return set-points that hold until the next call."""
        ...


@dataclass(frozen=True)
class DoNothing:
    """No flexible resource: the feeder rides the shock alone."""

    n_bus: int

    def dispatch(self, state: GridState) -> SetPoints:
        return SetPoints.zeros(self.n_bus)
