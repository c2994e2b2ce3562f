"""Scenario generator: statistics on large samples, determinism, reduction, CLI, end to end."""

from __future__ import annotations

import functools
import math
import textwrap
import tomllib

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from simgrid.aiload import campus_load_mw
from simgrid.cli import main
from simgrid.profiles import campus_profile
from simgrid.scenarios.dists import Dist, Family
from simgrid.scenarios.reduce import reduce_set, with_distance
from simgrid.scenarios.sample import sample_scenario, scenario_rng
from simgrid.scenarios.scenarioset import (
    EventTable,
    ai_load_curves,
    build_context,
    generate,
    write_set,
)
from simgrid.scenarios.spec import load_spec, parse_spec
from simgrid.stats import quantile

from conftest import MINIMAL, REPO

N_STAT = 3000  # scenarios for statistical tests
KS_ALPHA = 0.001  # reject a distribution only on overwhelming evidence (seeded: not flaky)
Z = 4.0  # half-width of confidence intervals, in standard errors

SPEC = """
[spec]
name = "stat"
horizon_s = 86400
dt_s = 300
[network]
case = "case33bw"
load_profile = "flat"
[[campus]]
name = "a"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.3
[[campus]]
name = "b"
bus = 23
p_nom_mw = 1.0
base_utilisation = 0.5
[[shock]]
kind = "ramp_up"
campuses = ["a"]
rate_per_day = 3.0
magnitude = { dist = "triangular", low = 0.1, mode = 0.2, high = 0.5 }
ramp_rate = { dist = "lognormal", median = 0.5, sigma = 0.8, low = 0.05, high = 5.0 }
duration_s = { dist = "exponential", mean = 3600, low = 600, high = 20000 }
[[shock]]
kind = "trip"
campuses = ["b"]
count = 1
fraction = { dist = "normal", mean = 0.8, std = 0.2, low = 0.4, high = 1.0 }
duration_s = { dist = "uniform", low = 300, high = 7200 }
[[shock]]
kind = "coincident"
shock = "trip"
campuses = ["a", "b"]
count = 1
correlation = 0.8
fraction = { dist = "uniform", low = 0.2, high = 1.0 }
duration_s = 600
[[shock]]
kind = "line_outage"
rate_per_day = 0.5
lines = [5, 27]
duration_s = { dist = "lognormal", median = 3600, sigma = 0.5, low = 600, high = 36000 }
"""


def _spec(text: str = SPEC, tmp_path=None):
    text = textwrap.dedent(text)
    return parse_spec(tomllib.loads(text), source="spec.toml", text=text, base_dir=REPO)


@functools.cache
def _stat_set():
    spec = _spec()
    ctx = build_context(spec)
    return spec, ctx, generate(ctx, 11, N_STAT)


def _events(ds, kind, campus=None):
    k = ds["event_kind"].to_numpy().astype(str)
    mask = k == kind
    if campus is not None:
        mask &= ds["event_campus"].to_numpy().astype(str) == campus
    return mask


def test_poisson_counts_match_the_rate_and_fixed_counts_are_exact():
    spec, _, ds = _stat_set()
    ramp = _events(ds, "ramp_up").sum(axis=1)
    lam = 3.0
    assert abs(ramp.mean() - lam) < Z * math.sqrt(lam / N_STAT)
    # dispersion test: (N-1) s^2 / mean ~ chi2(N-1) for Poisson counts
    chi2 = (N_STAT - 1) * ramp.var(ddof=1) / ramp.mean()
    assert (
        stats.chi2.sf(chi2, N_STAT - 1) > KS_ALPHA and stats.chi2.cdf(chi2, N_STAT - 1) > KS_ALPHA
    )
    outages = _events(ds, "line_outage").sum(axis=1)
    assert abs(outages.mean() - 0.5) < Z * math.sqrt(0.5 / N_STAT)
    trips_b = _events(ds, "trip", "b") & (ds["event_group"].to_numpy() < 0)
    assert (trips_b.sum(axis=1) == 1).all()
    assert set(np.unique(ds["event_line"].to_numpy())) <= {-1, 5, 27}


def _check(samples: np.ndarray, dist: Dist) -> None:
    assert samples.min() >= dist.low and samples.max() <= dist.high
    assert stats.kstest(samples, dist.cdf).pvalue > KS_ALPHA


def test_magnitudes_ramp_rates_and_durations_follow_their_distributions():
    spec, _, ds = _stat_set()
    ramp = spec.shocks[0]
    mask = _events(ds, "ramp_up")
    mag_mw = ds["event_magnitude_mw"].to_numpy()[mask]
    _check(mag_mw / 2.0, ramp.magnitude)  # fraction of campus a's 2 MW
    rate_mw_per_min = mag_mw / ds["event_ramp_s"].to_numpy()[mask] * 60
    _check(rate_mw_per_min, ramp.ramp_rate)
    _check(ds["event_duration_s"].to_numpy()[mask], ramp.duration)
    trip = spec.shocks[1]
    tmask = _events(ds, "trip", "b") & (ds["event_group"].to_numpy() < 0)
    _check(ds["event_fraction"].to_numpy()[tmask], trip.fraction)
    _check(ds["event_duration_s"].to_numpy()[tmask], trip.duration)
    assert (ds["event_ramp_s"].to_numpy()[tmask] == 0).all()  # no ramp rate: instantaneous
    omask = _events(ds, "line_outage")
    _check(ds["event_duration_s"].to_numpy()[omask], spec.shocks[3].duration)
    starts = ds["event_start_s"].to_numpy()[mask]
    _check(starts, Dist(Family.UNIFORM, 0.0, 86400.0))


def test_coincident_shocks_show_the_configured_correlation():
    spec, _, ds = _stat_set()
    group = ds["event_group"].to_numpy()
    frac = ds["event_fraction"].to_numpy()
    campus = ds["event_campus"].to_numpy().astype(str)
    coinc = group >= 0
    a = np.array([frac[i][coinc[i] & (campus[i] == "a")][0] for i in range(N_STAT)])
    b = np.array([frac[i][coinc[i] & (campus[i] == "b")][0] for i in range(N_STAT)])
    rho = spec.shocks[2].correlation
    expected = 6 / math.pi * math.asin(rho / 2)  # Spearman of a Gaussian copula
    se = 0.6325 / math.sqrt(N_STAT)  # large-sample standard error of Spearman's rho
    assert abs(stats.spearmanr(a, b).statistic - expected) < Z * se + 0.01
    _check(a, spec.shocks[2].fraction)
    starts = ds["event_start_s"].to_numpy()
    same = [np.ptp(starts[i][coinc[i]]) for i in range(N_STAT)]
    assert max(same) == 0.0  # no jitter configured: the campuses trip together


def test_scenario_i_regenerated_alone_equals_scenario_i_in_the_set(tmp_path):
    spec, ctx, ds = _stat_set()
    path = write_set(ds.isel(scenario=slice(0, 50)), tmp_path / "s.nc")
    with xr.open_dataset(path) as saved:
        table = EventTable.of(saved)
    for i in (0, 7, 49):
        assert sample_scenario(spec, 11, i, ctx.in_service_lines).events == table.events(i)
    # the i-th child of SeedSequence(seed).spawn(n) is the stream of scenario i
    child = np.random.SeedSequence(11).spawn(8)[7]
    assert np.array_equal(np.random.default_rng(child).random(5), scenario_rng(11, 7).random(5))


def test_same_spec_and_seed_give_identical_files(tmp_path):
    spec = load_spec(REPO / "scenarios" / "ieee33_ai.toml")
    ctx = build_context(spec)
    paths = [
        write_set(with_distance(generate(ctx, 3, 40)), tmp_path / f"{k}.nc", ctx=ctx) for k in "ab"
    ]
    with xr.open_dataset(paths[0]) as a, xr.open_dataset(paths[1]) as b:
        xr.testing.assert_identical(a.load(), b.load())
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_materialised_curves_match_the_event_physics(tmp_path):
    spec, ctx, ds = _stat_set()
    path = write_set(ds.isel(scenario=slice(0, 20)), tmp_path / "m.nc", ctx=ctx, chunk=6)
    with xr.open_dataset(path) as saved:
        curves = saved["ai_load_mw"].to_numpy()
        table = EventTable.of(saved)
        assert saved["ai_load_mw"].dims == ("scenario", "time", "campus")
    for i in range(20):
        for k, c in enumerate(spec.campuses):
            direct = campus_load_mw(c, campus_profile(c), table.events(i), ctx.t_s)
            np.testing.assert_allclose(curves[i, :, k], direct, rtol=1e-6, atol=1e-6)
    assert np.allclose(ai_load_curves(ctx, ()), [0.6, 0.5])  # base: utilisation x nameplate


def test_reduction_keeps_probability_mean_and_tail():
    spec = load_spec(REPO / "scenarios" / "ieee33_ai.toml")
    ds = generate(build_context(spec), 1, 2000)
    red = reduce_set(ds, 100, seed=1)
    p = red["probability"].to_numpy()
    assert red.sizes["scenario"] <= 100 and p.sum() == pytest.approx(1.0, abs=1e-12)
    assert "distance" not in red
    np.testing.assert_array_equal(red["feature_scale"], ds["features"].std(axis=0))
    full, kept = ds["features"].to_numpy(), red["features"].to_numpy()
    names = list(ds["feature"].to_numpy().astype(str))
    mean_full, mean_red = full.mean(axis=0), (kept * p[:, None]).sum(axis=0)
    for k, name in enumerate(names):
        tol = 0.25 if name == "islanded_energy_mwh" else 0.05  # outages: 1 % of scenarios
        assert mean_red[k] == pytest.approx(mean_full[k], rel=tol), name
    k = names.index("max_ramp_up_mw_per_min")
    assert quantile(kept[:, k], p, 0.95) == pytest.approx(np.quantile(full[:, k], 0.95), rel=0.05)
    # medoids are real scenarios: their features are the full set's rows
    np.testing.assert_array_equal(kept, full[red["source_index"].to_numpy()])


def test_written_set_stores_no_distance_and_grows_linearly(tmp_path):
    spec, ctx, ds = _stat_set()
    half = generate(ctx, 11, N_STAT // 2)  # its own (shorter) longest scenario
    sizes = []
    for name, s in (("half", half), ("full", ds)):
        path = write_set(with_distance(s), tmp_path / f"{name}.nc")
        with xr.open_dataset(path) as saved:
            assert "distance" not in saved and "scenario_to" not in saved.dims
            np.testing.assert_array_equal(saved["feature_scale"], s["features"].std(axis=0))
            assert saved["event_kind"].to_numpy().astype(str).tolist() == (
                s["event_kind"].to_numpy().astype(str).tolist()
            )
        sizes.append(path.stat().st_size)
    assert ds.sizes["event"] > half.sizes["event"]  # the padding widened: yet linear on disk
    assert sizes[1] < 2.2 * sizes[0], sizes


def test_planner_distance_is_computed_from_the_standardised_features():
    from scipy.spatial.distance import cdist

    from simgrid.allocate import _distance

    spec, ctx, ds = _stat_set()
    red = reduce_set(ds, 30, seed=2)
    z = red["features"].to_numpy() / ds["features"].to_numpy().std(axis=0)  # the full set's
    z[:, ~np.isfinite(z).all(axis=0)] = 0.0
    d = _distance(red)
    np.testing.assert_allclose(d, cdist(z, z), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(d, d.T)
    assert np.all(np.diag(d) == 0) and np.all(d[~np.eye(len(d), dtype=bool)] > 0)
    # a matrix stored by an older version is ignored: every set is measured the same way
    old = red.assign(distance=(("scenario", "scenario_to"), np.ones_like(d)))
    np.testing.assert_array_equal(_distance(old), d)
    assert "distance" not in with_distance(old)


def test_planner_refuses_a_set_too_large_for_its_distance_matrix():
    from simgrid.allocate import _distance
    from simgrid.errors import ConfigError
    from simgrid.scenarios.reduce import MAX_DISTANCE_SCENARIOS

    n = MAX_DISTANCE_SCENARIOS + 1
    rng = np.random.default_rng(0)
    big = xr.Dataset({"features": (("scenario", "feature"), rng.random((n, 6)))})
    big.encoding["source"] = "stress/big.nc"
    with pytest.raises(ConfigError) as err:
        _distance(big)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert "stress/big.nc" in msg and f"{n}" in msg and f"{MAX_DISTANCE_SCENARIOS:,}" in msg
    assert _distance(big.isel(scenario=slice(0, 3))).shape == (3, 3)


BAD_SPECS = [
    ("negative rate", ("rate_per_day = 3.0", "rate_per_day = -1.0"), "shock[0].rate_per_day"),
    (
        "inverted bounds",
        ("low = 0.1, mode = 0.2, high = 0.5", "low = 0.5, mode = 0.2, high = 0.1"),
        "shock[0].magnitude.high",
    ),
    ("unknown campus bus", ("bus = 23", "bus = 230"), "campus[1].bus"),
    ("unknown shock kind", ('kind = "ramp_up"', 'kind = "meteor"'), "shock[0].kind"),
    ("unknown campus in a shock", ('campuses = ["a"]', 'campuses = ["zz"]'), "shock[0].campuses"),
    ("correlation above one", ("correlation = 0.8", "correlation = 1.5"), "shock[2].correlation"),
    (
        "rate and count together",
        ("rate_per_day = 3.0", "rate_per_day = 3.0\ncount = 2"),
        "shock[0].count",
    ),
    ("line that does not exist", ("lines = [5, 27]", "lines = [5, 270]"), "shock[3].lines"),
    (
        "fraction above one",
        (
            "mean = 0.8, std = 0.2, low = 0.4, high = 1.0",
            "mean = 0.8, std = 0.2, low = 0.4, high = 1.5",
        ),
        "shock[1].fraction.high",
    ),
    (
        "unknown distribution",
        ('dist = "exponential"', 'dist = "weibull"'),
        "shock[0].duration_s.dist",
    ),
    ("mode outside the bounds", ("mode = 0.2", "mode = 0.9"), "shock[0].magnitude.mode"),
    (
        "typo in a key",
        ("duration_s = 600", "durration_s = 600"),
        "shock[2].duration_s = None: is required (a number or a { dist = ... } table); "
        "found 'durration_s' instead (a typo?)",
    ),
    ("unknown key", ("correlation = 0.8", "correlation = 0.8\nphase = 2"), "shock[2].phase"),
    (
        "coincident on one campus",
        ('campuses = ["a", "b"]', 'campuses = ["a", "a"]'),
        "shock[2].campuses",
    ),
    ("negative sigma", ("sigma = 0.8", "sigma = -0.8"), "shock[0].ramp_rate.sigma"),
]


@pytest.mark.parametrize(("why", "edit", "fragment"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, why, edit, fragment):
    text = textwrap.dedent(SPEC)
    assert edit[0] in text, why
    spec = tmp_path / "bad.toml"
    spec.write_text(text.replace(edit[0], edit[1], 1))
    out = tmp_path / "set.nc"
    assert main(["scenarios", str(spec), "--n", "3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and str(spec) in err[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


def test_bad_scenario_cli_arguments(tmp_path, capsys):
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    out = str(tmp_path / "s.nc")
    assert main(["scenarios", str(spec), "--n", "0", "--out", out]) == 2
    assert main(["scenarios", str(spec), "--n", "5", "--reduce", "9", "--out", out]) == 2
    assert main(["scenarios", "--plot", str(tmp_path / "none.nc"), "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3
    assert list(tmp_path.iterdir()) == []


def test_generate_plot_and_run_a_scenario_end_to_end(tmp_path, capsys):
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    sset = tmp_path / "set.nc"
    assert (
        main(
            [
                "scenarios",
                str(spec),
                "--n",
                "30",
                "--seed",
                "2",
                "--out",
                str(sset),
                "--reduce",
                "8",
                "--materialise",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["scenarios", "--plot", str(sset), "--out", str(tmp_path / "plots")]) == 0
    for png in ("sample_loads.png", "distributions.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 10_000
    with xr.open_dataset(sset) as ds:
        undescribed = [
            n
            for n, v in ds.data_vars.items()
            if not (v.attrs.get("units") and v.attrs.get("long_name"))
        ] + [n for n, c in ds.coords.items() if not c.attrs.get("long_name")]
        assert undescribed == []
        assert ds.attrs["simgrid_kind"] == "scenario_set" and ds.attrs["network_name"] == "case33bw"
        busiest = int(ds["n_events"].argmax())
        table = EventTable.of(ds)
        curves = ds["ai_load_mw"].to_numpy()[busiest].sum(axis=1)
        grid = ds["time"].to_numpy()
        assert ds.sizes["scenario"] <= 8 and float(ds["probability"].sum()) == pytest.approx(1)
    cfg = tmp_path / "run.toml"
    cfg.write_text(MINIMAL.replace("horizon_s = 3600", "horizon_s = 600"))
    out = tmp_path / "run.nc"
    assert (
        main(
            [
                "run",
                str(cfg),
                "--scenarios",
                str(sset),
                "--index",
                str(busiest),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    with xr.open_dataset(out) as run:
        assert run.attrs["scenario_index"] == busiest
        assert float(run["time"][-1]) < 86400 and float(run.attrs["horizon_s"]) == 86400
        assert list(run["campus"].to_numpy()) == ["dc-east", "dc-mid"]
        assert run.sizes["event"] == len(table.events(busiest))
        # the closed loop's AI load equals the materialised curves on the shared grid
        on_grid = run["ai_load_mw"].sel(time=grid[grid < 86400]).to_numpy()
        np.testing.assert_allclose(on_grid, curves, rtol=1e-6, atol=1e-5)
    assert (
        main(
            [
                "run",
                str(cfg),
                "--scenarios",
                str(sset),
                "--index",
                "99",
                "--out",
                str(tmp_path / "x.nc"),
            ]
        )
        == 2
    )


def test_campus_csv_utilisation_profile_drives_the_base_load(tmp_path):
    (tmp_path / "util.csv").write_text("t_s,factor\n0,0.5\n43200,1.0\n86400,0.5\n")
    text = textwrap.dedent(SPEC).replace(
        'name = "b"\nbus = 23\np_nom_mw = 1.0\nbase_utilisation = 0.5\n',
        'name = "b"\nbus = 23\np_nom_mw = 1.0\nbase_utilisation = 0.5\n'
        'utilisation_profile = "util.csv"\n',
    )
    spec = parse_spec(tomllib.loads(text), source="spec.toml", text=text, base_dir=tmp_path)
    ctx = build_context(spec)
    base = ai_load_curves(ctx, ())
    t = ctx.t_s
    np.testing.assert_allclose(base[:, 1], 0.5 * np.interp(t, [0, 43200, 86400], [0.5, 1, 0.5]))
    np.testing.assert_allclose(base[:, 0], 0.6)
