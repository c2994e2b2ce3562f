"""AI campus load as a vectorised function of time, from a campus and its events.

The same physics the co-simulation's event processes produce step by step (both read
`Event.knots`); this form evaluates whole curves at once for scenario sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simgrid.profiles import LoadProfile
from simgrid.types import Campus, Event, EventKind


def knot_value(knots: Sequence[tuple[float, float]], t_s: np.ndarray) -> np.ndarray:
    """Evaluate knots (see `Event.knots`): 0 before the first, linear between, last held after.

    At an instant with several knots the last one counts (the event has acted).
    """
    t = np.asarray(t_s, dtype=float)
    kt = np.array([k[0] for k in knots])
    kv = np.array([k[1] for k in knots])
    i = np.searchsorted(kt, t, side="right") - 1
    out = np.zeros_like(t)
    inside = i >= 0
    j = np.minimum(i + 1, len(kt) - 1)
    ii = np.maximum(i, 0)
    span = kt[j] - kt[ii]
    frac = np.divide(t - kt[ii], span, out=np.zeros_like(t), where=(span > 0) & (j > ii))
    out[inside] = (kv[ii] + (kv[j] - kv[ii]) * frac)[inside]
    return out


def oscillation_mw(ev: Event, t_s: np.ndarray) -> np.ndarray:
    t = np.asarray(t_s, dtype=float)
    on = (t >= ev.start_s) & (t < ev.start_s + ev.duration_s)
    return np.where(on, ev.magnitude_mw * np.sin(2 * np.pi * (t - ev.start_s) / ev.period_s), 0.0)


def campus_load_mw(
    campus: Campus, profile: LoadProfile, events: Sequence[Event], t_s: np.ndarray
) -> np.ndarray:
    """(base + additive MW) x prod(1 - tripped fraction), clipped to [0, p_nom]."""
    t = np.asarray(t_s, dtype=float)
    p = campus.base_utilisation * campus.p_nom_mw * profile.at(t)
    keep = np.ones_like(t)
    for ev in events:
        if ev.campus != campus.name:
            continue
        if ev.kind is EventKind.OSCILLATION:
            p = p + oscillation_mw(ev, t)
        elif ev.kind is EventKind.TRIP:
            keep = keep * (1.0 - knot_value(ev.knots(), t))
        else:
            p = p + knot_value(ev.knots(), t)
    return np.clip(p * keep, 0.0, campus.p_nom_mw)


def campus_loads_mw(
    campuses: Sequence[Campus],
    profiles: Sequence[LoadProfile],
    events: Sequence[Event],
    t_s: np.ndarray,
) -> np.ndarray:
    """Every campus's load, shape (time, campus); build `profiles` once and reuse them."""
    t = np.asarray(t_s, dtype=float)
    if not campuses:
        return np.zeros((t.size, 0))
    return np.stack(
        [campus_load_mw(c, prof, events, t) for c, prof in zip(campuses, profiles, strict=True)],
        axis=-1,
    )
