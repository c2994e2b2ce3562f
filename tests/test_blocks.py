"""The dispatch model's blocks one by one, on a two-bus feeder with hand-checkable answers, and
the promise that a size chosen by Stage-I behaves exactly like the same size fixed."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from test_dispatch import _two_bus

from simgrid.optimization.blocks import ModelOptions, ScenarioData, Weights
from simgrid.optimization.builder import ArrayBuilder
from simgrid.optimization.dispatch_model import (
    Sizes,
    assemble,
    idle_state,
    unit_data,
)
from simgrid.optimization.lindistflow import LinDistFlow
from simgrid.optimization.solve import Termination, solve
from simgrid.units import FAMILIES
from simgrid.units.base import Capacity, Window
from simgrid.units.dr import DrModule
from simgrid.units.fast_gen import GenModule
from simgrid.units.storage import StorageModule

MW_TOL = 1e-6
WEIGHTS = Weights(voll=10_000.0, imbalance=1_000.0, voltage=1e5, restoration=0.0)

BESS = StorageModule(
    "bess",
    "bess",
    p_mw=0.5,
    e_mwh=1.0,
    eta_charge=0.9,
    eta_discharge=0.9,
    soc_min=0.1,
    soc_max=0.9,
    soc_target=0.5,
)
GEN = GenModule(
    "gen",
    "fast_gen",
    p_mw=0.5,
    p_min_mw=0.1,
    ramp_mw_per_min=0.01,
    marginal_cost_per_mwh=100.0,
    start_cost=20.0,
)
DR = DrModule(
    "dr",
    "dr",
    p_mw=0.3,
    energy_mwh=0.3,
    rebound_fraction=0.5,
    payback_mw=0.1,
    cost_per_mwh=50.0,
)


def _data(deficit, *, band=0.0, ramp=0.0, dt_h=1.0, q=0.0) -> ScenarioData:
    deficit = np.atleast_1d(np.asarray(deficit, dtype=float))
    h = len(deficit)
    return ScenarioData(
        dt_h=dt_h,
        demand_p=np.column_stack([np.zeros(h), 1.0 + deficit]),
        demand_q=np.column_stack([np.zeros(h), np.full(h, q)]),
        conv_p=np.column_stack([np.zeros(h), np.ones(h)]),
        ai_p=deficit[:, None],
        energised=np.ones((h, 2), bool),
        line_active=np.ones((h, 1), bool),
        schedule=np.ones(h),
        band=band,
        ramp=ramp,
        v2_min=0.0,
        v2_max=4.0,
    )


def _net():
    return LinDistFlow.of(_two_bus(), 1e6).with_campuses(np.array([1]), np.zeros(1))


def _solve(data, modules=(), sizes=None, relax=False, fix=None, start=None):
    ud = unit_data(modules, [1] * len(modules), data.dt_h * 3600, data.periods)
    start = idle_state(ud, data) if start is None else start
    b = ArrayBuilder()
    if sizes == "chosen":
        # Stage-I's form: sizes are columns (here fixed by their bounds at `fix` modules)
        cols = b.add_vars(len(modules), np.asarray(fix, float), np.asarray(fix, float))
        sz = Sizes(tuple(Capacity(np.full(len(idx), 5.0), cols[idx]) for idx in ud.index))
    else:
        counts = np.ones(len(modules)) if fix is None else np.asarray(fix, float)
        sz = Sizes(tuple(Capacity.fixed(counts[idx]) for idx in ud.index))
    hd, cost = assemble(b, _net(), ud, sz, data, start, WEIGHTS, ModelOptions())
    b.add_cost(cost)
    milp = b.build()
    if relax:
        milp = replace(milp, integer=np.zeros_like(milp.integer))
    return solve(milp, time_limit_s=30.0, mip_gap=0.0), hd


def test_network_block_is_lindistflow_on_two_buses():
    res, hd = _solve(_data(0.0, q=0.4))
    net = _net()
    v2 = res.x[hd.network.v2[0, 1]]
    assert v2 == pytest.approx(1.0 - net.r_coef[0] * 1.0 - net.x_coef[0] * 0.4, abs=1e-9)
    assert res.x[hd.network.p[0, 0]] == pytest.approx(1.0, abs=MW_TOL)


def test_line_ratings_are_currents_at_the_measured_voltage():
    """A rating is a current: the window's MVA limit is sqrt(3) V I_max at the lower end
    voltage of the last AC solution (here 0.95 pu), not at nominal voltage."""
    from simgrid.optimization.lindistflow import at_receiving_ends
    from simgrid.powerflow import PowerFlowEngine

    nw = _two_bus()
    res = PowerFlowEngine(nw).solve(np.array([0.0, 1.0]), np.zeros(2))
    res = replace(res, vm_pu=np.array([1.0, 0.95]))
    losses = at_receiving_ends(nw, res, np.ones(2), np.zeros(2))
    assert losses.line_v_pu == pytest.approx([0.95])
    net = _net()
    data = net.with_losses(_data(0.0), losses)
    b = ArrayBuilder()
    ud = unit_data((), [], 3600.0, 1)
    sz = Sizes.fixed(ud)
    hd, _ = assemble(b, net, ud, sz, data, idle_state(ud, data), WEIGHTS, ModelOptions())
    milp = b.build()
    inscribed = np.cos(np.pi / 16)  # the rating polygon's facets (see the next test)
    assert milp.ub[hd.network.p[0, 0]] == pytest.approx(0.95 * inscribed * net.s_max_mva[0])
    assert milp.lb[hd.network.q[0, 0]] == pytest.approx(-0.95 * inscribed * net.s_max_mva[0])


@pytest.mark.parametrize("angle_deg", np.arange(0.0, 360.0, 7.5))
def test_no_flow_the_model_allows_exceeds_the_line_rating(angle_deg):
    """The line must carry the bus's whole demand (nothing to shed, no units): a demand just
    outside the rating circle, in any direction, is infeasible (the polygon is inside the
    circle), and one within cos(pi/16) of the rating is feasible (it gives away <= 1.9 %)."""
    net = LinDistFlow.of(_two_bus(), 100.0).with_campuses(np.array([1]), np.zeros(1))
    s = float(net.s_max_mva[0])
    direction = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])

    def feasible(radius):
        p, q = radius * direction
        data = replace(_data(0.0), demand_p=np.array([[0.0, p]]), demand_q=np.array([[0.0, q]]))
        data = replace(data, conv_p=np.zeros((1, 2)), ai_p=np.zeros((1, 1)))
        ud = unit_data((), [], 3600.0, 1)
        b = ArrayBuilder()
        hd, cost = assemble(
            b, net, ud, Sizes.fixed(ud), data, idle_state(ud, data), WEIGHTS, ModelOptions()
        )
        b.add_cost(cost)
        return solve(b.build(), time_limit_s=10.0, mip_gap=0.0).termination is Termination.OPTIMAL

    assert not feasible(s * (1 + 1e-6))
    assert feasible(s * np.cos(np.pi / 16) * (1 - 1e-6))


def test_import_block_follows_within_its_band_and_ramp_the_rest_is_imbalance():
    # deficits 0.3 then 0.6 MW: the upstream follows 0.2 MW (band), at most 0.1 MW more per
    # period (ramp) from the 0 it starts at
    res, hd = _solve(_data([0.3, 0.6], band=0.2, ramp=0.1))
    follow = res.x[hd.imports.follow]
    imbalance = res.x[hd.imports.imb_pos] - res.x[hd.imports.imb_neg]
    np.testing.assert_allclose(follow, [0.1, 0.2], atol=MW_TOL)
    np.testing.assert_allclose(imbalance, [0.2, 0.4], atol=MW_TOL)


@pytest.mark.parametrize(
    ("deficits", "step_s"),
    [
        *((d, 60.0) for d in ([0.2], [0.2, 0.05], [0.05, 0.15, 0.2, 0.2], [-0.1, -0.2, 0.0])),
        ([0.2], 90.0),  # a period of 3 1/3 steps: 0.125 + 0.05 MW left at the first two
    ],
)
def test_the_upstream_lag_inside_a_period_is_what_the_plant_follower_leaves(deficits, step_s):
    """Five-minute periods, a one-minute plant step (or 90 s), 0.05 MW/min: after each change of the
    deficit the plant's follower (simgrid.cosim) closes 0.05 MW a step; the model's lag costs
    that step-by-step imbalance exactly (a change of 0.2 MW: 0.15 + 0.1 + 0.05 MW-min)."""
    from simgrid.config import UpstreamConfig
    from simgrid.cosim.simulation import UpstreamFollower

    period_s, rate = 300.0, 0.05
    data = replace(
        _data(deficits, band=0.2, ramp=rate * period_s / 60, dt_h=period_s / 3600),
        step_h=step_s / 3600,
    )
    res, _ = _solve(data)
    follower = UpstreamFollower(UpstreamConfig(band_mw=0.2, ramp_mw_per_min=rate))
    follower.step(-step_s, 0.0)
    left_mwh = 0.0
    for k, d in enumerate(deficits):
        for j in range(math.ceil(period_s / step_s)):
            left_mwh += abs(d - follower.step(k * period_s + j * step_s, d)) * step_s / 3600
    # (the model may also follow a little less and pay it as imbalance where that costs the
    # same: only the cost is unique)
    assert res.objective == pytest.approx(WEIGHTS.imbalance * left_mwh, rel=1e-9, abs=1e-9)
    assert left_mwh > 0


def test_storage_block_energy_balance_with_efficiencies():
    # a 0.3 MW deficit for an hour: the battery discharges 0.3 MW, its energy falls by 0.3/0.9;
    # a 0.4 MW one meets the 0.1 MWh floor: 0.4 MWh above it give 0.36 MW for the hour
    res, hd = _solve(_data([0.3]), modules=(BESS,))
    assert res.x[hd.of("storage").pd[0, 0]] == pytest.approx(0.3, abs=MW_TOL)
    assert res.x[hd.of("storage").e[0, 0]] == pytest.approx(0.5 - 0.3 / 0.9, abs=1e-6)
    res, hd = _solve(_data([0.4]), modules=(BESS,))
    assert res.x[hd.of("storage").pd[0, 0]] == pytest.approx(0.4 * 0.9, abs=MW_TOL)


def test_dr_budget_bounds_the_whole_window():
    # two hours of 0.3 MW deficit; the 0.3 MWh budget covers one hour in all, not one per hour
    res, hd = _solve(_data([0.3, 0.3]), modules=(DR,))
    curtailed = res.x[hd.of("dr").curtail[0]]
    assert curtailed.sum() == pytest.approx(0.3, abs=MW_TOL)


def _dr_hour(max_duration_s: float):
    """An hour of 5-min periods 0.1 MW short, a DR unit of `max_duration_s` alone: the data,
    the DR family, its part of the units, the idle start, and a start with the DR's replaced."""
    dr = replace(DR, max_duration_s=max_duration_s, energy_mwh=10.0)
    data = _data(np.full(12, 0.1), dt_h=1 / 12)
    ud = unit_data((dr,), [1], 300.0, 12)
    k = [f.name for f in FAMILIES].index("dr")
    idle = idle_state(ud, data)

    def starting(dr_start):
        return replace(
            idle, units=tuple(dr_start if i == k else st for i, st in enumerate(idle.units))
        )

    return dr, data, FAMILIES[k], ud.parts[k], idle.units[k], starting


def test_a_chained_block_carries_the_demand_response_run_time():
    """A planned day's blocks are relaxed: curtailing a third of its block for a whole hour,
    a DR unit allowed an hour at a time is only a third active in the model, but the plant
    counts every period that curtails. The next block, chained from it, starts with that
    hour run: the unit must rest its first period (as the plant stops it), then may go on
    (before, the run was dropped at the block's edge and the unit curtailed all day)."""
    dr, data, fam, part, idle, starting = _dr_hour(3600.0)
    res, hd = _solve(data, modules=(dr,), relax=True)
    first = res.x[hd.of("dr").curtail[0]]
    np.testing.assert_allclose(first, 0.1, atol=MW_TOL)  # every period, a third of its block
    window = Window(data.dt_h, 12, np.zeros(12, bool), 0.0)
    start = fam.absolute(idle, part, np.ones(1))
    dr_hd = hd.of("dr")
    nxt = fam.next_start(start, res.x, dr_hd, part, np.ones(1), window, part, 300.0, 12, False)
    assert nxt.run_s == pytest.approx([3600.0])
    res2, hd2 = _solve(data, modules=(dr,), relax=True, start=starting(nxt))
    second = res2.x[hd2.of("dr").curtail[0]]
    assert second[0] == pytest.approx(0.0, abs=MW_TOL)
    np.testing.assert_allclose(second[1:], 0.1, atol=MW_TOL)


@pytest.mark.parametrize(("run_s", "first_mw"), [(4200.0, 0.1), (10800.0, 0.0)])
def test_a_dr_run_longer_than_the_window_counts_against_its_whole_max_duration(run_s, first_mw):
    """The dispatcher's window is an hour of 5-min periods. A DR unit allowed 3 h that has
    curtailed for 70 min goes on; one that has curtailed 3 h rests its first period. (Its
    max duration was capped at the window's 13 periods, so the plant rested a 3-h unit after
    every 65 min.)"""
    dr, data, fam, part, _, starting = _dr_hour(10800.0)
    state = fam.initial(part)
    state.on[:], state.run_s[:] = True, run_s
    start = fam.window_start(state, part, 0.0, 300.0, 12, 60.0)
    res, hd = _solve(data, modules=(dr,), start=starting(start))
    assert res.x[hd.of("dr").curtail[0, 0]] == pytest.approx(first_mw, abs=MW_TOL)


def test_generator_block_starts_at_minimum_and_ramps():
    # a 0.4 MW deficit: the generator synchronises at its 0.1 MW minimum and ramps 0.01 MW/min
    # (0.6 MW an hour); within the first hour it reaches min + ramp = 0.7 >= 0.4
    res, hd = _solve(_data([0.4, 0.4]), modules=(GEN,))
    np.testing.assert_allclose(res.x[hd.of("fast_gen").p[0]], [0.4, 0.4], atol=MW_TOL)
    assert res.x[hd.of("fast_gen").s[0, 0]] == pytest.approx(1.0)


def test_a_chosen_size_behaves_like_the_same_size_fixed():
    # the blocks give Stage-I's sized units (rows with first-stage columns, big-M gates) and
    # Stage-II's fixed ones (bounds) the same physics: the same optimum at the same size
    data = _data([0.9, 1.4, 0.2, -0.5], band=0.1, ramp=0.05)
    modules = (BESS, GEN, DR)
    counts = [2, 1, 1]
    fixed_ud = tuple(m.times(c) for m, c in zip(modules, counts, strict=True))
    fixed, _ = _solve(data, modules=fixed_ud)
    chosen, _ = _solve(data, modules=modules, sizes="chosen", fix=counts)
    assert chosen.objective == pytest.approx(fixed.objective, rel=1e-7, abs=1e-6)
    # relaxed, the chosen form's gates carry the largest size as their big-M: a weaker
    # relaxation, never a tighter one (why the README measures relaxed against integral)
    fixed_lp, _ = _solve(data, modules=fixed_ud, relax=True)
    chosen_lp, _ = _solve(data, modules=modules, sizes="chosen", fix=counts, relax=True)
    assert chosen_lp.objective <= fixed_lp.objective + 1e-6
    assert fixed_lp.objective <= fixed.objective + 1e-6


def test_a_rebuild_on_a_known_structure_refuses_a_changed_one():
    """The cheap path takes row shapes from the first build: a window of another shape is
    refused, not silently mis-assembled."""
    data = _data([0.3, 0.6])
    ud = unit_data((BESS,), [1], data.dt_h * 3600, data.periods)
    sz = Sizes.fixed(ud)

    def build(b, d):
        b.add_cost(assemble(b, _net(), ud, sz, d, idle_state(ud, d), WEIGHTS, ModelOptions())[1])
        return b.build()

    first = ArrayBuilder()
    milp = build(first, data)
    again = build(ArrayBuilder(milp.A, first.row_shapes), data)
    np.testing.assert_array_equal(again.row_lo, milp.row_lo)
    np.testing.assert_array_equal(again.row_hi, milp.row_hi)
    longer = _data([0.3, 0.6, 0.2])
    ud = unit_data((BESS,), [1], longer.dt_h * 3600, longer.periods)
    with pytest.raises(ValueError, match="structure changed"):
        build(ArrayBuilder(milp.A, first.row_shapes), longer)
