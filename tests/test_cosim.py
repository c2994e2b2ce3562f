"""Event timing, ordering within a timestamp, islanding, collapse and determinism of the loop."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simgrid.aiload import campus_load_mw
from simgrid.config import UpstreamConfig
from simgrid.cosim import simulate
from simgrid.cosim.loads import CampusLoad, Ramp, Sine
from simgrid.cosim.simulation import Clock, UpstreamFollower
from simgrid.inputs import SimulationInputs
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import diurnal, flat
from simgrid.types import Cadence, Campus, GridState, SetPoints

from conftest import MINIMAL, config_from_toml, network

CAMPUS = """
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.25
"""
MW_TOL = 1e-9


def _run(text: str, policy=None):
    cfg = config_from_toml(text)
    return simulate(SimulationInputs(cfg, network(), flat()), policy)


def _at(ds, name, t_s):
    return float(ds[name].sel(time=t_s))


def test_ramp_is_linear_in_time_at_mid_ramp_instants():
    ds = _run(
        MINIMAL
        + CAMPUS
        + """
[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 600
magnitude_mw = 1.0
ramp_s = 300
duration_s = 600
"""
    )
    base = 0.5
    assert _at(ds, "ai_load_mw", 540) == pytest.approx(base, abs=MW_TOL)
    for t, frac in (
        (600, 0.0),
        (660, 0.2),
        (720, 0.4),
        (780, 0.6),
        (900, 1.0),
        (1500, 1.0),
        (1560, 0.8),
        (1800, 0.0),
    ):
        assert _at(ds, "ai_load_mw", t) == pytest.approx(base + frac, abs=MW_TOL), t


def test_ramp_value_between_grid_points():
    load = CampusLoad(
        Campus("dc", 2, 2.0, 0.25), flat(), additive_mw={0: Ramp(100.0, 0.0, 400.0, 0.9)}
    )
    assert load.p_mw(250.0) == pytest.approx(0.5 + 0.45)
    assert load.p_mw(123.4) == pytest.approx(0.5 + 0.9 * 23.4 / 300)
    osc = CampusLoad(Campus("dc", 2, 2.0, 0.5), flat(), additive_mw={0: Sine(0.0, 0.3, 40.0)})
    assert osc.p_mw(10.0) == pytest.approx(1.3)


def test_event_instants_off_the_grid_become_event_steps():
    ds = _run(
        MINIMAL
        + CAMPUS
        + """
[[event]]
kind = "trip"
campus = "dc"
start_s = 1234.5
fraction = 0.8
duration_s = 100
return_ramp_s = 50
"""
    )
    t = ds["time"].to_numpy()
    for instant in (1234.5, 1334.5, 1384.5):
        assert instant in t
        assert bool(ds["is_event_step"].sel(time=instant))
    # inject happens before record: the step at the trip instant already sees the trip
    assert _at(ds, "ai_load_mw", 1234.5) == pytest.approx(0.5 * 0.2, abs=MW_TOL)
    assert _at(ds, "ai_load_mw", 1200) == pytest.approx(0.5, abs=MW_TOL)
    # mid-return ramp (off-event grid step at 1380 s): 0.1 + 0.4 * 45.5/50
    assert _at(ds, "ai_load_mw", 1380) == pytest.approx(0.1 + 0.4 * 45.5 / 50, abs=MW_TOL)
    assert _at(ds, "ai_load_mw", 1384.5) == pytest.approx(0.5, abs=MW_TOL)
    assert not bool(ds["is_event_step"].sel(time=1380))


def test_stepper_runs_after_every_injection_at_the_same_instant():
    env = simpy.Environment()
    clock = Clock(env)
    log: list[tuple[float, str]] = []

    def injector(name: str, at: float):
        yield env.timeout(at)
        log.append((env.now, name))
        clock.request_step(event=True)

    def stepper():
        while True:
            yield clock.alarm
            log.append((env.now, f"step(event={clock.take()})"))

    env.process(stepper())  # created first: would run first without the LATE priority
    env.process(injector("a", 5))
    env.process(injector("b", 5))
    env.process(injector("c", 7))
    env.run(until=10)
    assert log == [(5, "a"), (5, "b"), (5, "step(event=True)"), (7, "c"), (7, "step(event=True)")]


def test_line_outage_islands_load_until_repair():
    ds = _run(
        MINIMAL
        + """
[[event]]
kind = "line_outage"
line = 27
start_s = 600
duration_s = 1200
"""
    )
    nw = network()
    downstream = nw.base_load_p_mw[[28, 29, 30, 31, 32]].sum()
    assert _at(ds, "unserved_mw", 540) == 0.0
    assert _at(ds, "unserved_mw", 600) == pytest.approx(downstream, abs=MW_TOL)
    assert _at(ds, "unserved_mw", 1740) == pytest.approx(downstream, abs=MW_TOL)
    assert _at(ds, "unserved_mw", 1800) == 0.0
    assert not bool(ds["energised"].sel(time=1200, bus=30))
    assert np.isnan(float(ds["vm_pu"].sel(time=1200, bus=30)))
    # losing load drops the import below schedule; upstream follows 0.05 MW/min up to 0.1 MW
    for t, followed in ((600, -0.05), (660, -0.1), (1200, -0.1)):
        dev = _at(ds, "import_mw", t) - _at(ds, "import_schedule_mw", t)
        assert _at(ds, "imbalance_mw", t) == pytest.approx(dev - followed, abs=1e-9)


GIANT_SURGE = """
[[campus]]
name = "giant"
bus = 17
p_nom_mw = 40.0
base_utilisation = 0.0

[[event]]
kind = "surge"
campus = "giant"
start_s = 600
magnitude_mw = 40.0
ramp_s = 0
duration_s = 300
"""
PICKUP_PU, BLOCK = 0.88, 0.1  # the UVLS defaults (ProtectionConfig)


def test_feeder_trip_records_collapse_and_the_run_goes_on():
    ds = _run(MINIMAL + '[protection]\nmode = "feeder_trip"\n' + GIANT_SURGE)
    conv = ds["pf_converged"].to_numpy()
    t = ds["time"].to_numpy()
    collapsed = t[~conv]
    assert collapsed.min() == 600 and collapsed.max() < 900 + 1e-9
    assert conv[t >= 960].all() and conv[t < 600].all()
    k = int(np.flatnonzero(t == 600)[0])
    assert ds["unserved_mw"][k] == pytest.approx(float(ds["demand_mw"][k]))
    assert ds["collapse_mw"][k] == pytest.approx(float(ds["demand_mw"][k]))
    assert float(ds["import_mw"][k]) == 0.0
    assert np.isnan(ds["vm_pu"][k]).all()
    assert float(ds["uvls_shed_mw"].sum()) == 0.0
    assert float(ds["time"][-1]) == 3540.0  # the loop reached the horizon


def test_uvls_sheds_blocks_at_the_weakest_bus_until_it_solves_then_restores():
    ds = _run(MINIMAL + GIANT_SURGE)
    assert ds["pf_converged"].all()  # protection, not a blackout
    assert float(ds["collapse_mw"].sum()) == 0.0
    t = ds["time"].to_numpy()
    during = (t >= 600) & (t < 900)
    uvls = ds["uvls_shed_mw"].to_numpy()
    # the collapse starts at the far end (bus 17, the weakest): only its relay acts, in
    # blocks of 10 % of its load, until the power flow solves above the pick-up
    assert (uvls[during][:, np.arange(33) != 17] == 0).all()
    demand17 = 40.0 + network().base_load_p_mw[17]
    frac = uvls[during][:, 17] / demand17
    np.testing.assert_allclose(frac * 10, np.round(frac * 10), atol=1e-9)
    assert (frac > 0.5).all()
    assert (ds["vm_pu"].to_numpy()[during] >= PICKUP_PU - 1e-9).all()
    # unserved is the shed, with its cause
    np.testing.assert_allclose(ds["unserved_mw"], uvls.sum(axis=1), atol=1e-9)
    # blocks stay off for the restoration delay (600 s after the last shedding), then come
    # back one per step while voltages stay healthy
    assert (uvls[(t >= 900) & (t < 1200)][:, 17] > 0).all()
    assert (uvls[t >= 1200 + 10 * 60][:, 17] == 0).all()


def test_uvls_sheds_at_every_bus_below_the_pickup_of_a_converged_low_voltage_state():
    # 2 MW at the far end: the power flow solves, with the tail of the feeder below 0.88 pu
    ds = _run(
        MINIMAL
        + """
[[campus]]
name = "dc"
bus = 17
p_nom_mw = 2.0
base_utilisation = 1.0
"""
    )
    first = ds.isel(time=0)
    shed = first["uvls_shed_mw"].to_numpy()
    nw = network()
    load = nw.base_load_p_mw + 2.0 * (np.arange(33) == 17)
    q17 = 2.0 * Campus("dc", 17, 2.0, 1.0).q_per_p
    unprotected = PowerFlowEngine(nw).solve(load, nw.base_load_q_mvar + q17 * (np.arange(33) == 17))
    assert unprotected.converged
    low = unprotected.vm_pu < PICKUP_PU
    # relays act where the voltage was low, and only there; the rest keeps its load
    assert (shed[low & (load > 0)] > 0).all() and (shed[~low] == 0).all()
    assert float(first["vm_pu"].min()) >= PICKUP_PU
    fractions = shed[shed > 0] / load[shed > 0]
    np.testing.assert_allclose(fractions * 10, np.round(fractions * 10), atol=1e-9)


def test_no_event_means_no_imbalance_and_no_unserved():
    ds = _run(MINIMAL + CAMPUS)
    assert np.abs(ds["imbalance_mw"]).max() < 1e-9
    assert ds["unserved_mw"].max() == 0.0
    np.testing.assert_allclose(ds["import_mw"], ds["import_schedule_mw"], atol=1e-9)


class _ShedHalf:
    """A test policy: shed half of bus 17's load, inject 0.1 MW at bus 2; it plans at events
    and every `redispatch_s` (its own cadence)."""

    unit_names = ()

    def __init__(self, n_bus: int, redispatch_s: float = 300.0) -> None:
        self.n_bus = n_bus
        self.calls: list[float] = []
        self.cadence = Cadence(redispatch_s)

    def due(self, t_s: float, is_event: bool) -> bool:
        return self.cadence.due(t_s, is_event)

    def dispatch(self, state: GridState) -> SetPoints:
        self.calls.append(state.t_s)
        self.cadence.called(state.t_s)
        return self.follow(state)

    def follow(self, state: GridState) -> SetPoints:
        sp = SetPoints.zeros(self.n_bus)
        sp.shed_mw[17] = 0.5 * state.demand_p_mw[17]
        sp.shed_mvar[17] = 0.5 * state.demand_q_mvar[17]
        sp.p_injection_mw[2] = 0.1
        return sp


def test_dispatch_hook_is_called_at_events_and_interval_and_applied():
    policy = _ShedHalf(33, redispatch_s=900)
    ds = _run(
        MINIMAL
        + CAMPUS
        + """
[dispatch]
redispatch_s = 900
[[event]]
kind = "trip"
campus = "dc"
start_s = 1000
duration_s = 600
""",
        policy,
    )
    # the interval fires at the first step on or after it is due
    assert policy.calls == [0.0, 900.0, 1000.0, 1600.0, 2520.0, 3420.0]
    shed = network().base_load_p_mw[17] * 0.5
    np.testing.assert_allclose(ds["unserved_mw"], shed, atol=1e-9)
    np.testing.assert_allclose(ds["shed_mw"].sel(bus=17), shed, atol=1e-9)
    np.testing.assert_allclose(ds["injection_mw"], 0.1)


def test_upstream_follower_limits_magnitude_and_rate():
    f = UpstreamFollower(UpstreamConfig(band_mw=1.0, ramp_mw_per_min=0.5))
    followed = [
        f.step(t, d)
        for t, d in ((0, 0.0), (60, 2.0), (120, 2.0), (180, 2.0), (240, -2.0), (300, -2.0))
    ]
    assert followed == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.5, 0.0])


def test_same_config_and_seed_give_identical_data():
    text = (
        MINIMAL
        + CAMPUS
        + """
[[event]]
kind = "oscillation"
campus = "dc"
start_s = 300
magnitude_mw = 0.2
period_s = 97
duration_s = 900
"""
    )
    assert _run(text).identical(_run(text))


def test_event_processes_agree_with_the_vectorised_load_curve():
    """Two formulations of the same physics: simpy processes step by step vs aiload at once."""
    text = (
        MINIMAL.replace("horizon_s = 3600", "horizon_s = 7200")
        + """
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.5
utilisation_profile = "diurnal"

[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 300
magnitude_mw = 0.6
ramp_s = 450
duration_s = 1200
[[event]]
kind = "surge"
campus = "dc"
start_s = 900
magnitude_mw = 1.0
ramp_s = 0
[[event]]
kind = "trip"
campus = "dc"
start_s = 1700.5
fraction = 0.7
ramp_s = 30
duration_s = 600
return_ramp_s = 900
[[event]]
kind = "oscillation"
campus = "dc"
start_s = 4000
magnitude_mw = 0.2
period_s = 130
duration_s = 1500
"""
    )
    cfg = config_from_toml(text)
    ds = simulate(SimulationInputs(cfg, network(), flat()))
    t = ds["time"].to_numpy()
    expected = campus_load_mw(cfg.campuses[0], diurnal(), cfg.events, t)
    np.testing.assert_allclose(ds["ai_load_mw"].to_numpy(), expected, atol=1e-12)
    assert ds["ai_load_mw"].max() == pytest.approx(2.0)  # the nameplate clips the overlap
