"""Stage-II dispatcher: hand-solvable one-bus cases, state across calls, fallback, backends."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest

from simgrid.aiload import campus_loads_mw
from simgrid.config import DispatchConfig, NetworkConfig, UpstreamConfig
from simgrid.fcm import Unit
from simgrid.inputs import prepare
from simgrid.network import build_network
from simgrid.optimization.dispatcher import LOSS_TOL, RollingDispatcher
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import campus_profile, flat
from simgrid.runner import build_policy
from simgrid.types import Campus, GridState, SolveStatus
from simgrid.units import family_of

from conftest import MINIMAL, REPO, config_from_toml, network
from reference import lindistflow_vm

MW_TOL = 1e-4  # solver tolerances on set-points
# LinDistFlow against AC on case33bw (V_min 0.913 pu at base; 0.73 pu under the shock below)
LINDISTFLOW_BASE_TOL_PU = 0.005
LINDISTFLOW_SHOCK_TOL_PU = 0.05
DT = 300.0


@functools.cache
def _two_bus(tmp_dir: str | None = None):
    """Substation bus 0 and load bus 1 on a short, stiff line: 1 MW base load at bus 1."""
    import pandapower as pp

    net = pp.create_empty_network(sn_mva=10.0)
    b0, b1 = pp.create_bus(net, 12.66), pp.create_bus(net, 12.66)
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line_from_parameters(
        net,
        b0,
        b1,
        length_km=1.0,
        r_ohm_per_km=0.05,
        x_ohm_per_km=0.05,
        c_nf_per_km=0.0,
        max_i_ka=1.0,
    )
    pp.create_load(net, b1, p_mw=1.0, q_mvar=0.0)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp_dir or tmp) / "two_bus.json"
        pp.to_json(net, str(path))
        return build_network(NetworkConfig(case=None, file=path, load_profile="flat"))


@functools.cache
def _base_import_mw() -> float:
    """The AC import of the two-bus feeder's 1 MW base load: the schedule (losses included)."""
    nw = _two_bus()
    return PowerFlowEngine(nw).solve(nw.base_load_p_mw, nw.base_load_q_mvar).import_mw


@pytest.fixture
def two_bus(tmp_path_factory):
    return _two_bus(str(tmp_path_factory.getbasetemp()))


CAMPUS = Campus("dc", bus=1, p_nom_mw=3.0, base_utilisation=0.0)


def _dispatcher(nw, *units: Unit, band: float = 0.0, ramp: float = 0.0, **cfg) -> RollingDispatcher:
    # gap 0: hand-solvable cases must get the optimum, not an incumbent within 0.5 %
    cfg = {"mip_gap": 0.0, **cfg}
    dc = replace(DispatchConfig(policy="milp", redispatch_s=DT, horizon_steps=6), **cfg)
    return RollingDispatcher.build(
        nw,
        flat(),
        (CAMPUS,),
        units,
        dc,
        UpstreamConfig(band_mw=band, ramp_mw_per_min=ramp),
        v_min_pu=0.9,
        v_max_pu=1.1,
    )


def _state(t_s: float, ai_mw: float, schedule_mw: float | None = None) -> GridState:
    """Bus 1 carries 1 MW base + the campus; the schedule assumes no AI load (AC import of
    the base load: with its losses, so that a unit covering the campus exactly leaves the
    import on schedule)."""
    return GridState(
        t_s=t_s,
        is_event_step=True,
        demand_p_mw=np.array([0.0, 1.0 + ai_mw]),
        demand_q_mvar=np.zeros(2),
        energised=np.ones(2, bool),
        line_in_service=np.ones(1, bool),
        ai_load_mw=np.array([ai_mw]),
        import_schedule_mw=_base_import_mw() if schedule_mw is None else schedule_mw,
    )


def _unit(utype: str, **kw) -> Unit:
    return Unit(f"{utype}@1", 1, 1, family_of(utype).module(utype, utype, **kw))


def _bess(**kw) -> Unit:
    base = dict(
        p_mw=0.5,
        e_mwh=1.0,
        eta_charge=0.9,
        eta_discharge=0.9,
        soc_min=0.1,
        soc_max=0.9,
        soc_target=0.5,
        degradation_cost_per_mwh=10.0,
    )
    return _unit("bess", **{**base, **kw})


def test_lindistflow_error_against_ac_is_within_named_tolerances():
    nw = network()
    engine = PowerFlowEngine(nw)
    p, q = nw.base_load_p_mw.copy(), nw.base_load_q_mvar.copy()
    err = np.nanmax(np.abs(engine.solve(p, q).vm_pu - lindistflow_vm(nw, p, q)))
    assert err < LINDISTFLOW_BASE_TOL_PU
    p[17] += 1.5
    q[17] += 0.3
    p[2] += 1.0
    q[2] += 0.2
    ac = engine.solve(p, q).vm_pu
    lin = lindistflow_vm(nw, p, q)
    assert np.nanmin(ac) < 0.75  # a deep shock
    assert np.nanmax(np.abs(ac - lin)) < LINDISTFLOW_SHOCK_TOL_PU
    assert np.all(lin >= ac - 1e-9)  # lossless: LinDistFlow is optimistic, hence the margin


def test_bess_discharges_its_rating_against_a_deficit_and_soc_carries_over(two_bus):
    # a 1 MW deficit with no upstream band: the battery covers 0.5 MW (imbalance costs more
    # than degradation); 300 s later its energy has dropped by 0.5 MW x 300 s / eta_d
    pol = _dispatcher(two_bus, _bess())
    sp = pol.dispatch(_state(0.0, 1.0))
    assert sp.status == SolveStatus.OPTIMAL
    assert sp.p_injection_mw[1] == pytest.approx(0.5, abs=MW_TOL)
    pol.dispatch(_state(DT, 1.0))
    expected = 0.5 - 0.5 * DT / 3600 / 0.9
    assert pol.state.of("storage").e[0] == pytest.approx(expected, abs=1e-6)
    assert pol.report(DT).soc_mwh[0] == pytest.approx(expected, abs=1e-6)
    # a surplus (the campus tripped below schedule) makes it charge instead
    sp = pol.dispatch(_state(2 * DT, 0.0, schedule_mw=1.8))
    assert sp.p_injection_mw[1] == pytest.approx(-0.5, abs=MW_TOL)


def test_bess_at_minimum_soc_cannot_discharge(two_bus):
    pol = _dispatcher(two_bus, _bess(soc_target=0.1))
    pol.state.of("storage").e[:] = 0.1  # at soc_min
    sp = pol.dispatch(_state(0.0, 1.0))
    assert sp.p_injection_mw[1] == pytest.approx(0.0, abs=MW_TOL)
    assert sp.shed_mw.sum() == pytest.approx(0.0, abs=MW_TOL)  # imbalance, not shedding


def _ldes() -> Unit:
    return _unit(
        "ldes",
        p_mw=0.25,
        e_mwh=2.5,
        eta_charge=0.85,
        eta_discharge=0.85,
        soc_min=0.05,
        soc_max=0.95,
        soc_target=0.5,
        p_min_block_mw=0.1,
        degradation_cost_per_mwh=5.0,
    )


@pytest.mark.parametrize(("deficit", "expected"), [(0.05, 0.0), (0.15, 0.15), (0.4, 0.25)])
def test_ldes_minimum_dispatch_block(two_bus, deficit, expected):
    # block 0.1 MW: a 0.05 MW deficit is not worth a 0.1 MW block (it would leave a 0.05 MW
    # surplus); 0.15 MW is served exactly; 0.4 MW is capped at the 0.25 MW rating
    sp = _dispatcher(two_bus, _ldes()).dispatch(_state(0.0, deficit))
    assert sp.p_injection_mw[1] == pytest.approx(expected, abs=MW_TOL)


def _gen(**kw) -> Unit:
    base = dict(
        p_mw=0.5,
        p_min_mw=0.2,
        ramp_mw_per_min=1.0,
        start_delay_s=DT,
        min_up_s=4 * DT,
        min_down_s=DT,
        start_cost=10.0,
        marginal_cost_per_mwh=100.0,
    )
    return _unit("fast_gen", **{**base, **kw})


def test_fast_gen_start_delay_then_min_up_time_across_calls(two_bus):
    pol = _dispatcher(two_bus, _gen())
    sp = pol.dispatch(_state(0.0, 0.4))  # off, 5-minute start delay: nothing yet
    assert sp.p_injection_mw[1] == pytest.approx(0.0, abs=MW_TOL)
    assert pol.state.of("fast_gen").online_at[0] == pytest.approx(DT)  # start command issued now
    sp = pol.dispatch(_state(DT, 0.4))  # online: covers the 0.4 MW deficit
    assert pol.state.of("fast_gen").on[0]
    assert sp.p_injection_mw[1] == pytest.approx(0.4, abs=MW_TOL)
    # the deficit is gone, but min up (4 periods) keeps it on at p_min for the next calls
    for k in (2, 3, 4):
        sp = pol.dispatch(_state(k * DT, 0.0))
        assert pol.report(k * DT).on[0] == 1.0, k
        assert sp.p_injection_mw[1] == pytest.approx(0.2, abs=MW_TOL), k
    sp = pol.dispatch(_state(5 * DT, 0.0))  # min up served: it stops
    assert sp.p_injection_mw[1] == pytest.approx(0.0, abs=MW_TOL)


def _dr(**kw) -> Unit:
    base = dict(
        p_mw=0.5,
        notification_s=DT,
        max_duration_s=2 * DT,
        energy_mwh=10.0,
        rebound_fraction=0.5,
        payback_mw=0.5,
        cost_per_mwh=50.0,
    )
    return _unit("dr", **{**base, **kw})


def test_dr_notification_max_duration_and_rebound_payback(two_bus):
    pol = _dispatcher(two_bus, _dr(), band=0.1, ramp=10.0)
    assert pol.dispatch(_state(0.0, 0.5)).p_injection_mw[1] == pytest.approx(0, abs=MW_TOL)
    assert pol.state.of("dr").ready_at[0] == pytest.approx(DT)  # notified now, ready in 300 s
    # curtails 0.4 MW and the extra losses of the 0.1 MW the upstream band follows (within
    # the dispatcher's loss tolerance)
    nw = two_bus
    extra = PowerFlowEngine(nw).solve(np.array([0.0, 1.1]), np.zeros(2)).import_mw - 1.1
    extra -= _base_import_mw() - 1.0
    tol = LOSS_TOL * 1.5
    curtailed = [pol.dispatch(_state(k * DT, 0.5)).p_injection_mw[1] for k in (1, 2)]
    assert curtailed == pytest.approx([0.4 + extra] * 2, abs=tol)
    # max duration (2 periods) reached: released even though the deficit persists
    pol.dispatch(_state(3 * DT, 0.5))
    assert pol.report(3 * DT).dr_curtail_mw[0] == pytest.approx(0.0, abs=MW_TOL)
    owed = 0.5 * sum(curtailed) * DT / 3600
    assert pol.state.of("dr").owed[0] == pytest.approx(owed, abs=1e-6)
    assert pol.state.of("dr").used[0] == pytest.approx(sum(curtailed) * DT / 3600, abs=1e-6)
    # deficit gone: the owed energy is paid back within the upstream band (0.1 MW)
    payback = -pol.dispatch(_state(4 * DT, 0.0)).p_injection_mw[1]
    assert payback == pytest.approx(0.1, abs=tol)
    pol.dispatch(_state(5 * DT, 0.0))
    assert pol.state.of("dr").owed[0] == pytest.approx(owed - payback * DT / 3600, abs=1e-6)


def test_time_out_holds_the_last_plan_then_sheds_the_ai_excess(two_bus):
    pol = _dispatcher(two_bus, _bess())
    first = pol.dispatch(_state(0.0, 1.0))
    assert first.status == SolveStatus.OPTIMAL
    pol.lp_first = False  # (a hot-started LP may still finish in no time)
    pol.cfg = replace(pol.cfg, time_limit_s=1e-9)  # every later MILP solve times out
    held = pol.dispatch(_state(DT, 1.0))
    assert held.status == SolveStatus.HELD
    assert held.p_injection_mw[1] == pytest.approx(0.5, abs=MW_TOL)  # plan period 1
    # no plan at all: a fresh dispatcher that cannot solve sheds the AI excess at VoLL
    fresh = _dispatcher(two_bus, _bess(), time_limit_s=1e-9)
    sp = fresh.dispatch(_state(0.0, 1.0))
    assert sp.status == SolveStatus.SHED
    assert sp.shed_mw[1] == pytest.approx(1.0)
    assert sp.p_injection_mw[1] == 0.0


def test_a_persistent_model_keeps_its_time_limit_per_solve():
    # HiGHS measures `time_limit` against the object's cumulative clock: without resetting
    # it per solve, a long run's solves all time out once their total passes the limit
    nw = network()
    dc = DispatchConfig(policy="milp", redispatch_s=DT, horizon_steps=12, time_limit_s=0.1)
    campus = Campus("dc", bus=17, p_nom_mw=1.0, base_utilisation=0.0)
    bess = Unit("bess@17", 17, 1, _bess().module)
    pol = RollingDispatcher.build(
        nw, flat(), (campus,), (bess,), dc, UpstreamConfig(0.1, 0.05), v_min_pu=0.9, v_max_pu=1.1
    )
    k = 0
    while (
        pol._lp_model is None or pol._lp_model.highs.getRunTime() < 0.3
    ):  # three limits' worth of solves
        ai = 0.3 * (k % 3)
        st = GridState(
            t_s=k * DT,
            is_event_step=False,
            demand_p_mw=nw.base_load_p_mw + ai * (np.arange(33) == 17),
            demand_q_mvar=nw.base_load_q_mvar,
            energised=np.ones(33, bool),
            line_in_service=nw.line_in_service,
            ai_load_mw=np.array([ai]),
            import_schedule_mw=3.92,
        )
        assert pol.dispatch(st).status == SolveStatus.OPTIMAL, k
        k += 1
    # every one answered by the LP-first path: none stopped by the time limit
    assert pol.lp_accepted == len(pol.costs) >= k


def test_a_solver_crash_is_recorded_and_falls_back(two_bus, monkeypatch):
    pol = _dispatcher(two_bus, _bess())

    def boom(*_):
        raise RuntimeError("solver died")

    monkeypatch.setattr(pol, "_solve_highs", boom)
    assert pol.dispatch(_state(0.0, 1.0)).status == SolveStatus.SHED


def test_pyomo_rebuild_backend_finds_the_same_decisions(two_bus):
    units = (_bess(), _gen(start_delay_s=0.0), _dr(notification_s=0.0))
    fast = _dispatcher(two_bus, *units, mip_gap=0.0)
    slow = replace_backend = _dispatcher(two_bus, *units, mip_gap=0.0)
    replace_backend.backend = "pyomo"
    for k, ai in enumerate((1.2, 1.2, 0.3)):
        a, b = fast.dispatch(_state(k * DT, ai)), slow.dispatch(_state(k * DT, ai))
        np.testing.assert_allclose(a.p_injection_mw, b.p_injection_mw, atol=MW_TOL)
        assert fast.costs[-1] == pytest.approx(slow.costs[-1], rel=1e-6, abs=1e-6)
    assert math.isfinite(sum(fast.costs))


@pytest.mark.parametrize("abs_gap", [1e-9, 0.5])
def test_lp_first_shortcut_gives_the_milp_optimum_within_the_gap(two_bus, abs_gap):
    """An integral LP relaxation is exact (the MILP's objective); a dive lies within the gap.

    After every call the MILP is solved on the very window the shortcut answered (the
    persistent MILP object holds the same bounds and costs) and the two are compared.
    """
    units = (_bess(), _gen(start_delay_s=0.0), _dr(notification_s=0.0), _ldes())
    pol = _dispatcher(two_bus, *units, mip_abs_gap=abs_gap)
    for k, ai in enumerate((0.0, 0.2, 1.2, 1.2, 0.3, 0.0, 0.7, 0.05, 0.06, 0.0)):
        accepted, dives = pol.lp_accepted, pol.lp_dives
        pol.dispatch(_state(k * DT, ai))
        if pol.lp_accepted == accepted:
            continue  # answered by the MILP itself
        pol._milp_model.highs.setOptionValue("mip_abs_gap", 1e-9)
        pol._milp_model.solve(10.0)  # pushes the window's bounds and costs first
        best, bound = (
            pol._milp_model.highs.getInfo().objective_function_value,
            pol._milp_model.highs.getInfo().mip_dual_bound,
        )
        assert pol.costs[-1] >= bound - 1e-6, k
        slack = abs_gap if pol.lp_dives > dives else 0.0
        assert pol.costs[-1] <= best + slack + 1e-6, k
    assert pol.lp_accepted > 0
    assert (pol.lp_dives > 0) == (abs_gap > 0.1)  # the loose gap lets dives through


def test_lp_rounding_puts_storage_in_the_mode_of_its_net_flow(two_bus, monkeypatch):
    """A relaxation may charge and discharge at once (to spend energy above the SoC target):
    the rounded point charges when it charges more than it discharges, and the reverse."""
    from simgrid.optimization import lpfirst

    seen = []
    answer = lpfirst.answer

    def spy(lp, milp, hd, state, ud, **kw):
        seen.append((milp, hd, state, ud))
        return answer(lp, milp, hd, state, ud, **kw)

    monkeypatch.setattr(lpfirst, "answer", spy)
    pol = _dispatcher(two_bus, _bess())
    pol.dispatch(_state(0.0, 0.2))
    milp, hd, state, ud = seen[-1]
    st = hd.of("storage")
    head = milp.integer[st.mode]
    assert head.any()
    x = np.zeros(milp.cost.size)
    x[st.pc], x[st.pd] = 0.4, 0.1  # net charging
    assert np.all(lpfirst.rounded(x, milp, hd, state, ud)[st.mode][head] == 0.0)
    x[st.pc], x[st.pd] = 0.1, 0.4  # net discharging
    assert np.all(lpfirst.rounded(x, milp, hd, state, ud)[st.mode][head] == 1.0)


def test_perfect_foresight_starts_a_slow_generator_ahead_of_a_known_deficit(two_bus):
    # a 0.4 MW deficit arrives in 10 minutes; the generator needs 10 minutes to start
    def forecaster(times):
        return np.where(times >= 2 * DT, 0.4, 0.0)[:, None]

    ahead = _dispatcher(two_bus, _gen(start_delay_s=2 * DT))
    ahead.forecaster = forecaster
    ahead.dispatch(_state(0.0, 0.0))
    assert ahead.state.of("fast_gen").online_at[0] == pytest.approx(2 * DT)
    blind = _dispatcher(two_bus, _gen(start_delay_s=2 * DT))  # persistence sees no deficit
    blind.dispatch(_state(0.0, 0.0))
    assert np.isnan(blind.state.of("fast_gen").online_at[0])


def test_runner_wires_perfect_foresight_to_the_event_physics(tmp_path):

    cfg = config_from_toml(
        MINIMAL
        + f"""
[dispatch]
policy = "milp"
catalogue = "{REPO / "configs" / "fcm_catalogue.toml"}"
[[allocation]]
module = "bess-0.5"
bus = 2
count = 1
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.3
[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 900
magnitude_mw = 0.5
ramp_s = 600
""",
        tmp_path,
    )
    policy = build_policy(cfg, prepare(cfg), forecast="perfect")
    times = np.arange(0.0, 3600.0, DT)
    expected = campus_loads_mw(
        cfg.campuses, [campus_profile(c) for c in cfg.campuses], cfg.events, times
    )
    np.testing.assert_allclose(policy.forecaster(times), expected)
    assert expected[-1, 0] == pytest.approx(0.6 + 0.5)


def _ramp_between_calls(tmp_path, realtime: str):
    """A campus ramping +0.8 MW over 20 minutes while the MILP runs every 5 minutes; the
    upstream grid follows nothing, so every MW the units miss is imbalance."""
    from simgrid.runner import run

    cfg = config_from_toml(
        MINIMAL.replace("band_mw = 0.1", "band_mw = 0.0")
        + f"""
[dispatch]
policy = "milp"
catalogue = "{REPO / "configs" / "fcm_catalogue.toml"}"
realtime = "{realtime}"
[[allocation]]
module = "bess-0.5"
bus = 2
count = 2
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.2
[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 600
magnitude_mw = 0.8
ramp_s = 1200
duration_s = 600
""",
        tmp_path,
    )
    return run(cfg)


def test_a_ramp_between_calls_is_absorbed_by_headroom(tmp_path):
    follow = _ramp_between_calls(tmp_path, "follow")
    hold = _ramp_between_calls(tmp_path, "hold")
    ramp = (follow["time"] > 600) & (follow["time"] < 1800)
    between = ramp & (follow["dispatch_status"] == 4)
    bess = follow["fcm_p_mw"].sum("unit")
    # between calls the batteries move with the ramp (their set-points are not held) ...
    assert float(np.abs(bess.diff("time")).where(between[1:], 0.0).max()) > 0.02
    # ... and absorb it within their 1 MW headroom: no imbalance, where holding leaves some
    assert float(np.abs(follow["imbalance_mw"]).where(ramp, 0.0).max()) < 1e-3
    assert float(np.abs(hold["imbalance_mw"]).where(ramp, 0.0).max()) > 0.1
    assert float(follow["imbalance_energy_mwh"]) < 0.2 * float(hold["imbalance_energy_mwh"])
    assert float(np.abs(bess).max()) <= 1.0 + 1e-9
