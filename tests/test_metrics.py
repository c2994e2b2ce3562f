"""Metric functions on small hand-built datasets whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from simgrid import metrics

HOUR = 3600.0
TOL = 1e-12


def _ds(t_h, unserved, imbalance, vm=None, converged=None, starts_h=(), horizon_h=None, **attrs):
    """A minimal run Dataset: hourly-ish samples, one bus unless vm says otherwise."""
    t = np.asarray(t_h, dtype=float) * HOUR
    n = len(t)
    vm = np.ones((n, 1)) if vm is None else np.asarray(vm, dtype=float).reshape(n, -1)
    converged = np.ones(n, bool) if converged is None else np.asarray(converged, bool)
    ds = xr.Dataset(
        {
            "unserved_mw": ("time", np.asarray(unserved, dtype=float)),
            "imbalance_mw": ("time", np.asarray(imbalance, dtype=float)),
            "vm_pu": (("time", "bus"), vm),
            "line_loading_percent": (("time", "line"), np.zeros((n, 1))),
            "pf_converged": ("time", converged),
            "event_start_s": ("event", np.asarray(starts_h, dtype=float) * HOUR),
        },
        coords={"time": t, "event": np.arange(len(starts_h))},
        attrs={
            "horizon_s": (horizon_h if horizon_h is not None else t_h[-1] + 1) * HOUR,
            "unserved_tol_mw": 1e-6,
            "imbalance_tol_mw": 1e-6,
            "recovery_fraction": 0.9,
            **attrs,
        },
    )
    return ds


def test_energies_use_step_hold_until_the_horizon():
    # 0 MW for 1 h, 2 MW for 30 min, then 1 MW for 1.5 h up to the 3 h horizon
    ds = _ds([0, 1, 1.5], [0, 2, 1], [0, -3, 1], horizon_h=3)
    assert metrics.unserved_energy_mwh(ds) == pytest.approx(2 * 0.5 + 1 * 1.5, abs=TOL)
    assert metrics.imbalance_energy_mwh(ds) == pytest.approx(3 * 0.5 + 1 * 1.5, abs=TOL)
    assert metrics.peak_imbalance_mw(ds) == 3.0


def test_voltage_violation_duration_counts_low_high_and_collapse_but_not_dead_buses():
    vm = [[1.0, 1.0], [0.85, 1.0], [1.0, np.nan], [1.0, 1.12], [np.nan, np.nan], [1.0, 1.0]]
    ds = _ds([0, 1, 2, 3, 4, 5], [0] * 6, [0] * 6, vm=vm, converged=[1, 1, 1, 1, 0, 1], horizon_h=6)
    # bus 1 dead at 2 h is no violation; collapse at 4 h is
    assert metrics.voltage_violation_s(ds) == pytest.approx(3 * HOUR)
    viol = metrics.voltage_violation_pu(ds)
    assert float(viol[1, 0]) == pytest.approx(0.05)
    assert float(viol[3, 1]) == pytest.approx(0.02)
    assert np.isnan(float(viol[2, 1]))


def test_restoration_time_from_onset_until_everything_stays_within_tolerance():
    # onset at 1 h; imbalance gone at 3 h, unserved back at 4 h, a late blip at 5 h resolved at 6 h
    ds = _ds(
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [0, 2, 1, 0, 0, 0.5, 0, 0],
        starts_h=[1],
        horizon_h=8,
    )
    assert metrics.restoration_time_s(ds) == pytest.approx(5 * HOUR)
    never = _ds([0, 1, 2], [0, 1, 1], [0, 0, 0], starts_h=[1])
    assert math.isnan(metrics.restoration_time_s(never))
    calm = _ds([0, 1, 2], [0, 0, 0], [0, 0, 0], starts_h=[1])
    assert metrics.restoration_time_s(calm) == 0.0


def test_per_event_restoration_uses_windows_until_the_next_onset():
    ds = _ds([0, 1, 2, 3, 4, 5], [0, 1, 0, 0, 1, 1], [0] * 6, starts_h=[1, 4], horizon_h=6)
    ev = metrics.event_metrics(ds)
    assert float(ev["event_restoration_time_s"][0]) == pytest.approx(1 * HOUR)
    assert math.isnan(float(ev["event_restoration_time_s"][1]))


def test_panteli_trapezoid_on_a_hand_drawn_curve():
    # D: 0 0 2 4 4 4 3 2 1 0 0 (hourly). Degradation 2 h -> 3 h (4 MW/h), at depth 3 h -> 6 h,
    # recovery 6 h -> 9 h when D <= 10 % of 4 MW (4/3 MW/h), area 20 MWh.
    d = np.array([0, 0, 2, 4, 4, 4, 3, 2, 1, 0, 0], dtype=float)
    t = np.arange(11) * HOUR
    trap = metrics.trapezoid(t, d, np.full(11, HOUR), tol_mw=1e-6, recovery_fraction=0.9)
    assert trap == metrics.Trapezoid(
        degradation_rate_mw_per_h=pytest.approx(4.0),
        depth_mw=4.0,
        degraded_duration_h=pytest.approx(3.0),
        recovery_rate_mw_per_h=pytest.approx(4 / 3),
        area_mwh=pytest.approx(20.0),
    )


def test_trapezoid_step_changes_are_instantaneous_and_unrecovered_is_nan():
    t = np.arange(4) * HOUR
    step = metrics.trapezoid(
        t, np.array([0, 5, 5, 0.0]), np.full(4, HOUR), tol_mw=1e-6, recovery_fraction=0.9
    )
    assert step.degradation_rate_mw_per_h == math.inf
    assert step.recovery_rate_mw_per_h == math.inf
    assert step.degraded_duration_h == pytest.approx(2.0)
    stuck = metrics.trapezoid(
        t, np.array([0, 5, 5, 5.0]), np.full(4, HOUR), tol_mw=1e-6, recovery_fraction=0.9
    )
    assert math.isnan(stuck.recovery_rate_mw_per_h)
    assert stuck.degraded_duration_h == pytest.approx(3.0)
    calm = metrics.trapezoid(t, np.zeros(4), np.full(4, HOUR), tol_mw=1e-6, recovery_fraction=0.9)
    assert calm.depth_mw == 0.0 and calm.area_mwh == 0.0


def test_with_metrics_adds_scalars_with_units():
    ds = _ds([0, 1], [0, 1], [0, 1], starts_h=[1], horizon_h=2)
    out = metrics.with_metrics(ds)
    for name in (
        "unserved_energy_mwh",
        "imbalance_energy_mwh",
        "peak_imbalance_mw",
        "voltage_violation_s",
        "restoration_time_s",
        "event_served_depth_mw",
    ):
        assert "units" in out[name].attrs and "long_name" in out[name].attrs
    assert float(out["unserved_energy_mwh"]) == pytest.approx(1.0)


def test_trapezoid_plateau_drift_within_the_band_is_not_degradation():
    # a step to 4 MW that drifts to 4.15 MW (within 5 % of depth) before a step back to 0
    t = np.arange(6) * HOUR
    d = np.array([0, 4.0, 4.05, 4.1, 4.15, 0])
    trap = metrics.trapezoid(t, d, np.full(6, HOUR), tol_mw=1e-6, recovery_fraction=0.9)
    assert trap.depth_mw == pytest.approx(4.15)
    assert trap.degradation_rate_mw_per_h == math.inf
    assert trap.degraded_duration_h == pytest.approx(4.0)


def test_per_event_energies_peaks_and_violation_time_stay_in_their_windows():
    vm = [1.0, 0.8, 1.0, 1.0, 0.8, 1.0]
    ds = _ds(
        [0, 1, 2, 3, 4, 5],
        [0, 1, 0, 0, 2, 0],
        [0, -3, 0, 0, 1, 0],
        vm=vm,
        starts_h=[1, 3],
        horizon_h=6,
    )
    ev = metrics.event_metrics(ds)
    assert ev["event_unserved_energy_mwh"].values == pytest.approx([1.0, 2.0])
    assert ev["event_imbalance_energy_mwh"].values == pytest.approx([3.0, 1.0])
    assert ev["event_peak_imbalance_mw"].values == pytest.approx([3.0, 1.0])
    assert ev["event_voltage_violation_s"].values == pytest.approx([HOUR, HOUR])
    assert ev["event_restoration_time_s"].values == pytest.approx([HOUR, 2 * HOUR])
