"""`make_report`: plots and a Markdown summary from result files alone, for each kind of file
(synthetic datasets, plus one short real run), and its one-line errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from simgrid import stats
from simgrid.errors import ConfigError
from simgrid.metrics import (
    event_windows,
    step_durations_s,
    trapezoid,
    trapezoid_phases,
    with_metrics,
)
from simgrid.ncio import write_dataset
from simgrid.report import feeder_layout, fmt, grid_layout, make_report, timeseries_panels

from conftest import MINIMAL, REPO, config_from_toml

PNG_MIN_BYTES = 10_000  # a drawn figure, not an empty canvas
DT = 60.0
HORIZON = 7200.0


# --- synthetic datasets ----------------------------------------------------------------------


def _ramp(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    return np.clip((t - t0) / (t1 - t0), 0.0, 1.0)


def run_dataset(units: bool = True) -> xr.Dataset:
    """A two-hour run on a 6-bus feeder (0-1-2-3 and 1-4-5, tie 3-5 open) with a campus at
    bus 3: a ramp whose deficit degrades over 5 minutes, holds 15 and recovers over 5 (event
    0), then line 1-4 out for 20 minutes, islanding buses 4 and 5 (event 1). Metrics by
    `simgrid.metrics.with_metrics`, so the report is checked against the real definitions."""
    t = np.arange(0.0, HORIZON, DT)
    n_t, n_bus = len(t), 6
    from_bus, to_bus = np.array([0, 1, 2, 1, 4, 3]), np.array([1, 2, 3, 4, 5, 5])
    in_service = np.ones((n_t, 6), dtype=bool)
    in_service[:, 5] = False  # the tie
    out = (t >= 4200) & (t < 5400)
    in_service[out, 3] = False
    bus_load = np.array([0.0, 0.3, 0.3, 0.2, 0.2, 0.2])
    campus = 0.5 + 1.0 * _ramp(t, 1200, 1500) * (t < 3000)
    demand_bus = np.tile(bus_load, (n_t, 1))
    demand_bus[:, 3] += campus
    deficit = 0.6 * (_ramp(t, 1500, 1800) - _ramp(t, 2700, 3000))
    shed = np.zeros((n_t, n_bus))
    shed[:, 3] = deficit
    energised = np.ones((n_t, n_bus), dtype=bool)
    energised[out, 4:] = False
    islanded = np.where(out, demand_bus[:, 4:].sum(axis=1), 0.0)
    unserved = deficit + islanded
    vm = 1.0 - 0.015 * np.arange(n_bus)[None, :] - 0.04 * _ramp(t, 1200, 1500)[:, None]
    vm = np.where(energised, vm, np.nan)
    demand = demand_bus.sum(axis=1)
    schedule = bus_load.sum() + 0.5 + 0.02 * np.sin(t / 3600)
    imbalance = np.clip(demand - unserved - schedule, -0.3, 0.3) * (np.abs(t - 1350) < 300)
    data = {
        "ai_load_mw": ("time", campus, "MW"),
        "campus_load_mw": (("time", "campus"), campus[:, None], "MW"),
        "demand_mw": ("time", demand, "MW"),
        "import_mw": ("time", demand - unserved, "MW"),
        "import_schedule_mw": ("time", schedule, "MW"),
        "planned_import_mw": ("time", np.where(t % 300 == 0, demand - unserved, np.nan), "MW"),
        "imbalance_mw": ("time", imbalance, "MW"),
        "unserved_mw": ("time", unserved, "MW"),
        "islanded_mw": ("time", islanded, "MW"),
        "shed_mw": (("time", "bus"), shed, "MW"),
        "uvls_shed_mw": (("time", "bus"), np.zeros((n_t, n_bus)), "MW"),
        "collapse_mw": ("time", np.zeros(n_t), "MW"),
        "pf_converged": ("time", np.ones(n_t, dtype=bool), "1"),
        "vm_pu": (("time", "bus"), vm, "pu"),
        "line_loading_percent": (("time", "line"), np.full((n_t, 6), 40.0), "%"),
        "line_in_service": (("time", "line"), in_service, "1"),
        "energised": (("time", "bus"), energised, "1"),
        "bus_load_mw": ("bus", bus_load, "MW"),
        "bus_demand_mw": (("time", "bus"), demand_bus, "MW"),
        "line_from_bus": ("line", from_bus, "1"),
        "line_to_bus": ("line", to_bus, "1"),
        "campus_bus": ("campus", np.array([3]), "1"),
        "campus_p_nom_mw": ("campus", np.array([2.0]), "MW"),
        "event_kind": ("event", np.array(["ramp_up", "line_outage"]), "1"),
        "event_start_s": ("event", np.array([1200.0, 4200.0]), "s"),
        "event_end_s": ("event", np.array([3000.0, 5400.0]), "s"),
        "event_campus": ("event", np.array(["dc", ""]), "1"),
        "event_line": ("event", np.array([-1, 3]), "1"),
    }
    coords = {
        "time": t,
        "bus": np.arange(n_bus),
        "line": np.arange(6),
        "campus": ["dc"],
        "event": [0, 1],
    }
    if units:
        fcm = np.zeros((n_t, 2))
        fcm[:, 0] = 0.5 * _ramp(t, 1200, 1500) * (t < 3000)
        fcm[:, 1] = 0.25 * out
        data |= {
            "fcm_p_mw": (("time", "unit"), fcm, "MW"),
            "unit_on": (("time", "unit"), (np.abs(fcm) > 0).astype(float), "1"),
            "dr_curtail_mw": (("time", "unit"), np.zeros((n_t, 2)), "MW"),
            "unit_type": ("unit", np.array(["bess", "fast_gen"]), "1"),
            "unit_bus": ("unit", np.array([3, 2], dtype=np.int32), "1"),
            "unit_count": ("unit", np.array([2, 1], dtype=np.int32), "1"),
            "unit_p_mw": ("unit", np.array([1.0, 0.5]), "MW"),
            "unit_e_mwh": ("unit", np.array([2.0, 0.0]), "MWh"),
            "unit_cost_per_mwh": ("unit", np.array([15.0, 150.0]), "$/MWh"),
            "unit_start_cost": ("unit", np.array([0.0, 30.0]), "$"),
        }
        coords["unit"] = ["bess-0.5@3", "gen-0.5@2"]
    ds = xr.Dataset(
        {k: (dims, v, {"units": u, "long_name": k}) for k, (dims, v, u) in data.items()},
        coords=coords,
        attrs={
            "title": "simgrid run synthetic",
            "simgrid_kind": "run",
            "run_name": "synthetic",
            "network": "six-bus",
            "horizon_s": HORIZON,
            "dt_s": DT,
            "dispatch_policy": "RollingDispatcher" if units else "DoNothing",
            "v_min_pu": 0.9,
            "v_max_pu": 1.1,
            "unserved_tol_mw": 1e-3,
            "imbalance_tol_mw": 0.01,
            "recovery_fraction": 0.9,
        },
    )
    ds = with_metrics(ds)
    if units:
        ds["baseline_unserved_energy_mwh"] = xr.DataArray(
            2.5, attrs={"units": "MWh", "long_name": "unserved energy without FCMs"}
        )
    return ds


SUMMARISED = {
    "unserved_energy_mwh": "MWh",
    "imbalance_energy_mwh": "MWh",
    "peak_imbalance_mw": "MW",
    "restoration_time_s": "s",
    "voltage_violation_s": "s",
    "closed_loop_cost": "$",
}


def stress_dataset(n: int, seed: int = 1) -> xr.Dataset:
    """A stress test's combined dataset, shaped like `simgrid.runner.stress.combine`'s: two
    failed episodes, restoration NaN in a few, voltage violations 0 in all."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.5, 1.5, n)
    p /= p.sum()
    status = np.zeros(n, dtype=int)
    status[[1, n - 2]] = 1
    values = {
        "unserved_energy_mwh": rng.lognormal(-3, 1.5, n) * (rng.random(n) < 0.6),
        "imbalance_energy_mwh": rng.lognormal(-1, 1.0, n),
        "peak_imbalance_mw": rng.gamma(2.0, 0.2, n),
        "restoration_time_s": np.where(rng.random(n) < 0.15, np.nan, rng.uniform(60, 9e4, n)),
        "voltage_violation_s": np.zeros(n),
        "closed_loop_cost": rng.lognormal(7, 1.2, n),
    }
    for v in values.values():
        v[status == 1] = np.nan
    ok = status == 0
    table = {m: stats.summary(v[ok], p[ok], (0.95,)) for m, v in values.items()}
    names = list(next(iter(table.values())))
    data = {m: ("scenario", v, {"units": SUMMARISED[m], "long_name": m}) for m, v in values.items()}
    errors = np.where(status == 1, "PowerFlowError: diverged at t = 3600 s", "")
    data |= {
        "probability": ("scenario", p, {"units": "1"}),
        "episode_status": ("scenario", status, {"units": "1"}),
        "episode_error": ("scenario", errors, {"units": "1"}),
        "summary": (
            ("metric", "statistic"),
            np.array([[table[m].get(s, np.nan) for s in names] for m in values]),
            {"units": "as the metric"},
        ),
        "eens_mwh_per_yr": (
            (),
            365 * stats.mean(values["unserved_energy_mwh"][ok], p[ok]),
            {"units": "MWh/yr", "long_name": "expected energy not supplied"},
        ),
        "saifi": ((), 1.25, {"units": "1/yr", "long_name": "IEEE 1366 SAIFI"}),
    }
    return xr.Dataset(
        data,
        coords={"scenario": np.arange(n), "metric": list(values), "statistic": names},
        attrs={
            "title": "simgrid stress test",
            "simgrid_kind": "stress",
            "scenarios_file": "set.nc",
            "config": "ieee33.toml",
            "allocation_file": "",
            "levels": 0.95,
        },
    )


EVAL_METRICS = {
    "unserved_energy_mwh": "MWh",
    "imbalance_energy_mwh": "MWh",
    "restoration_time_s": "s",
    "peak_imbalance_mw": "MW",
    "closed_loop_cost": "$",
}
ALLOCATIONS = ["deterministic", "saa", "saa_cvar", "dro_cvar"]


def evaluation_dataset(n: int = 30) -> xr.Dataset:
    """`simgrid evaluate`'s output as agreed: per (allocation, scenario) metrics, per
    allocation means, CVaR95s and costs (planned recourse NaN for the deterministic plan)."""
    rng = np.random.default_rng(7)
    p = np.full(n, 1.0 / n)
    data: dict[str, tuple] = {"probability": ("scenario", p, {"units": "1"})}
    scale = np.array([3.0, 1.5, 1.0, 0.8])[:, None]
    for m, units in EVAL_METRICS.items():
        v = scale * rng.lognormal(0.0, 1.0, (len(ALLOCATIONS), n))
        data[m] = (("allocation", "scenario"), v, {"units": units, "long_name": m})
        data[f"mean_{m}"] = ("allocation", v @ p, {"units": units})
        cvar = [stats.var_cvar(row, p, 0.95)[1] for row in v]
        data[f"cvar95_{m}"] = ("allocation", np.array(cvar), {"units": units})
    investment = np.array([0.0, 1.2e5, 1.6e5, 2.1e5])
    closed = np.array([9.0e5, 4.0e5, 3.1e5, 2.6e5])
    data |= {
        "investment_per_yr": ("allocation", investment, {"units": "$/yr"}),
        "planned_recourse_per_yr": (
            "allocation",
            np.array([np.nan, 3.5e5, 2.9e5, 2.8e5]),
            {"units": "$/yr"},
        ),
        "closed_loop_recourse_per_yr": ("allocation", closed, {"units": "$/yr"}),
        "total_cost_per_yr": ("allocation", investment + closed, {"units": "$/yr"}),
    }
    return xr.Dataset(
        data,
        coords={"allocation": ALLOCATIONS, "scenario": np.arange(n)},
        attrs={"title": "simgrid evaluation", "simgrid_kind": "evaluation"},
    )


def allocation_dataset() -> xr.Dataset:
    """An allocation file like `simgrid allocate` writes (catalogue text embedded)."""
    rng = np.random.default_rng(3)
    n = 12
    p = np.full(n, 1.0 / n)
    h = rng.lognormal(11, 1.0, n)
    var, cvar = stats.var_cvar(h, p, 0.95)
    scalar = {
        "investment_cost": 152_615.0,
        "expected_recourse": float(h @ p),
        "cvar": cvar,
        "var": var,
        "objective": 152_615.0 + 0.5 * float(h @ p) + 0.5 * cvar,
    }
    data = {
        "module": ("unit", ["bess-0.5", "gen-0.5", "dr-campus", "bess-0.5"]),
        "bus": ("unit", np.array([2, 8, 8, 17], dtype=np.int32)),
        "count": ("unit", np.array([2, 1, 1, 1], dtype=np.int32)),
        "supplier": ("unit", ["cellco", "enginetech", "campus-operator", "cellco"]),
        "unit_cost": ("unit", np.array([3.5e5, 5e5, 2e4, 3.5e5]), {"units": "$"}),
        "probability": ("scenario", p, {"units": "1"}),
        "worst_case_probability": ("scenario", np.r_[p[:-1] * 0.9, p[-1] + 0.1 * (1 - p[-1])]),
        "recourse_cost": ("scenario", h, {"units": "$/yr"}),
    }
    data |= {k: ((), v, {"units": "$/yr", "long_name": k}) for k, v in scalar.items()}
    return xr.Dataset(
        data,
        coords={"unit": np.arange(4), "scenario": np.arange(n)},
        attrs={
            "title": "simgrid FCM allocation (Stage-I)",
            "simgrid_kind": "allocation",
            "ambiguity": "wasserstein",
            "radius": 0.1,
            "alpha": 0.95,
            "beta": 0.5,
            "solver_status": "optimal",
            "catalogue_toml": (REPO / "configs" / "fcm_catalogue.toml").read_text(),
            "planning_candidates": "(2, 5, 8, 17)",
        },
    )


# --- reading the Markdown back ---------------------------------------------------------------


def section(md: str, title: str) -> str:
    """The text of a `## title` section (up to the next `## `)."""
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else None]


def rows(text: str) -> dict[str, list[str]]:
    """Table rows of a Markdown text by their first cell (the first row wins)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            out.setdefault(cells[0], cells)
    return out


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def interval(cell: str) -> tuple[float, float]:
    lo, hi = cell.strip("[]").split(", ")
    return number(lo), number(hi)


def close(cell: str, value: float) -> bool:
    if math.isnan(value):
        return cell == "NaN"
    return number(cell) == pytest.approx(value, rel=1e-3, abs=1e-9)


def check_pngs(files: list[Path], names: list[str]) -> None:
    assert [f.name for f in files] == [*names, "report.md"]
    for f in files[:-1]:
        assert f.stat().st_size > PNG_MIN_BYTES, f
        assert f.read_bytes()[:4] == b"\x89PNG"
    md = files[-1].read_text()
    for name in names:
        assert f"]({name})" in md  # embedded


# --- run -------------------------------------------------------------------------------------


def test_run_report_plots_and_tables_the_metrics(tmp_path):
    ds = run_dataset()
    path = write_dataset(ds, tmp_path / "run.nc")
    files = make_report(path, tmp_path / "out")
    check_pngs(files, ["feeder.png", "timeseries.png", "trapezoid.png"])
    md = files[-1].read_text()
    metrics = rows(section(md, "Metrics"))
    for name in ("unserved_energy_mwh", "imbalance_energy_mwh", "restoration_time_s"):
        assert close(metrics[name][1], float(ds[name])), name
        assert metrics[name][3] == ds[name].attrs["units"]
    # the baseline beside the dispatched value, blank where there is none
    assert close(metrics["unserved_energy_mwh"][2], 2.5)
    assert metrics["fcm_cost"][2] == ""
    assert number(metrics["unserved_energy_mwh"][1]) < 2.5
    events = rows(section(md, "Events"))
    assert close(events["0"][4], float(ds["event_unserved_energy_mwh"][0]))
    assert close(events["1"][8], float(ds["event_served_depth_mw"][1]))
    assert events["1"][1] == "line_outage line 3"
    units = rows(section(md, "Flexible units"))
    assert units["bess-0.5@3"][1:5] == ["bess", "3", "2", "1"]
    # the ramp's window has the most unserved energy: its trapezoid is drawn
    assert "trapezoid of event 0" in md


def test_do_nothing_run_has_no_fcm_panel_and_a_chosen_event(tmp_path):
    ds = run_dataset(units=False)
    labels = [label for label, _ in timeseries_panels(ds)]
    assert labels == [
        "AI load (MW)",
        "import (MW)",
        "imbalance (MW)",
        "unserved load (MW)",
        "|V| (pu)",
    ]
    path = write_dataset(ds, tmp_path / "dn.nc")
    files = make_report(path, tmp_path, event=1)
    check_pngs(files, ["feeder.png", "timeseries.png", "trapezoid.png"])
    md = files[-1].read_text()
    assert "No flexible units" in md and "trapezoid of event 1" in md
    assert "without FCMs" not in md  # no baseline column


def test_trapezoid_phases_reproduce_the_metrics():
    ds = run_dataset()
    t = ds["time"].to_numpy()
    dur = step_durations_s(ds)
    starts, ends = event_windows(ds)
    for e, (s0, s1) in enumerate(zip(starts, ends, strict=True)):
        w = (t >= s0) & (t < s1)
        dw = np.minimum(dur[w], s1 - t[w])
        d = ds["unserved_mw"].to_numpy()[w]
        ph = trapezoid_phases(t[w], d, dw, tol_mw=1e-3, recovery_fraction=0.9)
        trap = trapezoid(t[w], d, dw, tol_mw=1e-3, recovery_fraction=0.9)
        assert ph.depth_mw == pytest.approx(float(ds["event_served_depth_mw"][e]))
        assert ph.recovery_h - ph.deep_h == pytest.approx(trap.degraded_duration_h)
        dt_down = ph.deep_h - ph.onset_h
        phi = math.inf if dt_down == 0 else ph.depth_mw / dt_down
        assert phi == pytest.approx(float(ds["event_served_degradation_rate_mw_per_h"][e]))
        dt_up = ph.done_h - ph.recovery_h
        pi = math.inf if dt_up == 0 else (ph.depth_mw - ph.left_mw) / dt_up
        assert pi == pytest.approx(float(ds["event_served_recovery_rate_mw_per_h"][e]))
    # the ramp degrades over 5 minutes to 0.6 MW and recovers over 5
    assert float(ds["event_served_degradation_rate_mw_per_h"][0]) == pytest.approx(0.6 / (4 / 60))
    assert (
        trapezoid_phases(
            t, np.zeros_like(t), step_durations_s(ds), tol_mw=1e-3, recovery_fraction=0.9
        )
        is None
    )


def test_feeder_layout_is_a_tree_with_branches_on_their_own_rows():
    depth, row = feeder_layout(
        6,
        np.array([0, 1, 2, 1, 4, 3]),
        np.array([1, 2, 3, 4, 5, 5]),
        np.array([True, True, True, True, True, False]),
    )
    assert depth.tolist() == [0, 1, 2, 3, 2, 3]  # the open tie does not shorten 5's path
    assert row.tolist() == [0, 0, 0, 0, 1, 1]
    # a bus reachable only through an open line still gets a place
    depth, row = feeder_layout(3, np.array([0, 1]), np.array([1, 2]), np.array([True, False]))
    assert depth.tolist() == [0, 1, 2] and row.tolist() == [0, 0, 0]


def test_a_meshed_grid_is_drawn_around_its_focus_buses():
    """A ring of 12 buses with a chord: the map shows the buses within two lines in service
    of the focus (an open line does not bring its far end in), neighbours ~1.6 apart."""
    f = np.array([*range(12), 0])
    t = np.array([*(np.arange(12) + 1) % 12, 6])
    on = np.ones(13, dtype=bool)
    on[3] = False  # 3-4 open
    x, y, shown = grid_layout(12, f, t, on, np.array([0]))
    assert np.flatnonzero(shown).tolist() == [0, 1, 2, 5, 6, 7, 10, 11]
    pairs = [(a, b) for a, b in zip(f, t, strict=True) if shown[a] and shown[b]]
    d = [np.hypot(x[a] - x[b], y[a] - y[b]) for a, b in pairs]
    assert np.median(d) == pytest.approx(1.6)
    again = grid_layout(12, f, t, on, np.array([0]))
    assert np.array_equal(again[0], x) and np.array_equal(again[1], y)  # deterministic


# --- stress test -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [6, 400])
def test_stress_report_tables_the_summary(tmp_path, n):
    ds = stress_dataset(n)
    write_dataset(ds, tmp_path / "stress.nc")
    files = make_report(tmp_path, tmp_path / "out")  # the directory holding stress.nc
    check_pngs(files, ["distributions.png"])
    md = files[-1].read_text()
    summary = rows(section(md, "Summary over scenarios"))
    header = summary["metric"]
    col = {h: i for i, h in enumerate(header)}
    for m in SUMMARISED:
        row = summary[m]

        def stat(s, m=m):
            return float(ds["summary"].sel(metric=m, statistic=s))

        assert row[col["units"]] == SUMMARISED[m]
        assert close(row[col["mean"]], stat("mean")), m
        assert close(row[col["p95"]], stat("p95")), m
        assert close(row[col["VaR95"]], stat("var_95")), m
        assert close(row[col["CVaR95"]], stat("cvar_95")), m
        lo, hi = interval(row[col["CVaR95 95 % CI"]])
        assert lo == pytest.approx(stat("cvar_95_ci_low"), rel=1e-3, abs=1e-9)
        assert hi == pytest.approx(stat("cvar_95_ci_high"), rel=1e-3, abs=1e-9)
    reliability = rows(section(md, "Reliability indices"))
    assert close(reliability["eens_mwh_per_yr"][1], float(ds["eens_mwh_per_yr"]))
    assert reliability["eens_mwh_per_yr"][2] == "MWh/yr"
    failed = rows(section(md, "Failed episodes"))
    assert failed["1"][1] == "PowerFlowError: diverged at t = 3600 s"
    assert str(n - 2) in failed
    assert "## Worst episode" not in md


def test_stress_report_includes_the_worst_episode(tmp_path):
    write_dataset(stress_dataset(20), tmp_path / "stress.nc")
    worst = run_dataset()
    worst.attrs["scenario_index"] = 17
    write_dataset(worst, tmp_path / "worst_episode.nc")
    files = make_report(tmp_path / "stress.nc", tmp_path / "out")
    names = ["distributions.png", "worst_feeder.png", "worst_timeseries.png"]
    check_pngs(files, [*names, "worst_trapezoid.png"])
    md = files[-1].read_text()
    assert "## Worst episode (scenario 17)" in md
    assert close(
        rows(section(md, "Metrics"))["unserved_energy_mwh"][1], float(worst["unserved_energy_mwh"])
    )


# --- evaluation and allocation ---------------------------------------------------------------


def test_evaluation_report_tables_every_allocation(tmp_path):
    ds = evaluation_dataset()
    path = write_dataset(ds, tmp_path / "eval.nc")
    files = make_report(path, tmp_path)
    check_pngs(files, ["evaluation.png"])
    table = rows(section(files[-1].read_text(), "Results per allocation"))
    assert table["quantity"][2:] == ALLOCATIONS
    for name in ("total_cost_per_yr", "mean_unserved_energy_mwh", "cvar95_restoration_time_s"):
        assert table[name][1] == ds[name].attrs["units"]
        for k in range(len(ALLOCATIONS)):
            assert close(table[name][2 + k], float(ds[name][k])), (name, k)
    assert table["planned_recourse_per_yr"][2] == "NaN"
    # an evaluation's folder names its evaluation.nc, as a stress test's names its stress.nc
    folder = tmp_path / "evaluation"
    folder.mkdir()
    write_dataset(ds, folder / "evaluation.nc")
    again = make_report(folder, tmp_path / "again")
    assert again[-1].read_text().replace(str(folder / "evaluation.nc"), "X") == files[
        -1
    ].read_text().replace(str(path), "X")


def test_allocation_report_tables_the_modules(tmp_path):
    ds = allocation_dataset()
    path = write_dataset(ds, tmp_path / "alloc.nc")
    files = make_report(path, tmp_path)
    check_pngs(files, ["allocation.png"])
    md = files[-1].read_text()
    modules = [
        r
        for line in section(md, "Modules placed").splitlines()
        if (r := line.split(" | ")) and line.startswith("| bess")
    ]
    assert len(modules) == 2 and modules[0][1:6] == ["bess", "2", "2", "cellco", "1"]  # 2 x 0.5
    costs = rows(section(md, "Costs and risk"))
    assert close(costs["cvar"][1], float(ds["cvar"])) and costs["cvar"][2] == "$/yr"


@pytest.mark.parametrize("kind", ["run", "allocation"])
def test_text_from_the_file_is_never_markup(tmp_path, kind):
    """Attributes, names and messages in a result file are shown as text: a file cannot put
    HTML, a script, a link or table-breaking characters into report.md."""
    script = "<script>alert(1)</script>"
    ds = run_dataset() if kind == "run" else allocation_dataset()
    ds.attrs.update(
        run_name=f"x{script}",
        network=f"[click](http://evil) {script}",
        dispatch_policy="*bold* | cell",
        config_source=f"a`b{script}",
        scenarios_file=script,
        ambiguity=script,
        solver_status="<img src=x onerror=alert(1)>",
    )
    var = "unit_type" if kind == "run" else "module"
    ds[var] = ds[var].copy(data=np.array([script] * ds.sizes["unit"]))
    files = make_report(write_dataset(ds, tmp_path / "r.nc"), tmp_path / "out")
    md = files[-1].read_text()
    outside_code = re.sub(r"`[^`\n]*`", "", md)  # code spans show their content literally
    assert "<" not in outside_code and not re.search(r"(?<!\\)\]\(http", outside_code)
    assert "&lt;script&gt;" in md and md.count("`") % 2 == 0
    if kind == "run":  # emphasis and a cell break shown as text
        assert r"\*bold\* \| cell" in md


# --- errors ----------------------------------------------------------------------------------


def test_other_files_are_refused_in_one_line(tmp_path):
    sset = xr.Dataset({"n_events": ("scenario", [1, 2])}, attrs={"simgrid_kind": "scenario_set"})
    write_dataset(sset, tmp_path / "set.nc")
    (tmp_path / "notes.nc").write_text("not a NetCDF file\n")
    cases = {
        tmp_path / "set.nc": "'scenario_set': must be a simgrid run, stress, evaluation",
        tmp_path / "notes.nc": "cannot be read as NetCDF",
        tmp_path / "none.nc": "file not found",
        tmp_path: "is a directory without stress.nc or evaluation.nc",
    }
    for path, why in cases.items():
        with pytest.raises(ConfigError, match=re.escape(why)) as err:
            make_report(path, tmp_path / "out")
        assert "\n" not in str(err.value)
        assert str(err.value).startswith(str(path))
    run = write_dataset(run_dataset(), tmp_path / "run.nc")
    with pytest.raises(ConfigError, match=r"--event = 5: must be an event of the run \(0..1\)"):
        make_report(run, tmp_path / "out", event=5)


def test_fmt_prints_what_the_tables_need():
    assert [fmt(x) for x in (0.0, 3, 1234.5, 0.0041912, np.nan, np.inf, np.int64(7))] == [
        "0",
        "3",
        "1,234",
        "0.004191",
        "NaN",
        "inf",
        "7",
    ]


# --- a real run ------------------------------------------------------------------------------


def test_report_of_a_short_real_run(tmp_path):
    from simgrid.runner import run

    cfg = config_from_toml(
        MINIMAL.replace("horizon_s = 3600", "horizon_s = 5400")
        + f"""
[dispatch]
policy = "milp"
catalogue = "{REPO / "configs" / "fcm_catalogue.toml"}"
[[allocation]]
module = "bess-0.5"
bus = 17
count = 1
[[campus]]
name = "dc"
bus = 17
p_nom_mw = 2.0
base_utilisation = 0.1
[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 600
magnitude_mw = 1.0
ramp_s = 600
duration_s = 1800
[[event]]
kind = "line_outage"
line = 27
start_s = 3600
duration_s = 900
""",
        tmp_path,
    )
    ds = run(cfg)
    path = write_dataset(ds, tmp_path / "run.nc")
    files = make_report(path, tmp_path / "report")
    check_pngs(files, ["feeder.png", "timeseries.png", "trapezoid.png"])
    md = files[-1].read_text()
    metrics = rows(section(md, "Metrics"))
    for name in ("unserved_energy_mwh", "peak_imbalance_mw", "fcm_cost"):
        assert close(metrics[name][1], float(ds[name])), name
    chosen = int(np.argmax(ds["event_unserved_energy_mwh"].to_numpy()))
    assert f"trapezoid of event {chosen}" in md
    assert "line_outage line 27" in md
