"""Pure, seeded sampling: (spec, seed, index) -> scenario, regenerable alone on any worker.

Scenario i draws from `SeedSequence(seed, spawn_key=(i,))`, which is exactly the i-th child of
`SeedSequence(seed).spawn(n)`, so a set can be generated in any order or in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from simgrid.scenarios.spec import MagnitudeUnit, RateUnit, ScenarioSpec, Shock, ShockKind
from simgrid.types import Event, EventKind

DAY_S = 86400.0


@dataclass(frozen=True)
class Scenario:
    """One sampled disturbance day (or horizon): its index in the set and its events."""

    index: int
    events: tuple[Event, ...]


def scenario_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def sample_scenario(
    spec: ScenarioSpec, seed: int, index: int, default_lines: tuple[int, ...] = ()
) -> Scenario:
    """Draw scenario `index` of the set seeded by `seed`.

    `default_lines` are the lines an outage population without a `lines` list may hit (the
    network's in-service lines).
    """
    rng = scenario_rng(seed, index)
    events: list[Event] = []
    group = 0
    for shock in spec.shocks:
        n = (
            shock.count
            if shock.count is not None
            else int(rng.poisson(shock.rate_per_day * spec.horizon_s / DAY_S))
        )
        starts = shock.start.sample(rng, n)
        if shock.kind is ShockKind.LINE_OUTAGE:
            lines = shock.lines or default_lines
            picks = rng.integers(len(lines), size=n)
            repair = shock.duration.sample(rng, n)
            events += [
                Event(EventKind.LINE_OUTAGE, float(s), float(d), line=int(lines[k]))
                for s, d, k in zip(starts, repair, picks, strict=True)
            ]
        elif shock.kind is ShockKind.COINCIDENT:
            for s in starts:
                events += _coincident(spec, shock, rng, float(s), group)
                group += 1
        else:
            campus = [shock.campuses[k] for k in rng.integers(len(shock.campuses), size=n)]
            events += _ai_events(spec, shock, rng, starts, campus, np.full(n, np.nan))
    events.sort(key=lambda e: e.start_s)
    return Scenario(index, tuple(events))


def _coincident(
    spec: ScenarioSpec, shock: Shock, rng: np.random.Generator, start_s: float, group: int
) -> list[Event]:
    """One shock on every listed campus; the correlated quantity via a Gaussian copula."""
    m = len(shock.campuses)
    rho = shock.correlation
    z = np.sqrt(rho) * rng.standard_normal() + np.sqrt(1 - rho) * rng.standard_normal(m)
    starts = start_s + shock.start_jitter.sample(rng, m)
    return _ai_events(spec, shock, rng, starts, list(shock.campuses), ndtr(z), group)


def _ai_events(
    spec: ScenarioSpec,
    shock: Shock,
    rng: np.random.Generator,
    starts: np.ndarray,
    campuses: list[str],
    u_main: np.ndarray,
    group: int = -1,
) -> list[Event]:
    """AI events of `shock.event_kind`; `u_main` (NaN: independent) drives the main quantity."""
    n = len(starts)
    p_nom = np.array([spec.campus(c).p_nom_mw for c in campuses])
    u = np.where(np.isnan(u_main), rng.random(n), u_main)
    kind = shock.event_kind

    def rate_mw_per_s(dist) -> np.ndarray:
        r = dist.sample(rng, n)
        return r / 60.0 if shock.rate_unit is RateUnit.MW_PER_MIN else r / 100.0 * p_nom

    if kind is EventKind.TRIP:
        fraction = shock.fraction.from_uniforms(u)
        duration = shock.duration.sample(rng, n)
        lost_mw = fraction * p_nom  # rate -> time on the nameplate: conservative for partial load
        fields = {
            "fraction": fraction,
            "ramp_s": lost_mw / rate_mw_per_s(shock.ramp_rate) if shock.ramp_rate else np.zeros(n),
            "return_ramp_s": (
                lost_mw / rate_mw_per_s(shock.return_rate) if shock.return_rate else np.zeros(n)
            ),
        }
    else:
        magnitude = shock.magnitude.from_uniforms(u)
        if shock.magnitude_unit is MagnitudeUnit.FRACTION:
            magnitude = magnitude * p_nom
        duration = shock.duration.sample(rng, n)
        fields = {"magnitude_mw": magnitude}
        if kind is EventKind.OSCILLATION:
            fields["period_s"] = shock.period.sample(rng, n)
        else:
            fields["ramp_s"] = magnitude / rate_mw_per_s(shock.ramp_rate)
    return [
        Event(
            kind,
            float(starts[i]),
            float(duration[i]),
            campus=campuses[i],
            group=group,
            **{k: float(v[i]) for k, v in fields.items()},
        )
        for i in range(n)
    ]
