"""Operation recourse (optimization/operation.py) and one planner model: the chained day's
blocks, judging an allocation file reproduces its figures, the VSS reused or skipped."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import xarray as xr
from test_planner import _plan_config, small_set  # noqa: F401  (the module's scenario set)

from simgrid.allocate import _problem, judge, read_purchases
from simgrid.cli import main
from simgrid.config import Ambiguity, load_config
from simgrid.optimization.operation import ChainedDay, OperationPlanner

from conftest import REPO

REL = 1e-6  # judge against the file's figures


@pytest.fixture(scope="module")
def plans(small_set, tmp_path_factory):  # noqa: F811
    """A deterministic plan and an SAA-CVaR plan of the small set, the latter with its VSS
    from the former's file (and the config both were planned with)."""
    folder = tmp_path_factory.mktemp("operation")
    cfg = _plan_config(folder)
    det, saa = folder / "det.nc", folder / "saa.nc"
    base = ["allocate", str(cfg), "--scenarios", str(small_set), "--no-progress"]
    assert main([*base, "--ambiguity", "deterministic", "--out", str(det)]) == 0
    argv = [*base, "--ambiguity", "none", "--beta", "0.5", "--vss-from", str(det)]
    assert main([*argv, "--out", str(saa)]) == 0
    return cfg, det, saa


def test_a_day_is_chained_in_blocks_of_the_lookahead_over_the_whole_day(plans, small_set):  # noqa: F811
    cfg_path, _, _ = plans
    cfg = load_config(cfg_path)
    problem = _problem(cfg, str(small_set), cfg.planning)
    lookahead_s = cfg.dispatch.horizon_steps * cfg.dispatch.redispatch_s
    for blocks in problem.days:
        span = [b.periods * b.dt_h * 3600 for b in blocks]
        assert sum(span) == pytest.approx(86400.0)  # the whole day, outside the shocks too
        assert max(span) <= lookahead_s + 1e-9  # no block sees beyond the lookahead
        periods = {round(b.dt_h * 3600) for b in blocks}
        assert periods <= {cfg.dispatch.redispatch_s, cfg.dt_s}  # finer where it swings


def test_more_storage_never_costs_a_chained_day_more_recourse(plans, small_set):  # noqa: F811
    """A day's chained recourse at growing battery sizes (the same blocks, hot-started): never
    dearer with more, and dearer with none than with some on a day with shocks."""
    cfg_path, _, _ = plans
    cfg = load_config(cfg_path)
    problem = _problem(cfg, str(small_set), cfg.planning)
    planner = OperationPlanner(problem)
    first = planner.first
    day = ChainedDay(problem, first, problem.days[0], cfg.planning.days_per_year)
    k = [m.name for m, _ in first.units].index("bess-0.5")
    costs = []
    for n in (0, 1, 2):
        sizes = np.zeros(len(first.units))
        sizes[k] = n
        costs.append(day.cost(sizes, 60.0))
    assert costs[0] >= costs[1] - 1e-6 >= costs[2] - 2e-6
    assert costs[0] > costs[2]


@dataclass(eq=False)
class _Recorded(ChainedDay):
    """A chained day that keeps each solved block: (its data, handles, solve result)."""

    solved: list = field(default_factory=list)

    def _block(self, k, data, ud, sizes, start):
        model, hd = super()._block(k, data, ud, sizes, start)
        solved = self.solved

        class _Keeping:
            def solve(self, time_limit_s):
                res = model.solve(time_limit_s)
                solved.append((data, hd, res))
                return res

        return _Keeping(), hd


def _day_with(plans, small_set, counts: dict[str, int], day: int = 0):  # noqa: F811
    """Scenario `day`'s chained day at these module counts: its cost and its solved blocks."""
    cfg = load_config(plans[0])
    problem = _problem(cfg, str(small_set), cfg.planning)
    first = OperationPlanner(problem).first
    sizes = np.zeros(len(first.units))
    for name, n in counts.items():
        sizes[[m.name for m, _ in first.units].index(name)] = n
    recorded = _Recorded(problem, first, problem.days[day], cfg.planning.days_per_year)
    return recorded.cost(sizes, 60.0), recorded, problem, first, sizes


def test_a_chained_day_costs_what_a_run_pays_not_its_regulariser(plans, small_set):  # noqa: F811
    """The restoration terms steer each block (storage back to its target, rebound owed) but
    a run's cost leaves them out: the day's cost is the blocks' objectives less exactly what
    those columns (read by family, not through the terms) were charged."""
    cost, day, problem, *_ = _day_with(plans, small_set, {"bess-0.5": 2, "dr-campus": 1})
    rest = problem.weights.restoration
    charged, objective = 0.0, 0.0
    for data, hd, res in day.solved:
        st, dr = hd.of("storage"), hd.of("dr")
        steering = res.x[st.dev_up].sum() + res.x[st.dev_dn].sum() + res.x[dr.owed].sum()
        charged += day.scale * rest * data.dt_h * steering
        objective += res.objective
    assert charged > 1e-3 * objective  # the day does steer: the test can tell the two apart
    assert cost == pytest.approx(objective - charged, rel=1e-9)


def test_a_chained_days_generators_run_as_the_plant_runs_them(plans, small_set):  # noqa: F811
    """Integral commitment, the minimum output whenever on, and the minimum up and down times
    held across the blocks' boundaries as across dispatch calls (each unit's commitment over
    the whole day, block after block)."""
    _, day, problem, first, sizes = _day_with(plans, small_set, {"gen-0.5": 2}, day=3)
    k = [m.name for m, _ in first.units].index("gen-0.5")
    module = first.units[k][0]
    on, p, step_s = [], [], []
    for data, hd, res in day.solved:
        g = hd.of("fast_gen")
        on.append(res.x[g.u][0])
        p.append(res.x[g.p][0])
        step_s.append(np.full(data.periods, data.dt_h * 3600))
    on, p, step_s = np.concatenate(on), np.concatenate(p), np.concatenate(step_s)
    np.testing.assert_allclose(on, np.round(on), atol=1e-6)
    assert on.sum() > 0 and np.any(np.diff(on) < -0.5)  # the day starts and stops the unit
    committed = on > 0.5
    assert np.all(p[committed] >= module.p_min_mw * sizes[k] - 1e-6)
    assert np.all(p[~committed] <= 1e-6)
    # every run of on (off) periods after a change lasts at least min up (down), but the last
    change = np.flatnonzero(np.diff(committed.astype(int))) + 1
    bounds = [*change, len(committed)]
    for a, b in zip(bounds[:-2], bounds[1:-1], strict=True):
        held_s = step_s[a:b].sum()
        least = module.min_up_s if committed[a] else module.min_down_s
        assert held_s >= least - 1e-6, (a, b, committed[a], held_s)


def test_a_chained_days_demand_response_is_on_or_off(plans, small_set):  # noqa: F811
    """DR in a planned day as in the plant: active or not in every period (never part-way),
    curtailing only while active and paying back only while not."""
    cfg = load_config(plans[0])
    problem = _problem(cfg, str(small_set), cfg.planning)
    for day in range(len(problem.days)):
        _, recorded, *_ = _day_with(plans, small_set, {"dr-campus": 1}, day=day)
        curtailed = 0.0
        for _, hd, res in recorded.solved:
            d = hd.of("dr")
            active, curtail, payback = res.x[d.active[0]], res.x[d.curtail[0]], res.x[d.payback[0]]
            np.testing.assert_allclose(active, np.round(active), atol=1e-6)
            assert np.all(curtail[active < 0.5] <= 1e-6)
            assert np.all(payback[active > 0.5] <= 1e-6)
            curtailed += curtail.sum()
        if curtailed > 1e-3:
            return
    pytest.fail("DR curtails on no day of the set")


@pytest.mark.parametrize("started", [2, 12])  # periods on at the block's end (of 12)
def test_a_started_generator_stays_on_its_minimum_up_time_into_the_next_block(started):
    """Min up of 1 h in 5-min periods: a unit started `started` periods before a block's end
    must stay on the 12 - started periods left of it in the next block, and one on the whole
    block after a start in the block before is carried on from there."""
    from simgrid.units.base import Window
    from simgrid.units.fast_gen import FAMILY, GenHandles, GenModule

    period_s, h = 300.0, 12
    gen = GenModule("g", "fast_gen", 1.0, p_min_mw=0.2, min_up_s=3600, min_down_s=3600)
    u = FAMILY.data([gen], [0], period_s, h)
    ids = np.arange(4 * h).reshape(4, 1, h)  # p, u, s, w of one unit
    hd = GenHandles(*ids)
    x = np.zeros(4 * h)
    x[ids[1, 0, h - started :]] = 1.0
    x[ids[0, 0, h - started :]] = 0.2
    window = Window(period_s / 3600, h, np.zeros(h, bool), 0.0)
    rest = FAMILY.idle_start(u, period_s, h)
    first = FAMILY.next_start(rest, x, hd, u, 1, window, u, period_s, h, False)
    np.testing.assert_array_equal(first.u_lb[0], np.arange(h) < h - started)
    assert first.u0[0] == 1.0 and first.p0[0] == pytest.approx(0.2)
    assert first.s_ub.all()  # the delay binds within a block, not at its edge
    # the next block on throughout: it has been on started + 12 periods, past its min up
    x_on = np.zeros(4 * h)
    x_on[ids[1, 0]], x_on[ids[0, 0]] = 1.0, 0.2
    second = FAMILY.next_start(first, x_on, hd, u, 1, window, u, period_s, h, False)
    assert second.since_s[0] == pytest.approx((started + h) * period_s)
    assert not second.u_lb.any()
    # stopped in its last period: it may not start again for its min down
    x_off = x_on.copy()
    x_off[ids[1, 0, -1]], x_off[ids[0, 0, -1]] = 0.0, 0.0
    third = FAMILY.next_start(second, x_off, hd, u, 1, window, u, period_s, h, False)
    np.testing.assert_array_equal(third.u_ub[0], np.arange(h) >= h - 1)


def test_a_day_is_cut_where_an_event_changes_it():
    """Blocks tile the day in whole periods of at most the lookahead; every instant at which
    an event changes the system begins a block flagged as news (at the plant's step before
    it; instants within a step of the last one are the same news), no block has such an
    instant inside it, and only those blocks are news. Swings are resolved in steps."""
    from simgrid.optimization.windows import DayBlocks
    from simgrid.types import Event, EventKind

    ramp = Event(EventKind.RAMP_UP, 37830.5, 7200.0, "a", magnitude_mw=0.3, ramp_s=30.0)
    surge = Event(EventKind.SURGE, 20000.0, 3600.0, "b", magnitude_mw=0.1, ramp_s=900.0)
    swing = Event(EventKind.OSCILLATION, 50000.0, 1000.0, "a", magnitude_mw=0.1, period_s=600.0)
    spans = DayBlocks(3600.0, 300.0, 60.0).spans(86400.0, [ramp, surge, swing])
    starts = [a for a, *_ in spans]
    assert starts[0] == 0.0 and spans[-1][1] == 86400.0
    for (a, b, period, _), nxt in zip(spans, [*starts[1:], 86400.0], strict=True):
        assert b == nxt and 0.0 < b - a <= 3600.0
        assert (b - a) / period == pytest.approx(round((b - a) / period))
        if a < 51000.0 and b > 50000.0:
            assert period == 60.0
    # the ramp's instants 30 s apart are one news; the surge ramps over 15 min: two each way
    news = [20000.0, 20900.0, 24500.0, 25400.0, 37830.5, 45060.5, 50000.0, 51000.0]
    flagged = [a for a, _, _, fresh in spans if fresh]
    assert len(flagged) == len(news)
    for t, a in zip(news, flagged, strict=True):
        assert t - 60.0 < a <= t
    for a, b, *_ in spans:
        assert not any(a + 60.0 <= t < b for t in news)


@pytest.mark.parametrize(("period_s", "fine_s"), [(270.0, 60.0), (300.0, 600.0), (300.0, 45.0)])
def test_a_cut_day_is_tiled_exactly_whatever_its_periods_and_steps(period_s, fine_s):
    """A re-dispatch interval that is no whole number of plant steps (or shorter than one):
    every block is still whole periods, none longer than a step where it is not the
    interval, and the blocks cover the day once (a block's last period past its end would
    count that time twice)."""
    from simgrid.optimization.windows import DayBlocks
    from simgrid.types import Event, EventKind

    ramp = Event(EventKind.RAMP_UP, 37830.5, 7200.0, "a", magnitude_mw=0.3, ramp_s=30.0)
    spans = DayBlocks(12 * period_s, period_s, fine_s).spans(86400.0, [ramp])
    covered = 0.0
    for span in spans:
        n = (span.t1_s - span.t0_s) / span.period_s
        assert n == pytest.approx(round(n)) and round(n) >= 1
        assert span.period_s == period_s or span.period_s <= fine_s
        covered += round(n) * span.period_s
    assert covered == pytest.approx(86400.0)
    assert [s.t1_s for s in spans[:-1]] == [s.t0_s for s in spans[1:]]


def test_a_start_delay_and_a_notice_bind_at_a_block_that_begins_with_news():
    """At an edge on the hour the next block may start a generator or activate DR at once
    (the dispatcher saw it coming with its lookahead); at an event's instant it may not
    before the delay or notice (the dispatcher learns of a step when it happens)."""
    from simgrid.units.base import Window
    from simgrid.units.dr import FAMILY as DR
    from simgrid.units.dr import DrHandles, DrModule
    from simgrid.units.fast_gen import FAMILY as GEN
    from simgrid.units.fast_gen import GenHandles, GenModule

    period_s, h = 300.0, 12
    window = Window(period_s / 3600, h, np.zeros(h, bool), 0.0)
    gen = GenModule("g", "fast_gen", 1.0, p_min_mw=0.2, start_delay_s=600.0)
    u = GEN.data([gen], [0], period_s, h)
    hd, x = GenHandles(*np.arange(4 * h).reshape(4, 1, h)), np.zeros(4 * h)
    rest = GEN.idle_start(u, period_s, h)
    for news, allowed in ((False, np.ones(h)), (True, np.arange(h) >= 2)):
        nxt = GEN.next_start(rest, x, hd, u, 1, window, u, period_s, h, news)
        np.testing.assert_array_equal(nxt.s_ub[0], allowed)
    dr = DrModule("d", "dr", 0.5, notification_s=300.0, energy_mwh=1.0)
    part = DR.data([dr], [0], period_s, h)
    hd_dr, x = DrHandles(*np.arange(5 * h).reshape(5, 1, h)), np.zeros(5 * h)
    idle = DR.absolute(DR.idle_start(part, period_s, h), part, np.ones(1))
    for news, allowed in ((False, np.ones(h)), (True, np.arange(h) >= 1)):
        nxt = DR.next_start(idle, x, hd_dr, part, np.ones(1), window, part, period_s, h, news)
        np.testing.assert_array_equal(nxt.z_ub[0], allowed)


def test_no_chained_block_acts_on_an_event_before_it_happens(plans, small_set):  # noqa: F811
    """In every block that begins with an event, a generator off at its start is not online
    within its start-up delay and DR not active within its notice: the plan meets the step
    as the dispatcher does, not with units started ahead of it."""
    cfg = load_config(plans[0])
    problem = _problem(cfg, str(small_set), cfg.planning)
    counts = {"gen-0.5": 1, "dr-campus": 1}
    for day in range(len(problem.days)):
        _, recorded, _, first, _ = _day_with(plans, small_set, counts, day=day)
        names = [m.name for m, _ in first.units]
        gen = first.units[names.index("gen-0.5")][0]
        dr = first.units[names.index("dr-campus")][0]
        blocks = recorded.solved
        fresh = [k for k in range(1, len(blocks)) if blocks[k][0].news]
        for k in fresh:
            data, hd, res = blocks[k]
            period_s = data.dt_h * 3600
            g, d = hd.of("fast_gen"), hd.of("dr")
            prev_hd, prev = blocks[k - 1][1], blocks[k - 1][2]
            if prev.x[prev_hd.of("fast_gen").u[0, -1]] < 0.5:
                n = math.ceil(gen.start_delay_s / period_s - 1e-9)
                assert np.all(res.x[g.u[0, :n]] < 1e-6)
            if prev.x[prev_hd.of("dr").active[0, -1]] < 1e-6:
                n = math.ceil(dr.notification_s / period_s - 1e-9)
                assert np.all(res.x[d.curtail[0, :n]] < 1e-6)
        if fresh:
            return
    pytest.fail("no day of the set has an event")


def test_judge_reproduces_the_allocation_file(plans, small_set):  # noqa: F811
    cfg_path, _, saa = plans
    cfg = load_config(cfg_path)
    planning = replace(cfg.planning, ambiguity=Ambiguity.NONE, beta=0.5)
    with xr.open_dataset(saa) as ds:
        purchases = read_purchases(str(saa), cfg, key="test")
        r = judge(cfg, str(small_set), planning, purchases)
        assert r.objective == pytest.approx(float(ds["objective"]), rel=REL)
        assert r.expected_recourse == pytest.approx(float(ds["expected_recourse"]), rel=REL)
        assert r.cvar == pytest.approx(float(ds["cvar"]), rel=REL)
        np.testing.assert_allclose(r.recourse, ds["recourse_cost"].to_numpy(), rtol=REL)


@pytest.mark.slow  # two more plans of the small set (one solves the deterministic plan again)
def test_the_vss_reused_from_a_file_equals_the_vss_solved(plans, small_set, capsys):  # noqa: F811
    cfg_path, det, saa = plans
    solved = saa.parent / "solved.nc"
    argv = ["allocate", str(cfg_path), "--scenarios", str(small_set), "--no-progress"]
    argv += ["--ambiguity", "none", "--beta", "0.5", "--out", str(solved)]
    assert main(argv) == 0
    skipped = saa.parent / "skipped.nc"
    assert main([*argv[:-1], str(skipped), "--no-vss"]) == 0
    with xr.open_dataset(saa) as a, xr.open_dataset(solved) as b, xr.open_dataset(skipped) as c:
        assert float(a["vss"]) == pytest.approx(float(b["vss"]), rel=REL, abs=1e-6)
        assert a.attrs["vss_source"].endswith(str(det))
        assert math.isnan(float(c["vss"])) and "not computed" in c.attrs["vss_source"]
        assert float(c["objective"]) == pytest.approx(float(b["objective"]), rel=REL)


def test_a_vss_file_of_other_scenarios_is_one_line(plans, tmp_path, capsys):  # noqa: F811
    cfg_path, det, _ = plans
    other = tmp_path / "other.nc"  # another draw: not the set the deterministic plan used
    spec = str(REPO / "scenarios" / "ieee33_ai.toml")
    argv = ["scenarios", spec, "--n", "6", "--seed", "9", "--reduce", "4"]
    assert main([*argv, "--out", str(other), "--no-progress"]) == 0
    out = tmp_path / "a.nc"
    run = ["allocate", str(cfg_path), "--scenarios", str(other), "--vss-from", str(det)]
    assert main([*run, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scenarios_sha256" in err and not out.exists()
