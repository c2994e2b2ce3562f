"""Resilience metrics computed from a run Dataset alone (so they re-run on saved files).

Time integration uses the step semantics of the co-simulation: the state recorded at a step
holds until the next step (the last step holds until the horizon, `attrs["horizon_s"]`). Every
event instant is a step, so step changes (trips, outages) integrate exactly.

Limits and tolerances are read from the Dataset's attributes: `v_min_pu`, `v_max_pu`,
`max_loading_percent`, `imbalance_tol_mw`, `unserved_tol_mw`, `recovery_fraction`.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np
import xarray as xr

_DEFAULTS = {
    "customers_per_mw": 250.0,
    "sustained_s": 300.0,
    "v_min_pu": 0.90,
    "v_max_pu": 1.10,
    "max_loading_percent": 100.0,
    "imbalance_tol_mw": 0.01,
    "unserved_tol_mw": 1e-3,
    "recovery_fraction": 0.9,
}


def _attr(ds: xr.Dataset, name: str) -> float:
    return float(ds.attrs.get(name, _DEFAULTS[name]))


def step_durations_s(ds: xr.Dataset) -> np.ndarray:
    """How long each recorded state holds (s)."""
    t = ds["time"].to_numpy()
    horizon = float(ds.attrs.get("horizon_s", t[-1] if len(t) else 0.0))
    return np.diff(t, append=max(horizon, t[-1] if len(t) else 0.0))


def _energy_mwh(ds: xr.Dataset, power_mw: np.ndarray) -> float:
    return float(np.sum(power_mw * step_durations_s(ds)) / 3600.0)


def unserved_energy_mwh(ds: xr.Dataset) -> float:
    return _energy_mwh(ds, ds["unserved_mw"].to_numpy())


def imbalance_energy_mwh(ds: xr.Dataset) -> float:
    """Energy of the absolute imbalance (surplus and deficit both count)."""
    return _energy_mwh(ds, np.abs(ds["imbalance_mw"].to_numpy()))


def peak_imbalance_mw(ds: xr.Dataset) -> float:
    imb = np.abs(ds["imbalance_mw"].to_numpy())
    return float(imb.max()) if imb.size else 0.0


def voltage_violation_pu(ds: xr.Dataset) -> xr.DataArray:
    """Per bus and step, how far |V| lies outside [v_min_pu, v_max_pu] (0 inside; NaN: dead bus)."""
    vm = ds["vm_pu"]
    below = _attr(ds, "v_min_pu") - vm
    above = vm - _attr(ds, "v_max_pu")
    return np.maximum(np.maximum(below, above), 0.0).where(vm.notnull())


def voltage_violated(ds: xr.Dataset) -> np.ndarray:
    """Per step: any energised bus outside its limits, or the power flow collapsed."""
    viol = (voltage_violation_pu(ds).fillna(0.0) > 0).any("bus").to_numpy()
    return viol | ~ds["pf_converged"].to_numpy().astype(bool)


def voltage_violation_s(ds: xr.Dataset) -> float:
    return float(np.sum(step_durations_s(ds)[voltage_violated(ds)]))


def thermal_violation_s(ds: xr.Dataset) -> float:
    over = ds["line_loading_percent"].fillna(0.0) > _attr(ds, "max_loading_percent")
    return float(np.sum(step_durations_s(ds)[over.any("line").to_numpy()]))


def within_tolerance(ds: xr.Dataset) -> np.ndarray:
    """Per step: imbalance, unserved load and voltages are all back within tolerance."""
    return (
        (np.abs(ds["imbalance_mw"].to_numpy()) <= _attr(ds, "imbalance_tol_mw"))
        & (ds["unserved_mw"].to_numpy() <= _attr(ds, "unserved_tol_mw"))
        & ~voltage_violated(ds)
    )


def _restoration_s(t: np.ndarray, ok: np.ndarray, t0: float, t_end: float) -> float:
    """Time from t0 until the state is within tolerance and stays so until t_end (NaN: never)."""
    window = (t >= t0) & (t < t_end)
    if not window.any():
        return math.nan
    tw, okw = t[window], ok[window]
    if okw.all():
        return 0.0
    if not okw[-1]:
        return math.nan
    last_bad = np.flatnonzero(~okw)[-1]
    return float(tw[last_bad + 1] - t0)


def restoration_time_s(ds: xr.Dataset) -> float:
    """From the first event onset until everything is within tolerance for the rest of the run.

    NaN when the run ends unrestored; 0 when no event disturbed it (or there were no events).
    """
    starts = ds["event_start_s"].to_numpy() if "event_start_s" in ds else np.array([])
    if starts.size == 0:
        return 0.0
    t = ds["time"].to_numpy()
    return _restoration_s(t, within_tolerance(ds), float(starts.min()), math.inf)


def event_windows(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Each event's window: its onset until the next later onset (or the horizon)."""
    starts = ds["event_start_s"].to_numpy()
    horizon = float(ds.attrs.get("horizon_s", math.inf))
    ends = np.array([min([s for s in starts if s > s0], default=horizon) for s0 in starts])
    return starts, ends


AT_DEPTH_BAND = 0.05


@dataclass(frozen=True)
class Trapezoid:
    """Panteli et al. (2017) resilience trapezoid of a deficit curve D(t) >= 0 (MW).

    Degradation from the first deficit to the first instant at depth, a degraded phase at
    depth, recovery until D <= (1 - recovery_fraction) * depth (Dobson & Ekisheva's threshold).
    "At depth" means within `AT_DEPTH_BAND` of the maximum (or the tolerance, if larger): real
    plateaus drift (a held ramp's deficit follows the daily load), and the idealised trapezoid
    should not call that drift a slow degradation.
    Step semantics make a change inside one step instantaneous: its rate is inf. NaN: the
    phase did not happen within the window.
    """

    degradation_rate_mw_per_h: float
    depth_mw: float
    degraded_duration_h: float
    recovery_rate_mw_per_h: float
    area_mwh: float


@dataclass(frozen=True)
class TrapezoidPhases:
    """The instants (h) of a window's trapezoid: onset, first at depth, recovery start (the end
    of the degraded phase; the window's end if still at depth), recovery done (NaN: not within
    the window), with the depth and the deficit left when done (MW)."""

    onset_h: float
    deep_h: float
    depth_mw: float
    recovery_h: float
    done_h: float
    left_mw: float
    end_h: float

    @property
    def still_deep(self) -> bool:
        """At depth when the window closes (no recovery started)."""
        return self.recovery_h == self.end_h


def trapezoid_phases(
    t_s: np.ndarray,
    deficit_mw: np.ndarray,
    durations_s: np.ndarray,
    *,
    tol_mw: float,
    recovery_fraction: float,
) -> TrapezoidPhases | None:
    """The phases of one window's samples (times, deficits and how long each holds); None: no
    deficit beyond the tolerance."""
    d = np.nan_to_num(np.asarray(deficit_mw, dtype=float))
    depth = float(d.max()) if d.size else 0.0
    if depth <= tol_mw:
        return None
    t_h = np.asarray(t_s, dtype=float) / 3600.0
    end_h = float(t_h[-1] + durations_s[-1] / 3600.0)
    i_onset = int(np.flatnonzero(d > tol_mw)[0])
    at_depth = np.flatnonzero(d >= depth - max(tol_mw, AT_DEPTH_BAND * depth))
    onset_h, deep_h = float(t_h[i_onset]), float(t_h[at_depth[0]])
    i_rec = int(at_depth[-1]) + 1
    if i_rec >= len(d):  # still at depth when the window closes
        return TrapezoidPhases(onset_h, deep_h, depth, end_h, math.nan, math.nan, end_h)
    done = np.flatnonzero(d[i_rec:] <= (1.0 - recovery_fraction) * depth)
    done_h = left = math.nan
    if done.size:
        done_h, left = float(t_h[i_rec + int(done[0])]), float(d[i_rec + int(done[0])])
    return TrapezoidPhases(onset_h, deep_h, depth, float(t_h[i_rec]), done_h, left, end_h)


def trapezoid(
    t_s: np.ndarray,
    deficit_mw: np.ndarray,
    durations_s: np.ndarray,
    *,
    tol_mw: float,
    recovery_fraction: float,
) -> Trapezoid:
    """The trapezoid of one window's samples (times, deficits and how long each holds)."""
    d = np.nan_to_num(np.asarray(deficit_mw, dtype=float))
    area = float(np.sum(d * durations_s) / 3600.0)
    ph = trapezoid_phases(t_s, d, durations_s, tol_mw=tol_mw, recovery_fraction=recovery_fraction)
    if ph is None:
        return Trapezoid(0.0, float(d.max()) if d.size else 0.0, 0.0, 0.0, area)
    phi = _rate(ph.depth_mw, ph.deep_h - ph.onset_h)
    degraded_h = ph.recovery_h - ph.deep_h
    pi = math.nan
    if not ph.still_deep and not math.isnan(ph.done_h):
        pi = _rate(ph.depth_mw - ph.left_mw, ph.done_h - ph.recovery_h)
    return Trapezoid(phi, ph.depth_mw, degraded_h, pi, area)


def _rate(delta_mw: float, dt_h: float) -> float:
    return math.inf if dt_h <= 0 else float(delta_mw / dt_h)


_TRAPEZOID_UNITS = {
    "degradation_rate_mw_per_h": "MW/h",
    "depth_mw": "MW",
    "degraded_duration_h": "h",
    "recovery_rate_mw_per_h": "MW/h",
    "area_mwh": "MWh",
}
_TRAPEZOID_NAMES = {
    "degradation_rate_mw_per_h": "degradation rate (Phi): depth over the time to reach it",
    "depth_mw": "depth (Lambda): the largest deficit",
    "degraded_duration_h": "degraded duration (E): time at depth",
    "recovery_rate_mw_per_h": "recovery rate (Pi): deficit recovered per hour",
    "area_mwh": "area: energy of the deficit",
}
_CURVES = {"served": "served-load", "tracking": "import-tracking"}


def event_metrics(ds: xr.Dataset) -> xr.Dataset:
    """Per event (dim `event`), within its window (onset to the next later onset or horizon).

    Restoration time, unserved and imbalance energy, peak imbalance, voltage-violation time, and
    two trapezoids: `served_*` on the served-load curve (deficit = unserved load) and
    `tracking_*` on import tracking (deficit = |imbalance|).
    """
    t = ds["time"].to_numpy()
    dur = step_durations_s(ds)
    ok = within_tolerance(ds)
    violated = voltage_violated(ds)
    deficits = {
        "served": ds["unserved_mw"].to_numpy(),
        "tracking": np.abs(ds["imbalance_mw"].to_numpy()),
    }
    tol = {"served": _attr(ds, "unserved_tol_mw"), "tracking": _attr(ds, "imbalance_tol_mw")}
    plain = {
        "restoration_time_s": (
            "s",
            "onset until imbalance, shedding and voltages are back "
            "within tolerance, before the next event (NaN: not restored)",
        ),
        "unserved_energy_mwh": ("MWh", "unserved energy in the event window"),
        "imbalance_energy_mwh": ("MWh", "energy of |imbalance| in the event window"),
        "peak_imbalance_mw": ("MW", "peak |imbalance| in the event window"),
        "voltage_violation_s": ("s", "time with voltage violations in the event window"),
    }
    rows: dict[str, list[float]] = {name: [] for name in plain}
    for curve in _CURVES:
        rows.update({f"{curve}_{n}": [] for n in _TRAPEZOID_UNITS})
    starts, ends = event_windows(ds)
    for s0, s1 in zip(starts, ends, strict=True):
        w = (t >= s0) & (t < s1)
        dw = np.minimum(dur[w], s1 - t[w])  # the last state holds only until the window closes
        rows["restoration_time_s"].append(_restoration_s(t, ok, s0, s1))
        rows["unserved_energy_mwh"].append(float(np.sum(deficits["served"][w] * dw) / 3600))
        rows["imbalance_energy_mwh"].append(float(np.sum(deficits["tracking"][w] * dw) / 3600))
        rows["peak_imbalance_mw"].append(float(deficits["tracking"][w].max(initial=0.0)))
        rows["voltage_violation_s"].append(float(np.sum(dw[violated[w]])))
        for curve, deficit in deficits.items():
            trap = trapezoid(
                t[w],
                deficit[w],
                dw,
                tol_mw=tol[curve],
                recovery_fraction=_attr(ds, "recovery_fraction"),
            )
            for n, v in zip(_TRAPEZOID_UNITS, astuple(trap), strict=True):
                rows[f"{curve}_{n}"].append(v)
    attrs = {name: {"units": u, "long_name": ln} for name, (u, ln) in plain.items()}
    for curve, label in _CURVES.items():
        for n, units in _TRAPEZOID_UNITS.items():
            attrs[f"{curve}_{n}"] = {
                "units": units,
                "long_name": f"resilience trapezoid of the {label} curve, {_TRAPEZOID_NAMES[n]}",
                "comment": "Panteli et al. 2017; NaN: the phase did not happen in the window",
            }
    out = {
        f"event_{name}": xr.Variable(("event",), np.array(values, dtype=float), attrs[name])
        for name, values in rows.items()
    }
    return xr.Dataset(out, coords={"event": ds["event"]})


SCALARS = {
    "unserved_energy_mwh": (unserved_energy_mwh, "MWh", "unserved energy"),
    "imbalance_energy_mwh": (imbalance_energy_mwh, "MWh", "energy of |imbalance|"),
    "peak_imbalance_mw": (peak_imbalance_mw, "MW", "peak |imbalance|"),
    "voltage_violation_s": (
        voltage_violation_s,
        "s",
        "time with any bus outside voltage limits (or collapsed)",
    ),
    "thermal_violation_s": (thermal_violation_s, "s", "time with any line over its rating"),
    "restoration_time_s": (
        restoration_time_s,
        "s",
        "first onset until everything stays within tolerance (NaN: not restored)",
    ),
    "restored": (
        lambda ds: int(not math.isnan(restoration_time_s(ds))),
        "1",
        "1: everything was back within tolerance before the run ended; 0: not restored",
    ),
}


# IEEE 1366 counts, from the per-bus demand and unserved load a run records
CUSTOMER_SCALARS = {
    "customers": (
        lambda ds: float(customers(ds).sum()),
        "1",
        "customers behind the feeder's loads (customers_per_mw x nominal load, 1 per campus)",
    ),
    "customer_interruptions": (
        lambda ds: customer_interruptions(ds)[0],
        "1",
        "customers interrupted in sustained spells (IEEE 1366; partial shedding pro rata)",
    ),
    "customer_minutes_interrupted": (
        lambda ds: customer_interruptions(ds)[1],
        "min",
        "customer-minutes of sustained interruption (IEEE 1366)",
    ),
}
_CUSTOMER_INPUTS = ("bus_load_mw", "bus_demand_mw", "shed_mw", "uvls_shed_mw", "energised")


def customers(ds: xr.Dataset) -> np.ndarray:
    """Customers per bus: `customers_per_mw` of its nominal load, plus one per AI campus."""
    n = ds["bus_load_mw"].to_numpy() * _attr(ds, "customers_per_mw")
    if "campus_bus" in ds:
        np.add.at(n, ds["campus_bus"].to_numpy().astype(int), 1.0)
    return n


def interrupted_fraction(ds: xr.Dataset) -> xr.DataArray:
    """Per step and bus, the fraction of its load not served (islanded, shed by the dispatcher
    or by protection, or lost to collapse). Array operations only: on a long run they are
    computed block by block (dask)."""
    demand = ds["bus_demand_mw"]
    shed = ds["shed_mw"] + ds["uvls_shed_mw"]
    frac = xr.where(demand > 1e-12, shed / demand.where(demand > 1e-12, 1.0), 0.0)
    frac = xr.where(ds["energised"].astype(bool), frac, 1.0)
    frac = xr.where(ds["pf_converged"].astype(bool), frac, 1.0)
    return frac.clip(0.0, 1.0)


def _float32_by_block(da: xr.DataArray) -> np.ndarray:
    """A (time, ...) array in float32, filled one block of a lazy (streamed) run at a time:
    computing it whole would hold every block in float64 and their concatenation at once."""
    out = np.empty(da.shape, np.float32)
    if da.chunks is None:
        out[...] = da.to_numpy()
        return out
    start = 0
    for n in da.chunks[0]:
        out[start : start + n] = da[start : start + n].to_numpy()
        start += n
    return out


def customer_interruptions(ds: xr.Dataset) -> tuple[float, float]:
    """(customer interruptions, customer-minutes interrupted) over sustained spells (IEEE 1366):
    a spell of a bus's interruption lasting `sustained_s` or more counts its customers (times the
    largest fraction of its load lost in the spell) once, and their minutes throughout."""
    # float32 (7 significant digits of a fraction): a year at 60 s on 33 buses is 69 MB
    fractions = _float32_by_block(interrupted_fraction(ds))
    dur = step_durations_s(ds)
    n = customers(ds)
    count = minutes = 0.0
    for b in range(fractions.shape[1]):
        frac = fractions[:, b].astype(float)
        on = frac > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            span = dur[start:stop]
            if span.sum() >= _attr(ds, "sustained_s"):
                count += n[b] * frac[start:stop].max()
                minutes += n[b] * float(np.sum(frac[start:stop] * span)) / 60.0
    return count, minutes


def with_metrics(ds: xr.Dataset) -> xr.Dataset:
    """The run Dataset plus its scalar and per-event metrics and violation arrays."""
    out = ds.copy()
    scalars = dict(SCALARS)
    if all(name in ds for name in _CUSTOMER_INPUTS):  # a run always; hand-made datasets may not
        scalars.update(CUSTOMER_SCALARS)
    for name, (fn, units, long_name) in scalars.items():
        out[name] = xr.DataArray(fn(ds), attrs={"units": units, "long_name": long_name})
    out["voltage_violation_pu"] = voltage_violation_pu(ds).assign_attrs(
        units="pu", long_name="distance of |V| outside its limits"
    )
    over = np.maximum(ds["line_loading_percent"] - _attr(ds, "max_loading_percent"), 0.0)
    out["thermal_violation_percent"] = over.assign_attrs(
        units="%", long_name="line loading above its limit"
    )
    out["collapse_steps"] = xr.DataArray(
        int((~ds["pf_converged"].to_numpy().astype(bool)).sum()),
        attrs={"units": "1", "long_name": "steps whose AC power flow did not converge"},
    )
    if "fcm_p_mw" in ds and "unit_cost_per_mwh" in ds:
        out = out.merge(fcm_metrics(ds))
    return out.merge(event_metrics(ds))


def fcm_metrics(ds: xr.Dataset) -> xr.Dataset:
    """Energy through each flexible unit and the operating cost of the dispatch.

    Throughput: |power| integrated (storage: charge + discharge); DR costs its curtailed
    energy; generators add their start cost for each off -> on transition.
    """
    dur_h = step_durations_s(ds)[:, None] / 3600.0
    through = (np.abs(ds["fcm_p_mw"].to_numpy()) * dur_h).sum(axis=0)
    curtailed = (ds["dr_curtail_mw"].to_numpy() * dur_h).sum(axis=0)
    is_dr = ds["unit_type"].to_numpy().astype(str) == "dr"
    priced = np.where(is_dr, curtailed, through)
    on = ds["unit_on"].to_numpy() > 0.5
    starts = (np.diff(on.astype(int), axis=0) > 0).sum(axis=0)
    cost = ds["unit_cost_per_mwh"].to_numpy() * priced + ds["unit_start_cost"].to_numpy() * starts
    return xr.Dataset(
        {
            "fcm_energy_mwh": (
                "unit",
                through,
                {"units": "MWh", "long_name": "energy through the unit (|P| dt)"},
            ),
            "fcm_starts": ("unit", starts, {"units": "1", "long_name": "off -> on transitions"}),
            "fcm_cost": (
                (),
                float(cost.sum()),
                {"units": "$", "long_name": "operating cost of the flexible units"},
            ),
        }
    )
