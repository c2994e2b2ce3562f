"""Scenario specifications: TOML in, frozen validated records out (declarative, no Python).

A spec names the network (to check buses and lines, and to value outages), the AI campuses, and
a list of `[[shock]]` populations, each with an arrival process and bounded distributions.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simgrid.config import (
    NetworkConfig,
    Table,
    check_steps,
    parse_campus,
    parse_network,
    read_toml,
)
from simgrid.errors import ConfigError
from simgrid.scenarios.dists import Dist, Family, fixed, parse_dist
from simgrid.types import Campus, EventKind


class ShockKind(enum.StrEnum):
    RAMP_UP = "ramp_up"
    SURGE = "surge"
    TRIP = "trip"
    OSCILLATION = "oscillation"
    COINCIDENT = "coincident"
    LINE_OUTAGE = "line_outage"


class MagnitudeUnit(enum.StrEnum):
    FRACTION = "fraction"  # of the campus nameplate
    MW = "mw"


class RateUnit(enum.StrEnum):
    MW_PER_MIN = "mw_per_min"
    PCT_PER_S = "pct_per_s"  # percent of the campus nameplate per second


@dataclass(frozen=True)
class Shock:
    """One population of shocks of a kind, with its arrival process and distributions.

    Arrivals: Poisson with `rate_per_day` (scaled to the horizon), or exactly `count`.
    `event_kind` is what each drawn event is (for coincident: the underlying kind, drawn on
    every campus in `campuses` at once with magnitudes correlated by a Gaussian copula of
    `correlation`, starts offset by `start_jitter`). A ramp rate of None means instantaneous.
    """

    kind: ShockKind
    event_kind: EventKind
    rate_per_day: float | None
    count: int | None
    start: Dist
    campuses: tuple[str, ...] = ()
    magnitude: Dist | None = None
    magnitude_unit: MagnitudeUnit = MagnitudeUnit.FRACTION
    ramp_rate: Dist | None = None
    return_rate: Dist | None = None
    rate_unit: RateUnit = RateUnit.MW_PER_MIN
    duration: Dist | None = None
    fraction: Dist | None = None
    period: Dist | None = None
    correlation: float = 0.0
    start_jitter: Dist | None = None
    lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    horizon_s: float
    dt_s: float
    network: NetworkConfig
    campuses: tuple[Campus, ...]
    shocks: tuple[Shock, ...]
    source: str
    text: str

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def campus(self, name: str) -> Campus:
        return next(c for c in self.campuses if c.name == name)


def load_spec(path: str | Path) -> ScenarioSpec:
    data, text, source = read_toml(path)
    return parse_spec(data, source=source, text=text, base_dir=Path(path).parent)


def parse_spec(
    data: dict[str, Any], *, source: str = "<spec>", text: str = "", base_dir: Path = Path(".")
) -> ScenarioSpec:
    root = Table(data, "", source)
    root.only(("spec", "network", "campus", "shock"), "a scenario spec")
    head = root.table("spec")
    name = head.string("name", "scenarios")
    horizon_s = head.number("horizon_s", 86400.0, lo=0, lo_open=True)
    dt_s = head.number("dt_s", 60.0, lo=0, lo_open=True, hi=horizon_s)
    check_steps(head, horizon_s, dt_s)
    head.done()
    network = parse_network(root.table("network"), base_dir)
    campuses = tuple(parse_campus(t, base_dir) for t in root.tables("campus"))
    names = [c.name for c in campuses]
    for i, c in enumerate(campuses):
        if names.index(c.name) != i:
            raise ConfigError(source, f"campus[{i}].name", c.name, "must be unique")
    shock_tables = root.tables("shock")
    shocks = tuple(_shock(t, names, horizon_s) for t in shock_tables)
    if not shocks:
        raise ConfigError(source, "shock", None, "at least one [[shock]] table is required")
    _check_event_count(shocks, shock_tables, horizon_s)
    root.done()
    return ScenarioSpec(name, horizon_s, dt_s, network, campuses, shocks, source, text)


# Events a scenario may expect per simulated day (Poisson means plus fixed counts, each
# coincident draw counted once per campus): a day of the bundled spec expects about 3.5.
# Sampling and simulating grow with it; far beyond this a spec is a mistake (a rate per second
# taken for one per day). A scenario of several days may expect this many per day.
MAX_EVENTS_PER_DAY = 1000


def max_events(horizon_s: float) -> float:
    """Most events a scenario of `horizon_s` may expect."""
    return MAX_EVENTS_PER_DAY * max(1.0, horizon_s / 86400.0)


def _check_event_count(shocks: Sequence[Shock], tables: Sequence[Table], horizon_s: float) -> None:
    limit = max_events(horizon_s)
    expected = 0.0
    for shock, t in zip(shocks, tables, strict=True):
        each = len(shock.campuses) if shock.kind is ShockKind.COINCIDENT else 1
        mean = shock.count if shock.count is not None else shock.rate_per_day * horizon_s / 86400
        expected += mean * each
        if expected > limit:
            key = "count" if shock.count is not None else "rate_per_day"
            raise t.fail(
                key,
                f"makes a scenario expect {expected:.4g} events: at most {limit:.0f} "
                f"({MAX_EVENTS_PER_DAY} per simulated day; is the rate per day?)",
            )


_AI_KINDS = {
    ShockKind.RAMP_UP: EventKind.RAMP_UP,
    ShockKind.SURGE: EventKind.SURGE,
    ShockKind.TRIP: EventKind.TRIP,
    ShockKind.OSCILLATION: EventKind.OSCILLATION,
}
_COINCIDENT_OF = ("ramp_up", "surge", "trip")


def _shock(t: Table, campus_names: list[str], horizon_s: float) -> Shock:
    kind = ShockKind(t.string("kind", choices=tuple(k.value for k in ShockKind)))
    rate = count = None
    if t.has("rate_per_day") and t.has("count"):
        raise t.fail("count", "give either rate_per_day (Poisson) or count, not both")
    if t.has("count"):
        count = t.integer("count", lo=0)
    else:
        rate = t.number("rate_per_day", lo=0)
    start = parse_dist(
        t, "start_s", lo=0, hi=horizon_s, default=Dist(Family.UNIFORM, 0.0, horizon_s)
    )
    if start.high > horizon_s or start.low >= horizon_s:
        raise t.fail("start_s", f"must lie within the horizon [0, {horizon_s:g}) s")
    fields: dict[str, Any] = {"kind": kind, "rate_per_day": rate, "count": count, "start": start}

    if kind is ShockKind.LINE_OUTAGE:
        lines = t.data.get("lines", None)
        t.used.add("lines")
        if lines is not None and (
            not isinstance(lines, list)
            or not lines
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in lines)
        ):
            raise t.fail(
                "lines",
                "must be a non-empty list of line indices (integers >= 0); leave it out for "
                "every in-service line",
            )
        lines = lines or []
        fields.update(
            event_kind=EventKind.LINE_OUTAGE,
            lines=tuple(lines),
            duration=parse_dist(t, "duration_s", lo=0, lo_open=True),
        )
        t.done()
        return Shock(**fields)

    campuses = t.data.get("campuses", campus_names)
    t.used.add("campuses")
    if (
        not isinstance(campuses, list)
        or not campuses
        or not all(isinstance(c, str) for c in campuses)
    ):
        raise t.fail("campuses", "must be a non-empty list of campus names")
    for c in campuses:
        if c not in campus_names:
            known = ", ".join(campus_names) or "none defined"
            raise t.fail("campuses", f"{c!r} is not a [[campus]] ({known})")
    fields["campuses"] = tuple(campuses)
    if kind is ShockKind.COINCIDENT:
        if len(set(campuses)) < 2:
            raise t.fail("campuses", "a coincident shock needs at least two distinct campuses")
        event_kind = EventKind(t.string("shock", choices=_COINCIDENT_OF))
        fields["correlation"] = t.number("correlation", lo=0, hi=1)
        fields["start_jitter"] = parse_dist(
            t, "start_jitter_s", lo=0, hi=horizon_s, default=fixed(0.0)
        )
    else:
        event_kind = _AI_KINDS[kind]
    fields["event_kind"] = event_kind
    if event_kind is not EventKind.OSCILLATION:
        fields["rate_unit"] = RateUnit(
            t.string("ramp_rate_unit", "mw_per_min", choices=tuple(u.value for u in RateUnit))
        )
    if event_kind in (EventKind.RAMP_UP, EventKind.SURGE, EventKind.OSCILLATION):
        fields["magnitude_unit"] = MagnitudeUnit(
            t.string("magnitude_unit", "fraction", choices=tuple(u.value for u in MagnitudeUnit))
        )
        hi = 1.0 if fields["magnitude_unit"] is MagnitudeUnit.FRACTION else math.inf
        fields["magnitude"] = parse_dist(t, "magnitude", lo=0, lo_open=True, hi=hi)
    if event_kind in (EventKind.RAMP_UP, EventKind.SURGE):
        fields["ramp_rate"] = parse_dist(t, "ramp_rate", lo=0, lo_open=True)
        fields["duration"] = parse_dist(t, "duration_s", lo=0)
    elif event_kind is EventKind.TRIP:
        fields["fraction"] = parse_dist(t, "fraction", lo=0, lo_open=True, hi=1)
        fields["duration"] = parse_dist(t, "duration_s", lo=0)
        if t.has("ramp_rate"):
            fields["ramp_rate"] = parse_dist(t, "ramp_rate", lo=0, lo_open=True)
        if t.has("return_rate"):
            fields["return_rate"] = parse_dist(t, "return_rate", lo=0, lo_open=True)
    else:  # oscillation
        fields["period"] = parse_dist(t, "period_s", lo=0, lo_open=True)
        fields["duration"] = parse_dist(t, "duration_s", lo=0, lo_open=True)
    t.done()
    return Shock(**fields)
