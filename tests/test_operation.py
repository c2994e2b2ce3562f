"""Operation recourse (optimization/operation.py) and one planner model: the chained day's
blocks, judging an allocation file reproduces its figures, the VSS reused or skipped."""

from __future__ import annotations

import math
from dataclasses import replace

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
