"""The bundled example: a day on the IEEE 33-bus feeder with a ramp, a trip and a line outage."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from simgrid.config import load_config
from simgrid.ncio import write_dataset
from simgrid.runner import prepare, run

from conftest import REPO

EXAMPLE = REPO / "configs" / "ieee33.toml"


@pytest.fixture
def example():
    cfg = load_config(EXAMPLE)
    return cfg, run(cfg, inputs=prepare(cfg))


def test_example_has_the_shocks_the_issue_asks_for(example):
    cfg, ds = example
    kinds = {e.kind.value for e in cfg.events}
    assert {"ramp_up", "trip", "line_outage"} <= kinds
    assert cfg.horizon_s == 86400 and cfg.dt_s == 60


def test_example_is_quiet_before_the_first_event_and_hurt_after(example):
    cfg, ds = example
    first = min(e.start_s for e in cfg.events)
    before = ds.sel(time=slice(None, first - 1e-9))
    assert np.abs(before["imbalance_mw"]).max() == 0.0
    assert before["unserved_mw"].max() == 0.0
    # no flexible resource: the shocks must show up
    assert float(ds["imbalance_energy_mwh"]) > 0 and float(ds["peak_imbalance_mw"]) > 0
    assert float(ds["unserved_energy_mwh"]) > 0
    # unserved load comes from the islanding only, and equals its demand x duration
    outage = next(e for e in cfg.events if e.kind.value == "line_outage")
    during = (ds["time"] >= outage.start_s) & (ds["time"] < outage.start_s + outage.duration_s)
    assert (ds["unserved_mw"].where(~during, 0.0) == 0).all()
    assert (ds["unserved_mw"].where(during, 1.0) > 0).all()
    assert int(ds["collapse_steps"]) == 0
    # a trip makes the import fall below schedule
    trip = next(e for e in cfg.events if e.kind.value == "trip")
    assert float(ds["imbalance_mw"].sel(time=trip.start_s)) < 0


def test_example_file_round_trip_is_deterministic(example, tmp_path):
    cfg, ds = example
    out = write_dataset(ds, tmp_path / "a.nc")
    again = run(cfg, inputs=prepare(cfg))
    with xr.open_dataset(out) as saved:
        xr.testing.assert_identical(saved.load(), again)
