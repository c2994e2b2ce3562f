"""The real-time layer's limits between calls (realtime.Guard) on the IEEE 33-bus feeder: the
network model's sensitivities against AC load flows, and set-points scaled back so that the
AC solution they lead to respects what they would otherwise break."""

from __future__ import annotations

import numpy as np
import pytest

from simgrid.optimization.dispatch_window import VoltageLimits
from simgrid.optimization.lindistflow import LinDistFlow
from simgrid.optimization.realtime import Guard
from simgrid.powerflow import PowerFlowEngine
from simgrid.types import GridState

from conftest import network

FAR_END = 17  # Baran & Wu's bus 18: the end of the main feeder
NEAR = 1  # one line from the substation
LIMITS = VoltageLimits(0.90, 1.10)


def _feeder(load_factor: float):
    """The feeder at `load_factor` x its nominal load: network, model, demand (MW, Mvar)."""
    nw = network()
    net = LinDistFlow.of(nw, 100.0)
    return nw, net, nw.base_load_p_mw * load_factor, nw.base_load_q_mvar * load_factor


def _measured(nw, p_mw, q_mvar, inj_mw) -> tuple[GridState, object]:
    """A GridState whose last AC solution is the feeder at demand (p, q) less `inj_mw`."""
    res = PowerFlowEngine(nw).solve(p_mw - inj_mw, q_mvar)
    assert res.converged
    st = GridState(
        t_s=60.0,
        is_event_step=False,
        demand_p_mw=p_mw,
        demand_q_mvar=q_mvar,
        energised=np.ones(nw.n_bus, bool),
        line_in_service=nw.line_in_service.copy(),
        ai_load_mw=np.zeros(0),
        import_schedule_mw=0.0,
        last_vm_pu=res.vm_pu,
        last_line_p_mw=res.line_p_from_mw,
        last_loading_percent=res.line_loading_percent,
        last_net_p_mw=p_mw - inj_mw,
        last_net_q_mvar=q_mvar,
    )
    return st, res


def _ac_at(nw, p_mw, q_mvar, buses, unit_mw):
    inj = np.zeros(nw.n_bus)
    np.add.at(inj, buses, unit_mw)
    return PowerFlowEngine(nw).solve(p_mw - inj, q_mvar)


def test_sensitivities_predict_the_ac_load_flow():
    """0.2 MW and 0.1 Mvar injected at the far end: voltages and flows as the AC load flow has
    them, within the losses LinDistFlow leaves out (a few per cent of the change)."""
    nw, net, p, q = _feeder(1.0)
    sens = net.sensitivity(nw.line_in_service)
    engine = PowerFlowEngine(nw)
    base = engine.solve(p, q)
    dp, dq = np.zeros(nw.n_bus), np.zeros(nw.n_bus)
    dp[FAR_END], dq[FAR_END] = 0.2, 0.1
    moved = engine.solve(p - dp, q - dq)
    v2 = base.vm_pu**2 + sens.dv2_dp @ dp + sens.dv2_dq @ dq
    ac_rise = moved.vm_pu - base.vm_pu
    lin_rise = np.sqrt(v2) - base.vm_pu
    assert ac_rise[FAR_END] > 0.005  # a change worth predicting
    np.testing.assert_allclose(lin_rise, ac_rise, rtol=0.1, atol=2e-4)
    ac_flow = engine.solve(p - dp, q).line_p_from_mw - base.line_p_from_mw  # units: P only
    on_path = np.abs(sens.dflow_dp @ dp) > 0
    assert on_path.sum() == FAR_END  # lines 0..16 lead from the substation to bus 17
    # lossless, a line carries the injection; the losses it saves on the way come on top
    # (16 % at the head), which the measured point's loss sensitivities have
    np.testing.assert_allclose(ac_flow[on_path], -0.2, rtol=0.17)
    lossy = sens.flows_at(base.vm_pu, base.line_p_from_mw) @ dp
    np.testing.assert_allclose(lossy[on_path], ac_flow[on_path], rtol=0.02)
    np.testing.assert_allclose(ac_flow[~on_path], 0.0, atol=5e-3)


def test_a_unit_charging_into_low_voltage_is_scaled_back_to_the_limit():
    """The feeder loaded to 0.905 pu at the far end; a battery there asked to charge 0.4 MW
    (which would take the bus below 0.90 pu) charges only what the bus can take, keeping it
    0.002 pu inside the limit (the sensitivities' error near it was 0.0003 pu)."""
    nw, net, p, q = _feeder(1.08)
    st, res = _measured(nw, p, q, np.zeros(nw.n_bus))
    assert 0.9 < np.nanmin(res.vm_pu) < 0.91
    assert _ac_at(nw, p, q, [FAR_END], [-0.4]).vm_pu.min() < 0.9  # what the guard prevents
    guard = Guard(net, LIMITS, 100.0, [FAR_END])
    at = guard.around(st, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus))
    p_new = guard.limit(at, np.array([-0.4]), np.array([-0.5]), np.array([0.5]), reshare=False)
    assert -0.4 < p_new[0] < 0.0  # partly: what the bus can take
    vm = _ac_at(nw, p, q, [FAR_END], p_new).vm_pu
    # at the guard's aim, 0.002 pu inside the limit, as the AC solution has it
    assert vm.min() == pytest.approx(0.902, abs=5e-4) and vm.min() > 0.90


def test_a_unit_that_helps_or_harms_nothing_is_left_alone():
    nw, net, p, q = _feeder(1.08)
    st, _ = _measured(nw, p, q, np.zeros(nw.n_bus))
    guard = Guard(net, LIMITS, 100.0, [FAR_END, NEAR])
    at = guard.around(st, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus))
    lo, hi = np.full(2, -0.5), np.full(2, 0.5)
    discharging = np.array([0.3, -0.1])  # raises the far end; a little charge near the top
    np.testing.assert_array_equal(guard.limit(at, discharging, lo, hi, True), discharging)


def test_what_a_harmful_unit_no_longer_absorbs_goes_to_the_others():
    """Following a surplus, the far-end battery and one near the substation both charge; the
    far end cannot take its share, so the near one charges more."""
    nw, net, p, q = _feeder(1.08)
    st, _ = _measured(nw, p, q, np.zeros(nw.n_bus))
    guard = Guard(net, LIMITS, 100.0, [FAR_END, NEAR])
    at = guard.around(st, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus))
    asked = np.array([-0.3, -0.3])
    p_new = guard.limit(at, asked, np.full(2, -0.8), np.full(2, 0.5), reshare=True)
    assert p_new[0] > asked[0] and p_new[1] < asked[1]
    # most of it: the near one's charge lowers the far end a little as well
    assert p_new.sum() == pytest.approx(asked.sum(), abs=0.05)
    alone = guard.limit(at, asked, np.full(2, -0.8), np.full(2, 0.5), reshare=False)
    assert alone[1] == asked[1] and alone.sum() > p_new.sum() + 0.1  # the far end alone gives
    assert _ac_at(nw, p, q, [FAR_END, NEAR], p_new).vm_pu.min() >= 0.90 - 5e-4


def test_a_unit_that_overloads_a_line_is_scaled_back_to_its_rating():
    """Lines rated just above the head's loading (all lines: 2 % above line 0's): a 0.4 MW
    charge at the far end would overload its path; the guard keeps the AC loading at the
    rating."""
    nw, net, p, q = _feeder(0.6)  # light load: voltage is not what binds
    st, res = _measured(nw, p, q, np.zeros(nw.n_bus))
    rating = float(res.line_loading_percent[0]) + 2.0
    guard = Guard(net, LIMITS, rating, [FAR_END])
    at = guard.around(st, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus))
    assert _ac_at(nw, p, q, [FAR_END], [-0.4]).line_loading_percent[0] > rating + 2.0
    p_new = guard.limit(at, np.array([-0.4]), np.array([-0.5]), np.array([0.5]), reshare=False)
    assert -0.4 < p_new[0] < 0.0
    loading = _ac_at(nw, p, q, [FAR_END], p_new).line_loading_percent
    assert loading.max() == pytest.approx(rating, abs=0.5)  # the path's most loaded line


def test_a_line_rating_is_a_current_at_the_predicted_voltage():
    """A 0.4 MW charge at the far end lowers its voltage by 0.034 pu: in MVA a line's rating
    falls with it, so the loading predicted is the AC's to 2 % on the lines it loads (taken at
    the last voltage, the far end's line came out 3.6 % low, and a guard aiming at 99.5 %
    left a line at 100.4 %)."""
    nw, net, p, q = _feeder(1.0)
    st, res = _measured(nw, p, q, np.zeros(nw.n_bus))
    guard = Guard(net, LIMITS, 100.0, [FAR_END])
    at = guard.around(st, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus))
    vm, _, loading = at.predict(np.array([-0.4]))
    ac = _ac_at(nw, p, q, [FAR_END], [-0.4])
    assert np.nanmin(ac.vm_pu) < np.nanmin(res.vm_pu) - 0.03  # a drop worth taking in
    path = slice(0, FAR_END)  # lines 0..16 lead from the substation to bus 17
    np.testing.assert_allclose(loading[path], ac.line_loading_percent[path], rtol=0.02)


def test_without_an_ac_solution_nothing_is_predicted():
    nw, net, p, q = _feeder(1.0)
    st, _ = _measured(nw, p, q, np.zeros(nw.n_bus))
    blind = GridState(**{**st.__dict__, "last_vm_pu": None})
    guard = Guard(net, LIMITS, 100.0, [FAR_END])
    assert guard.around(blind, np.zeros(nw.n_bus), np.zeros(nw.n_bus), np.zeros(nw.n_bus)) is None


@pytest.mark.slow
def test_no_allocation_breaks_a_limit_on_a_day_do_nothing_keeps_it(tmp_path):
    """Days of the shifted spec (faster ramps, oscillations at both campuses, longer surges,
    more trips and outages) in closed loop with the example's allocation and without: on no day
    where doing nothing stays within the voltage limits (line ratings) does the allocation
    leave them. About 4 minutes on 2 cores."""
    import xarray as xr

    from simgrid.cli import main
    from simgrid.config import load_config
    from simgrid.fcm import allocation_dataset

    from conftest import REPO

    config = REPO / "configs" / "ieee33.toml"
    alloc = tmp_path / "example.nc"
    allocation_dataset(load_config(config).dispatch.allocation).to_netcdf(alloc)
    days = tmp_path / "heavy.nc"
    spec = str(REPO / "scenarios" / "ieee33_ai_heavy.toml")
    assert main(["scenarios", spec, "--n", "12", "--seed", "13", "--out", str(days)]) == 0
    out = tmp_path / "eval"
    argv = ["evaluate", str(config), "--allocations", str(alloc), "--scenarios", str(days)]
    assert main([*argv, "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    with xr.open_dataset(out / "evaluation.nc") as ds:
        for metric in ("voltage_violation_s", "thermal_violation_s"):
            none = ds[metric].sel(allocation="none").to_numpy()
            ours = ds[metric].sel(allocation="example").to_numpy()
            assert np.all(ours[none == 0] == 0), (metric, none, ours)
