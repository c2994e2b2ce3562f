"""The bundled example: a day on the IEEE 33-bus feeder with ramps, a trip, a line outage and a
surge, ridden out by a protected feeder without flexible resources (do-nothing) and with the
Stage-II dispatcher; the dispatcher's model against the AC plant, step by step."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

from simgrid.cli import main
from simgrid.config import load_config
from simgrid.fcm import load_catalogue
from simgrid.inputs import prepare
from simgrid.metrics import step_durations_s
from simgrid.ncio import write_dataset
from simgrid.optimization.dispatcher import LOSS_TOL
from simgrid.runner import run
from simgrid.types import DoNothing

from conftest import REPO

EXAMPLE = REPO / "configs" / "ieee33.toml"
# The dispatcher's prediction for the set-points it applies, against the AC result of the same
# step: the import within its loss fixed point's tolerance (LOSS_TOL of the demand, ~2.5 kW
# here), voltages within 0.002 pu (LinDistFlow with the measured losses drops only the
# (r^2 + x^2) l term, which makes it conservative: AC at or above the plan, up to the loss
# tolerance)
VM_AGREE_PU = 0.002
VM_BELOW_PU = 5e-4
MW_TOL = 1e-6


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory):
    """The CLI run of the example (dispatcher and its do-nothing baseline), read back, and
    what it printed."""
    out = tmp_path_factory.mktemp("example") / "ieee33.nc"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(EXAMPLE), "--out", str(out), "--no-progress"]) == 0
    with xr.open_dataset(out) as ds:
        ds.attrs["printed"] = printed.getvalue()
        yield ds.load()


@pytest.fixture(scope="module")
def do_nothing():
    cfg = load_config(EXAMPLE)
    inputs = prepare(cfg)
    return cfg, inputs, run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))


def test_example_has_the_shocks_the_issue_asks_for():
    cfg = load_config(EXAMPLE)
    assert {"ramp_up", "trip", "line_outage", "surge"} <= {e.kind.value for e in cfg.events}
    assert cfg.horizon_s == 86400 and cfg.dt_s == 60 and cfg.dispatch.policy == "milp"


def test_the_day_without_shocks_stays_within_every_limit():
    # the campuses are sized within the hosting capacity of their buses at the peak hour
    cfg = replace(load_config(EXAMPLE), events=())
    ds = run(cfg, policy=DoNothing(33))
    for name in ("voltage_violation_s", "thermal_violation_s", "unserved_energy_mwh"):
        assert float(ds[name]) == 0.0, name
    assert float(ds["vm_pu"].min()) >= cfg.network.v_min_pu


def test_do_nothing_is_quiet_before_the_first_event_and_protected_after(do_nothing):
    cfg, _, ds = do_nothing
    first = min(e.start_s for e in cfg.events)
    before = ds.sel(time=slice(None, first - 1e-9))
    assert np.abs(before["imbalance_mw"]).max() == 0.0
    assert before["unserved_mw"].max() == 0.0
    assert float(ds["imbalance_energy_mwh"]) > 0 and float(ds["unserved_energy_mwh"]) > 0
    # unserved load comes from the islanding and from under-voltage load shedding in the surge,
    # never from a blackout: protection keeps the feeder solvable
    assert int(ds["collapse_steps"]) == 0 and float(ds["collapse_mw"].sum()) == 0.0
    outage = next(e for e in cfg.events if e.kind.value == "line_outage")
    surge = next(e for e in cfg.events if e.kind.value == "surge")
    t = ds["time"]
    islanded = (t >= outage.start_s) & (t < outage.start_s + outage.duration_s)
    assert (ds["islanded_mw"].where(islanded, 1.0) > 0).all()
    assert (ds["islanded_mw"].where(~islanded, 0.0) == 0).all()
    uvls = ds["uvls_shed_mw"].sum("bus")
    assert float(uvls.max()) > 0
    acted = t.where(uvls > 0, drop=True)
    assert float(acted.min()) >= surge.start_s and float(acted.max()) < surge.end_s + 3600
    np.testing.assert_allclose(
        ds["unserved_mw"], ds["islanded_mw"] + uvls + ds["shed_mw"].sum("bus"), atol=MW_TOL
    )
    assert float(ds["vm_pu"].min()) >= cfg.protection.uvls_pickup_pu
    trip = next(e for e in cfg.events if e.kind.value == "trip")
    assert float(ds["imbalance_mw"].sel(time=trip.start_s)) < 0


def test_example_file_round_trip_is_deterministic(do_nothing, tmp_path):
    cfg, inputs, ds = do_nothing
    out = write_dataset(ds, tmp_path / "a.nc")
    again = run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))
    with xr.open_dataset(out) as saved:
        xr.testing.assert_identical(saved.load(), again)


def test_example_with_fcms_beats_do_nothing_and_prints_the_comparison(dispatched):
    ds = dispatched
    assert "do-nothing" in ds.attrs["printed"] and "RollingDispatcher" in ds.attrs["printed"]
    assert float(ds["imbalance_energy_mwh"]) < 0.05 * float(ds["baseline_imbalance_energy_mwh"])
    assert float(ds["peak_imbalance_mw"]) < 0.5 * float(ds["baseline_peak_imbalance_mw"])
    for name in ("voltage_violation_s", "thermal_violation_s"):
        assert float(ds[f"baseline_{name}"]) > 0 and float(ds[name]) == 0.0, name
    assert float(ds["unserved_energy_mwh"]) <= float(ds["baseline_unserved_energy_mwh"])
    assert int(ds["collapse_steps"]) == 0
    for name, units in (
        ("fcm_p_mw", "MW"),
        ("soc_mwh", "MWh"),
        ("unit_on", "1"),
        ("dr_curtail_mw", "MW"),
        ("dispatch_status", "1"),
        ("dispatch_solve_s", "s"),
        ("shed_mw", "MW"),
        ("uvls_shed_mw", "MW"),
        ("planned_import_mw", "MW"),
        ("planned_vm_pu", "pu"),
    ):
        assert ds[name].attrs["units"] == units, name
    assert ds["fcm_p_mw"].dims == ("time", "unit") and ds.sizes["unit"] == 5
    storage = ~ds["soc_mwh"].isnull().all("time")
    assert storage.sum() == 3  # two BESS and the LDES
    solved = ds["dispatch_status"] < 4
    assert int(solved.sum()) >= 288  # every 5 minutes and at every event step
    assert (ds["dispatch_status"].where(solved, 0) <= 1).all()  # no fallback needed
    assert float(ds["fcm_energy_mwh"].sum()) > 0 and float(ds["fcm_cost"]) > 0


def _protection_still(ds: xr.Dataset) -> np.ndarray:
    """Steps at which protection neither holds nor changes any shedding (the plant is what the
    dispatcher saw)."""
    uvls = ds["uvls_shed_mw"].sum("bus").to_numpy()
    return (uvls == 0) & (np.diff(uvls, prepend=0.0) == 0)


def assert_dispatch_agrees_with_ac(ds: xr.Dataset, margin_pu: float, v_min_pu: float) -> int:
    """At every dispatch call, the MILP's import and voltages for the set-points it applies
    agree with the AC power flow of that step, and its voltage margin protects the limit."""
    calls = (ds["dispatch_status"].to_numpy() < 4) & _protection_still(ds)
    demand = ds["demand_mw"].to_numpy()[calls]
    err = ds["planned_import_mw"].to_numpy()[calls] - ds["import_mw"].to_numpy()[calls]
    assert np.all(np.abs(err) <= LOSS_TOL * demand + 1e-4), np.abs(err).max()
    ac, plan = ds["vm_pu"].to_numpy()[calls], ds["planned_vm_pu"].to_numpy()[calls]
    live = ~np.isnan(ac)
    assert np.all(np.abs(ac - plan)[live] <= VM_AGREE_PU)
    assert np.all((ac - plan)[live] >= -VM_BELOW_PU)
    kept = plan >= v_min_pu + margin_pu - 1e-9
    assert np.all(ac[live & kept] >= v_min_pu)
    return int(calls.sum())


def test_the_dispatcher_predicts_what_the_plant_does(dispatched):
    cfg = load_config(EXAMPLE)
    calls = assert_dispatch_agrees_with_ac(
        dispatched, cfg.dispatch.voltage_margin_pu, cfg.network.v_min_pu
    )
    assert calls >= 280


def test_the_dispatcher_predicts_what_the_plant_does_on_a_generated_scenario(tmp_path):
    sset, out = tmp_path / "set.nc", tmp_path / "run.nc"
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    argv = ["scenarios", str(spec), "--n", "40", "--seed", "1", "--reduce", "8"]
    assert main([*argv, "--out", str(sset), "--no-progress"]) == 0
    argv = ["run", str(EXAMPLE), "--scenarios", str(sset), "--index", "3"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    cfg = load_config(EXAMPLE)
    with xr.open_dataset(out) as ds:
        assert assert_dispatch_agrees_with_ac(
            ds, cfg.dispatch.voltage_margin_pu, cfg.network.v_min_pu
        )
        # the import the MILP targets includes the losses: once the shocks are over it
        # returns to schedule (no imbalance the size of the feeder's losses)
        assert not np.isnan(float(ds["restoration_time_s"]))


def test_units_stay_within_their_limits_at_every_step(dispatched):
    ds = dispatched
    cat = load_catalogue(REPO / "configs" / "fcm_catalogue.toml")
    p = ds["fcm_p_mw"].to_numpy()
    t = ds["time"].to_numpy()
    tol = 1e-6
    for k, name in enumerate(ds["unit"].to_numpy().astype(str)):
        module = cat.module(name.split("@")[0])
        count = int(ds["unit_count"][k])
        rated = module.p_mw * count
        assert np.abs(p[:, k]).max() <= rated + tol, name
        if module.type in ("bess", "ldes"):
            e = ds["soc_mwh"].to_numpy()[:, k]
            assert e.min() >= module.soc_min * module.e_mwh * count - tol, name
            assert e.max() <= module.soc_max * module.e_mwh * count + tol, name
            block = module.p_min_block_mw * count
            assert not np.any((p[:, k] > tol) & (p[:, k] < block - tol)), name
        if module.type == "fast_gen":
            on = ds["unit_on"].to_numpy()[:, k] > 0.5
            both = on[1:] & on[:-1]
            ramp = np.abs(np.diff(p[:, k]))[both]
            reach = module.ramp_mw_per_min * count * np.diff(t)[both] / 60
            assert np.all(ramp <= reach + tol), name
            assert np.all(p[on, k] >= module.p_min_mw * count - tol), name
        if module.type == "dr":
            # the plant does not stop a unit itself: the dispatcher's plans must keep its
            # runs within max_duration_s (both ways: a cap at the window once rested a 3-h
            # unit every 65 min; this day it runs 2.6 h) and its curtailment within budget
            curtail = ds["dr_curtail_mw"].to_numpy()[:, k]
            dt_s = step_durations_s(ds)
            run_s, longest = 0.0, 0.0
            for on_k, d in zip(curtail > 1e-9, dt_s, strict=True):
                run_s = run_s + d if on_k else 0.0
                longest = max(longest, run_s)
            assert module.max_duration_s / 2 < longest <= module.max_duration_s, name
            assert curtail @ dt_s / 3600 <= module.energy_mwh * count + tol, name


def _described(ds: xr.Dataset) -> list[str]:
    """Variables without units or long_name, and coordinates without long_name."""
    bad = [
        n
        for n, v in ds.data_vars.items()
        if not (v.attrs.get("units") and v.attrs.get("long_name"))
    ]
    bad += [n for n, c in ds.coords.items() if not c.attrs.get("long_name")]
    return bad


def test_every_variable_has_units_and_a_long_name(dispatched):
    assert _described(dispatched) == []
    assert int(dispatched["restored"]) == 1 and not np.isnan(
        float(dispatched["restoration_time_s"])
    )
    # what dispatched this run can be reproduced: the catalogue travels with it
    assert "bess-0.5" in dispatched.attrs["catalogue_toml"]
    assert len(dispatched.attrs["catalogue_sha256"]) == 64
    assert dispatched.attrs["simgrid_kind"] == "run"


def test_the_readme_prints_what_the_example_prints(dispatched):
    """The comparison table in the README's quick start is the run's, line for line."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("                          do-nothing  RollingDispatcher") :]
    table = table[: table.index("```")].rstrip().splitlines()
    printed = dispatched.attrs["printed"].rstrip().splitlines()
    assert printed[-len(table) :] == table
