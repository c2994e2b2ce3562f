"""Stage-I planner: a hand-solvable instance in every mode, the reformulations against their
limits and against the primal inner problem, and the first-stage limits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_dispatch import _two_bus

from simgrid.config import Ambiguity, HostingLimit, PlanningConfig
from simgrid.errors import ConfigError
from simgrid.fcm import Catalogue, Supplier
from simgrid.optimization.blocks import ScenarioData, Weights
from simgrid.optimization.builder import ArrayBuilder
from simgrid.optimization.extensive import ExtensiveForm
from simgrid.optimization.lindistflow import LinDistFlow
from simgrid.optimization.planner import PlanningProblem
from simgrid.optimization.risk import (
    RiskSpec,
    define_risk,
    nominal_risk,
    worst_case,
)
from simgrid.optimization.solve import solve
from simgrid.optimization.stage1 import plan
from simgrid.units.fast_gen import GenModule

from reference import tv_worst_expectation

REL_TOL = 1e-6  # dual against primal worst case
COST_TOL = 1e-6  # $ on hand-computed objectives

# One load bus; a deficit (AI load above the schedule) the upstream grid does not follow:
# 1,000 $/MWh of imbalance for one hour. Generators of 1 MW from two suppliers: 2 at $300
# (annualised: rate 0, one-year life) and 5 at $700. Scenario A (p = 0.5): no deficit;
# scenario B (p = 0.5): 4 MW. Each module is worth $1,000 x P(B, worst case) a year.
GEN = GenModule("gen", "fast_gen", p_mw=1.0, ramp_mw_per_min=60.0)
CATALOGUE = Catalogue(
    (GEN,), (Supplier("cheap", "gen", 2, 300.0, 0), Supplier("dear", "gen", 5, 700.0, 0)), "<hand>"
)
WEIGHTS = Weights(voll=10_000.0, imbalance=1_000.0, voltage=1e5, restoration=0.0)


def _window(deficit: float) -> ScenarioData:
    return ScenarioData(
        dt_h=1.0,
        demand_p=np.array([[0.0, 1.0 + deficit]]),
        demand_q=np.zeros((1, 2)),
        conv_p=np.array([[0.0, 1.0]]),
        ai_p=np.array([[deficit]]),
        energised=np.ones((1, 2), bool),
        line_active=np.ones((1, 1), bool),
        schedule=np.array([1.0]),
        band=0.0,
        ramp=0.0,
        v2_min=0.81,
        v2_max=1.21,
    )


def _problem(deficits=(0.0, 4.0), p=(0.5, 0.5), catalogue=CATALOGUE, **cfg) -> PlanningProblem:
    base = dict(
        candidates=(1,),
        discount_rate=0.0,
        lifetime_years=1.0,
        days_per_year=1.0,
        alpha=0.5,
        beta=0.0,
        time_limit_s=60.0,
        mip_gap=0.0,
        recourse="windows",  # hand-solvable windows (operation recourse: tests/test_operation.py)
    )
    net = LinDistFlow.of(_two_bus(), 1e6).with_campuses(np.array([1]), np.zeros(1))
    d = np.abs(np.subtract.outer(np.arange(len(deficits)), np.arange(len(deficits)))).astype(float)
    return PlanningProblem(
        net,
        catalogue,
        (1,),
        tuple((_window(x),) for x in deficits),
        np.array(p),
        d,
        WEIGHTS,
        PlanningConfig(**{**base, **cfg}),
    )


def _bought(result) -> dict[str, int]:
    return {p.supplier: p.count for p in result.purchases}


HAND = [
    # (mode, radius, beta, purchases, objective): reasoning in the module comment
    (Ambiguity.NONE, 0.0, 0.0, {"cheap": 2}, 600 + 0.5 * 2000),
    (Ambiguity.NONE, 0.0, 1.0, {"cheap": 2, "dear": 2}, 2000),  # CVaR_0.5 = scenario B
    (Ambiguity.NONE, 0.0, 0.5, {"cheap": 2, "dear": 2}, 2000),  # 0.5 x 500 + 0.5 x 1000 > 700
    (Ambiguity.TOTAL_VARIATION, 0.1, 0.0, {"cheap": 2}, 600 + 0.6 * 2000),
    (Ambiguity.TOTAL_VARIATION, 0.3, 0.0, {"cheap": 2, "dear": 2}, 2000),  # 800 > 700
    (Ambiguity.WASSERSTEIN, 0.1, 0.0, {"cheap": 2}, 600 + 0.6 * 2000),  # distance 1
    (Ambiguity.WASSERSTEIN, 0.3, 0.0, {"cheap": 2, "dear": 2}, 2000),
    (Ambiguity.DETERMINISTIC, 0.0, 0.0, {"cheap": 2}, 600),  # the mean deficit, 2 MW
]


@pytest.mark.parametrize("method", ["extensive", "benders"])
@pytest.mark.parametrize(("mode", "radius", "beta", "bought", "objective"), HAND)
def test_hand_solvable_allocation_in_every_mode(method, mode, radius, beta, bought, objective):
    if mode is Ambiguity.DETERMINISTIC:
        problem = _problem(deficits=(2.0,), p=(1.0,), ambiguity=mode, method=method)
    else:
        problem = _problem(ambiguity=mode, radius=radius, beta=beta, method=method)
    r = plan(problem)
    assert _bought(r) == bought
    assert r.objective == pytest.approx(objective, abs=COST_TOL)
    assert r.investment == pytest.approx(300 * bought.get("cheap", 0) + 700 * bought.get("dear", 0))


def _random_problem(seed: int, **cfg) -> PlanningProblem:
    rng = np.random.default_rng(seed)
    deficits = tuple(rng.uniform(0.0, 4.0, 6).round(2))
    p = tuple(rng.dirichlet(np.ones(6)))
    return _problem(deficits, p, **cfg)


@pytest.mark.parametrize("mode", [Ambiguity.WASSERSTEIN, Ambiguity.TOTAL_VARIATION])
def test_zero_radius_reproduces_saa_mean_cvar(mode):
    saa = plan(_random_problem(1, beta=0.5, alpha=0.8))
    dro = plan(_random_problem(1, beta=0.5, alpha=0.8, ambiguity=mode, radius=0.0))
    assert dro.objective == pytest.approx(saa.objective, rel=REL_TOL)
    assert _bought(dro) == _bought(saa)


def test_beta_zero_is_risk_neutral_and_alpha_to_zero_turns_cvar_into_the_mean():
    neutral = plan(_random_problem(2, beta=0.0))
    assert neutral.objective == pytest.approx(
        neutral.investment + neutral.expected_recourse, rel=REL_TOL
    )
    mean_like = plan(_random_problem(2, beta=1.0, alpha=1e-9))
    assert mean_like.objective == pytest.approx(neutral.objective, rel=REL_TOL)
    assert _bought(mean_like) == _bought(neutral)


@pytest.mark.parametrize(
    ("mode", "radius"), [(Ambiguity.WASSERSTEIN, 0.4), (Ambiguity.TOTAL_VARIATION, 0.15)]
)
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_dual_worst_case_equals_the_primal_inner_problem(mode, radius, beta):
    # the extensive form's risk terms at its optimum are the dual of the inner maximisation;
    # the reported worst case is that maximisation solved directly over distributions
    r = ExtensiveForm(
        _random_problem(3, ambiguity=mode, radius=radius, beta=beta, alpha=0.8)
    ).solve()
    dual = r.objective - r.investment
    assert r.worst_case_risk == pytest.approx(dual, rel=REL_TOL)
    if mode is Ambiguity.TOTAL_VARIATION and beta == 0.0:
        closed = tv_worst_expectation(r.recourse, r.probability, radius)
        assert r.worst_case_risk == pytest.approx(closed, rel=REL_TOL)


def _transport_cost(p: np.ndarray, q: np.ndarray, d: np.ndarray) -> float:
    """The cheapest plan moving p to q (type-1 Wasserstein distance)."""
    n = len(p)
    b = ArrayBuilder()
    plan_ = b.add_vars((n, n), 0.0)
    b.add_sum_rows(plan_, lo=p, hi=p)
    b.add_sum_rows(plan_.T, lo=q, hi=q)
    b.add_cost([(d, plan_)])
    return solve(b.build(), time_limit_s=10.0, mip_gap=0.0).objective


def test_premium_grows_with_the_radius_and_the_worst_case_lies_in_its_set():
    problem = _random_problem(4, beta=0.5, alpha=0.8)
    h = plan(problem).recourse
    p, d = problem.probability, problem.distance
    for mode in (Ambiguity.WASSERSTEIN, Ambiguity.TOTAL_VARIATION):
        radii = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]
        premium, objective = [], []
        for r in radii:
            spec = RiskSpec(0.8, 0.5, mode, r)
            wc = worst_case(h, p, spec, d)
            premium.append(wc.value - nominal_risk(h, p, spec))
            assert wc.probability.sum() == pytest.approx(1.0)
            if mode is Ambiguity.TOTAL_VARIATION:
                assert 0.5 * np.abs(wc.probability - p).sum() <= r + 1e-9
            else:
                assert _transport_cost(p, wc.probability, d) <= r + 1e-9
            objective.append(
                plan(replace(problem, cfg=replace(problem.cfg, ambiguity=mode, radius=r))).objective
            )
        assert premium[0] == pytest.approx(0.0, abs=1e-9)
        assert np.all(np.diff(premium) >= -1e-9) and premium[-1] > 0
        assert np.all(np.diff(objective) >= -1e-6)


def test_risk_rows_against_the_closed_form_and_saa_at_fixed_costs():
    rng = np.random.default_rng(5)
    h0, p = rng.uniform(0, 100, 7), rng.dirichlet(np.ones(7))
    for gamma in (0.0, 0.1, 0.3):
        spec = RiskSpec(0.9, 0.0, Ambiguity.TOTAL_VARIATION, gamma)
        b = ArrayBuilder()
        h = b.add_vars(7, h0, h0)
        _, cost = define_risk(b, h, p, spec)
        b.add_cost(cost)
        value = solve(b.build(), time_limit_s=10.0, mip_gap=0.0).objective
        assert value == pytest.approx(tv_worst_expectation(h0, p, gamma), rel=REL_TOL)


def test_allocations_respect_inventories_budget_and_hosting():
    cases = [
        dict(beta=1.0),  # wants 4: inventory of the cheap supplier is 2
        dict(beta=1.0, budget=1500.0),  # 2 x 300 + 1 x 700 = 1300 <= 1500 < 2000
        dict(beta=1.0, hosting_mw=3.0),  # 1 MW modules: at most 3 at the bus
        dict(beta=1.0, hosting=(HostingLimit(1, 1.0),)),
        dict(beta=1.0, max_modules=(("gen", 1),)),
    ]
    expect = [4, 3, 3, 1, 1]
    for kw, n in zip(cases, expect, strict=True):
        r = plan(_problem(**kw))
        bought = _bought(r)
        assert sum(bought.values()) == n, kw
        assert bought.get("cheap", 0) <= 2 and bought.get("dear", 0) <= 5
        spend = 300 * bought.get("cheap", 0) + 700 * bought.get("dear", 0)
        assert spend <= kw.get("budget", np.inf)


def test_a_budget_below_a_mandatory_minimum_is_one_clear_error():
    with pytest.raises(ConfigError, match="no allocation meets the limits"):
        plan(_problem(budget=500.0, min_modules=(("gen", 2),)))


PLAN_CONFIG = """
[run]
name = "plan"
horizon_s = 600
dt_s = 60
[network]
case = "case33bw"
load_profile = "diurnal"
[upstream]
band_mw = 0.2
ramp_mw_per_min = 0.05
[dispatch]
catalogue = "{catalogue}"
[planning]
candidates = [2, 8, 17]
period_s = 3600
time_limit_s = 120
{extra}
"""


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from simgrid.cli import main

    from conftest import REPO

    out = tmp_path_factory.mktemp("plan") / "set.nc"
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    argv = ["scenarios", str(spec), "--n", "40", "--seed", "3", "--reduce", "4"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return out


def _plan_config(tmp_path, extra: str = ""):
    from conftest import REPO

    cfg = tmp_path / "plan.toml"
    cfg.write_text(
        PLAN_CONFIG.format(catalogue=REPO / "configs" / "fcm_catalogue.toml", extra=extra)
    )
    return cfg


def test_allocate_writes_the_allocation_that_run_reads(small_set, tmp_path, capsys):
    import xarray as xr

    from simgrid.cli import main

    cfg, out = _plan_config(tmp_path), tmp_path / "alloc.nc"
    argv = ["allocate", str(cfg), "--scenarios", str(small_set), "--out", str(out)]
    assert main([*argv, "--ambiguity", "total_variation", "--radius", "0.2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "VSS against the deterministic plan" in printed
    with xr.open_dataset(out) as ds:
        for name in ("module", "bus", "count", "supplier"):
            assert ds[name].dims == ("unit",)
        for name in ("probability", "worst_case_probability", "recourse_cost"):
            assert ds[name].dims == ("scenario",) and ds.sizes["scenario"] == 4
        for name in (
            "investment_cost",
            "expected_recourse",
            "cvar",
            "var",
            "worst_case_risk",
            "objective",
            "vss",
            "worst_case_premium",
        ):
            assert ds[name].dims == () and ds[name].attrs["units"] == "$/yr"
        assert ds.attrs["ambiguity"] == "total_variation" and ds.attrs["radius"] == 0.2
        assert ds.attrs["scenarios_file"] == str(small_set)
        p, q = ds["probability"].to_numpy(), ds["worst_case_probability"].to_numpy()
        assert q.sum() == pytest.approx(1.0) and 0.5 * np.abs(q - p).sum() <= 0.2 + 1e-9
        assert float(ds["objective"]) == pytest.approx(
            float(ds["investment_cost"]) + float(ds["worst_case_risk"]), rel=0.02
        )
        assert int(ds["count"].sum()) > 0
    # the file is the allocation `run` and `validate` dispatch
    assert main(["validate", str(cfg), "--allocation", str(out)]) == 0
    assert "flexible unit" in capsys.readouterr().out
    run_out = tmp_path / "run.nc"
    argv = ["run", str(cfg), "--allocation", str(out), "--out", str(run_out), "--no-progress"]
    assert main(argv) == 0
    with xr.open_dataset(run_out) as run:
        assert run.sizes["unit"] >= 1 and run.attrs["allocation_source"] == str(out)


def test_an_infeasible_plan_is_one_line_exit_2(small_set, tmp_path, capsys):
    from simgrid.cli import main

    cfg = _plan_config(tmp_path, 'budget = 1e5\n[planning.min_modules]\n"bess-0.5" = 3')
    out = tmp_path / "alloc.nc"
    argv = ["allocate", str(cfg), "--scenarios", str(small_set), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "planning" in err[0] and "no allocation meets" in err[0]
    assert not out.exists()
