"""Records and enums shared by every layer: events, campuses and the dispatch seam."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from simgrid.errors import ConfigError

T = TypeVar("T")


class EventKind(enum.StrEnum):
    """Disturbances the co-simulation can inject (see the README's shock kinds)."""

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
    """An AI campus: a load of nameplate `p_nom_mw` at `bus`.

    Without events it draws base_utilisation x p_nom_mw x profile(t), where `profile` is
    `flat` (training), `diurnal` (inference follows the daily shape) or a CSV file
    (`profile_file`, columns t_s,factor).
    """

    name: str
    bus: int
    p_nom_mw: float
    base_utilisation: float
    power_factor: float = 0.98
    profile: str = "flat"
    profile_file: Path | None = None

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
    group: int = -1  # events drawn together (a coincident shock) share a group number

    @property
    def end_s(self) -> float:
        """When the disturbance is over (the system may still be recovering)."""
        if self.kind in (EventKind.RAMP_UP, EventKind.SURGE):
            return self.start_s + 2 * self.ramp_s + self.duration_s
        if self.kind is EventKind.TRIP:
            return self.start_s + self.ramp_s + self.duration_s + self.return_ramp_s
        return self.start_s + self.duration_s

    def knots(self) -> tuple[tuple[float, float], ...]:
        """The event's effect as (instant, value) knots, linear in between, held after the last.

        Value: MW added to the campus (ramp_up, surge), fraction of the campus load lost (trip),
        oscillation amplitude in MW (oscillation), 1 while the line is out (line_outage).
        Before the first knot the effect is 0. Knots at the same instant make a step. Only
        finite instants are listed: an effect that lasts forever holds its last value.
        """
        s, r, d = self.start_s, self.ramp_s, self.duration_s
        if self.kind in (EventKind.RAMP_UP, EventKind.SURGE):
            pts = (
                (s, 0.0),
                (s + r, self.magnitude_mw),
                (s + r + d, self.magnitude_mw),
                (s + 2 * r + d, 0.0),
            )
        elif self.kind is EventKind.TRIP:
            pts = (
                (s, 0.0),
                (s + r, self.fraction),
                (s + r + d, self.fraction),
                (s + r + d + self.return_ramp_s, 0.0),
            )
        elif self.kind is EventKind.OSCILLATION:
            pts = ((s, self.magnitude_mw), (s + d, 0.0))
        else:
            pts = ((s, 1.0), (s + d, 0.0))
        return tuple((t, v) for t, v in pts if math.isfinite(t))

    def instants_s(self) -> tuple[float, ...]:
        """Instants at which this event changes the system (its breakpoints)."""
        return tuple(sorted({t for t, _ in self.knots()}))


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
    upstream_follow_mw: float = 0.0
    uvls_fraction: np.ndarray | None = None  # per bus: load disconnected by protection
    # the last solved step (None if it did not solve): per line its active flow at the from
    # end and loading, per bus what it drew (see powerflow.net_demand)
    last_line_p_mw: np.ndarray | None = None
    last_loading_percent: np.ndarray | None = None
    last_net_p_mw: np.ndarray | None = None
    last_net_q_mvar: np.ndarray | None = None

    def connected(self) -> np.ndarray:
        """Per bus, the fraction of its load connected (energised, not shed by protection)."""
        kept = 1.0 if self.uvls_fraction is None else 1.0 - self.uvls_fraction
        return self.energised * kept

    def served_p_mw(self) -> np.ndarray:
        """Demand still connected."""
        return self.demand_p_mw * self.connected()


class SolveStatus(enum.IntEnum):
    """Outcome of a dispatch policy's decision at one step (recorded as `dispatch_status`)."""

    OPTIMAL = 0
    FEASIBLE = 1  # stopped (time limit) with a feasible solution
    HELD = 2  # fallback: the last feasible plan was held
    SHED = 3  # fallback: no plan; emergency shedding of the AI excess
    IDLE = 4  # no dispatch this step (set-points held from the last call)

    @property
    def is_ok(self) -> bool:
        return self in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


@dataclass(frozen=True)
class SetPoints:
    """What a dispatch policy decides, per bus: injections (generation-positive) and shedding.

    Shedding is given as the active and reactive load it removes (`shed_mw`, `shed_mvar`), so
    that what a policy plans and what the plant applies are the same P and Q at the same bus.
    `status` is the policy's outcome (`SolveStatus`)
    and `solve_s` the wall time the decision took. `planned_import_mw`, `planned_vm_pu` and
    `planned_line_p_mw` are the policy's own prediction of the import, bus voltages and lines'
    active power at their from ends for these set-points (NaN / None when it makes none), to
    judge its network model against the AC result.
    """

    p_injection_mw: np.ndarray
    q_injection_mvar: np.ndarray
    shed_mw: np.ndarray
    shed_mvar: np.ndarray
    status: int = 0
    solve_s: float = 0.0
    planned_import_mw: float = math.nan
    planned_vm_pu: np.ndarray | None = None
    planned_line_p_mw: np.ndarray | None = None

    @classmethod
    def zeros(cls, n_bus: int) -> SetPoints:
        return cls(np.zeros(n_bus), np.zeros(n_bus), np.zeros(n_bus), np.zeros(n_bus))


@dataclass(frozen=True)
class UnitReport:
    """Per flexible unit at one instant: power (generation-positive), stored energy (NaN if not
    storage), commitment / activity, and DR curtailment."""

    p_mw: np.ndarray
    soc_mwh: np.ndarray
    on: np.ndarray
    dr_curtail_mw: np.ndarray


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A component's state as named arrays of numbers (names nest with '.').

    What a long run's checkpoint holds: numbers only, so reading one back can never run code.
    Reading checks every array against what the component expects (a template of the right
    shape and dtype kind) and names the file and variable when it does not fit.
    """

    arrays: Mapping[str, np.ndarray]
    source: str = "<checkpoint>"
    prefix: str = ""  # of a part's names in the whole (for messages)

    @classmethod
    def join(cls, **parts: Snapshot | np.ndarray | float | bool | None) -> Snapshot:
        """Parts under their names (a nested snapshot's names get the prefix); None is left
        out, which is how an absent optional part (no plan yet) is stored."""
        out: dict[str, np.ndarray] = {}
        for name, part in parts.items():
            if isinstance(part, Snapshot):
                out.update({f"{name}.{k}": v for k, v in part.arrays.items()})
            elif part is not None:
                out[name] = np.array(part)
        return cls(out)

    @classmethod
    def of_fields(cls, record: object) -> Snapshot:
        """Every field of a dataclass of arrays and numbers."""
        return cls.join(**{f.name: getattr(record, f.name) for f in fields(record)})

    def part(self, name: str) -> Snapshot | None:
        """The arrays stored under `name.` (None if there are none: an absent part)."""
        prefix = name + "."
        sub = {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        return Snapshot(sub, self.source, self.prefix + prefix) if sub else None

    def require(self, name: str) -> Snapshot:
        """The part `name`, which must be there."""
        part = self.part(name)
        if part is None:
            raise ConfigError(self.source, self.prefix + name, None, "missing from the checkpoint")
        return part

    def like(self, name: str, template: np.ndarray | float | bool) -> np.ndarray:
        """Array `name`, checked to have the template's shape and kind of dtype (a copy)."""
        want = np.asarray(template)
        if name not in self.arrays:
            raise ConfigError(self.source, self.prefix + name, None, "missing from the checkpoint")
        got = np.asarray(self.arrays[name])
        if got.shape != want.shape or _kind(got) != _kind(want):
            raise ConfigError(
                self.source,
                self.prefix + name,
                f"{got.dtype.name} {got.shape}",
                f"expected {want.dtype.name} of shape {want.shape}: not this run's checkpoint",
            )
        return got.astype(want.dtype, copy=True)

    def number(self, name: str, template: float) -> float:
        return float(self.like(name, template))

    def fields_like(self, template: T) -> T:
        """A dataclass like `template` (same type, shapes and dtypes) from this snapshot."""
        values = {}
        for f in fields(template):
            t = getattr(template, f.name)
            v = self.like(f.name, t)
            values[f.name] = v if isinstance(t, np.ndarray) else type(t)(v.item())
        return type(template)(**values)

    def same(self, other: Snapshot) -> bool:
        """The same names and values (NaN equal to NaN)."""
        if set(self.arrays) != set(other.arrays):
            return False
        return all(
            np.array_equal(
                np.asarray(v), np.asarray(other.arrays[k]), equal_nan=v.dtype.kind == "f"
            )
            for k, v in self.arrays.items()
        )


def _kind(a: np.ndarray) -> str:
    return "i" if a.dtype.kind in "iu" else a.dtype.kind


@dataclass
class Cadence:
    """When a policy plans: at every event step and once `interval_s` (its re-dispatch
    interval) has passed since its last call."""

    interval_s: float
    last_s: float = -math.inf

    def due(self, t_s: float, is_event: bool) -> bool:
        return is_event or t_s - self.last_s >= self.interval_s - 1e-9

    def called(self, t_s: float) -> None:
        self.last_s = t_s


class DispatchPolicy(Protocol):
    """The seam the Stage-II dispatcher implements: it says when it plans (`due`), plans
    (`dispatch`), and acts between its calls (`follow`)."""

    unit_names: tuple[str, ...]

    def due(self, t_s: float, is_event: bool) -> bool:
        """Whether it plans at this step (else the plant's real-time layer acts: `follow`)."""
        ...

    def snapshot(self) -> Snapshot:
        """What the policy carries from step to step, as numbers (for a checkpoint)."""
        ...

    def restore(self, snap: Snapshot | None) -> None:
        """Take the state of `snapshot()` back (None: nothing was stored)."""
        ...

    def dispatch(self, state: GridState) -> SetPoints:
        """Plan, and return the set-points of the plan's first period."""
        ...

    def follow(self, state: GridState) -> SetPoints:
        """Between plans, at every other step: the set-points the plant's real-time layer
        applies (held ones, or adjusted to absorb the deviation from the plan)."""
        ...

    def report(self, t_s: float) -> UnitReport:
        """The units' state at t_s under the held set-points (for recording)."""
        ...


@dataclass(frozen=True)
class DoNothing:
    """No flexible resource: the feeder rides the shock alone. It "plans" (to do nothing) on
    the cadence a dispatcher would, so that its runs record the same calls."""

    n_bus: int
    redispatch_s: float = 300.0
    unit_names: tuple[str, ...] = ()
    cadence: Cadence = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cadence", Cadence(self.redispatch_s))

    def due(self, t_s: float, is_event: bool) -> bool:
        return self.cadence.due(t_s, is_event)

    def dispatch(self, state: GridState) -> SetPoints:
        self.cadence.called(state.t_s)
        return SetPoints.zeros(self.n_bus)

    def follow(self, state: GridState) -> SetPoints:
        return SetPoints.zeros(self.n_bus)

    def report(self, t_s: float) -> UnitReport:
        empty = np.zeros(0)
        return UnitReport(empty, empty, empty, empty)

    def snapshot(self) -> Snapshot:
        return Snapshot.join(last_dispatch_s=self.cadence.last_s)

    def restore(self, snap: Snapshot | None) -> None:
        if snap is None:
            raise ConfigError("<checkpoint>", "policy", None, "missing from the checkpoint")
        self.cadence.last_s = snap.number("last_dispatch_s", 0.0)
