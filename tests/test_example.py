"""The bundled example: a day on the IEEE 33-bus feeder with ramps, a trip, a line outage and a
surge, ridden out without flexible resources (do-nothing) and with the Stage-II dispatcher."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from simgrid.cli import main
from simgrid.config import load_config
from simgrid.ncio import write_dataset
from simgrid.runner import prepare, run
from simgrid.types import DoNothing

from conftest import REPO

EXAMPLE = REPO / "configs" / "ieee33.toml"


@pytest.fixture
def do_nothing():
    cfg = load_config(EXAMPLE)
    inputs = prepare(cfg)
    return cfg, inputs, run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))


def test_example_has_the_shocks_the_issue_asks_for():
    cfg = load_config(EXAMPLE)
    assert {"ramp_up", "trip", "line_outage"} <= {e.kind.value for e in cfg.events}
    assert cfg.horizon_s == 86400 and cfg.dt_s == 60 and cfg.dispatch.policy == "milp"


def test_do_nothing_is_quiet_before_the_first_event_and_hurt_after(do_nothing):
    cfg, _, ds = do_nothing
    first = min(e.start_s for e in cfg.events)
    before = ds.sel(time=slice(None, first - 1e-9))
    assert np.abs(before["imbalance_mw"]).max() == 0.0
    assert before["unserved_mw"].max() == 0.0
    assert float(ds["imbalance_energy_mwh"]) > 0 and float(ds["unserved_energy_mwh"]) > 0
    # unserved load comes from the islanding and from the surge's voltage collapse only
    outage = next(e for e in cfg.events if e.kind.value == "line_outage")
    surge = next(e for e in cfg.events if e.kind.value == "surge")
    t = ds["time"]
    islanded = (t >= outage.start_s) & (t < outage.start_s + outage.duration_s)
    collapsed = ~ds["pf_converged"].astype(bool)
    assert (ds["unserved_mw"].where(~(islanded | collapsed), 0.0) == 0).all()
    assert (ds["unserved_mw"].where(islanded, 1.0) > 0).all()
    assert int(ds["collapse_steps"]) > 0
    assert float(t.where(collapsed).min()) >= surge.start_s
    trip = next(e for e in cfg.events if e.kind.value == "trip")
    assert float(ds["imbalance_mw"].sel(time=trip.start_s)) < 0


def test_example_file_round_trip_is_deterministic(do_nothing, tmp_path):
    cfg, inputs, ds = do_nothing
    out = write_dataset(ds, tmp_path / "a.nc")
    again = run(cfg, inputs=inputs, policy=DoNothing(inputs.network.n_bus))
    with xr.open_dataset(out) as saved:
        xr.testing.assert_identical(saved.load(), again)


def test_example_with_fcms_beats_do_nothing_and_prints_the_comparison(tmp_path, capsys):
    out = tmp_path / "ieee33.nc"
    assert main(["run", str(EXAMPLE), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "do-nothing" in printed and "RollingDispatcher" in printed
    with xr.open_dataset(out) as ds:
        for name in ("unserved_energy_mwh", "imbalance_energy_mwh", "peak_imbalance_mw"):
            assert float(ds[name]) < 0.6 * float(ds[f"baseline_{name}"]), name
        assert int(ds["collapse_steps"]) == 0
        for name, units in (
            ("fcm_p_mw", "MW"),
            ("soc_mwh", "MWh"),
            ("unit_on", "1"),
            ("dr_curtail_mw", "MW"),
            ("dispatch_status", "1"),
            ("dispatch_solve_s", "s"),
            ("shed_mw", "MW"),
        ):
            assert ds[name].attrs["units"] == units, name
        assert ds["fcm_p_mw"].dims == ("time", "unit") and ds.sizes["unit"] == 5
        storage = ~ds["soc_mwh"].isnull().all("time")
        assert storage.sum() == 3  # two BESS and the LDES
        solved = ds["dispatch_status"] < 4
        assert int(solved.sum()) >= 288  # every 5 minutes and at every event step
        assert (ds["dispatch_status"].where(solved, 0) <= 1).all()  # no fallback needed
        assert float(ds["fcm_energy_mwh"].sum()) > 0 and float(ds["fcm_cost"]) > 0
