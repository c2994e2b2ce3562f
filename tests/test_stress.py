"""Stress tests on dask: statistics against closed forms, resumable and deterministic results,
faults (a killed run, a killed worker, a failing episode, an unwritable output), evaluate."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from simgrid import evaluate, stats
from simgrid.cli import main

from conftest import REPO

CONFIG = str(REPO / "configs" / "ieee33.toml")
N = 5


# ---- statistics against hand-solvable cases ----------------------------------------------


def test_var_and_cvar_of_equally_likely_values():
    x, p = np.arange(1.0, 101.0), np.ones(100)
    var, cvar = stats.var_cvar(x, p, 0.95)
    assert var == 95.0 and cvar == pytest.approx(98.0)  # mean of 96..100


def test_cvar_of_a_two_point_distribution_mixes_the_var_atom():
    x, p = np.array([0.0, 10.0]), np.array([0.9, 0.1])
    assert stats.var_cvar(x, p, 0.95) == (10.0, pytest.approx(10.0))
    var, cvar = stats.var_cvar(x, p, 0.85)  # worst 15 %: 10 % at 10 and 5 % at 0
    assert var == 0.0 and cvar == pytest.approx(10 * 0.1 / 0.15)


def test_weighted_mean_std_and_quantiles():
    x, p = np.array([1.0, 2.0, 4.0]), np.array([0.5, 0.25, 0.25])
    assert stats.mean(x, p) == pytest.approx(2.0)
    assert stats.std(x, p) == pytest.approx(math.sqrt(0.5 * 1 + 0.25 * 0 + 0.25 * 4))
    assert stats.quantile(x, p, 0.5) == 1.0 and stats.quantile(x, p, 0.51) == 2.0


def test_bootstrap_interval_is_seeded_and_narrows_with_more_episodes():
    rng = np.random.default_rng(0)
    small, large = rng.exponential(1.0, 50), rng.exponential(1.0, 5000)
    a = stats.bootstrap(small, np.ones(50), stats.mean)
    assert a == stats.bootstrap(small, np.ones(50), stats.mean)
    b = stats.bootstrap(large, np.ones(5000), stats.mean)
    assert a[0] < 1.0 < a[1] and b[0] < 1.0 < b[1]
    assert (b[1] - b[0]) < 0.3 * (a[1] - a[0])  # width ~ 1/sqrt(n): 10x more -> ~3x narrower


def test_reliability_indices_by_hand():
    # two equally likely days: one quiet, one with 2 MWh lost, 100 customers out for 30 min
    r = stats.reliability(
        np.array([0.0, 2.0]),
        np.array([0.0, 100.0]),
        np.array([0.0, 3000.0]),
        customers=1000.0,
        p=np.ones(2),
        days_per_year=365.0,
    )
    assert r["eens_mwh_per_yr"] == pytest.approx(365.0)
    assert r["lole_days_per_yr"] == pytest.approx(182.5)
    assert r["saifi"] == pytest.approx(365 * 50 / 1000)
    assert r["saidi_h"] == pytest.approx(365 * 1500 / 60 / 1000)
    assert r["caidi_h"] == pytest.approx(0.5)


# ---- a small set of short, shock-heavy scenarios -----------------------------------------


@pytest.fixture(scope="module")
def short_set(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("stress")
    text = (REPO / "scenarios" / "ieee33_ai.toml").read_text()
    text = text.replace("horizon_s = 86400", "horizon_s = 1800", 1)
    text = text.replace("rate_per_day = 2.0 ", "rate_per_day = 96.0 ", 1)
    text = text.replace("rate_per_day = 1.0 ", "rate_per_day = 48.0 ", 1)
    spec = folder / "short.toml"
    spec.write_text(text)
    out = folder / "set.nc"
    argv = ["scenarios", str(spec), "--n", str(N), "--seed", "11", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    return str(out)


def _stress(set_path, out, *extra) -> int:
    argv = ["stress", CONFIG, "--scenarios", set_path, "--out", str(out), "--no-progress"]
    return main([*argv, *extra])


@pytest.fixture(scope="module")
def reference(short_set, tmp_path_factory) -> Path:
    """An uninterrupted stress test on two workers."""
    out = tmp_path_factory.mktemp("reference")
    assert _stress(short_set, out, "--workers", "2") == 0
    return out


def _same(a: Path, b: Path) -> None:
    with xr.open_dataset(a / "stress.nc") as x, xr.open_dataset(b / "stress.nc") as y:
        assert set(x.variables) == set(y.variables)
        for name in x.variables:  # variable by variable, values and attributes
            xr.testing.assert_identical(x[name], y[name])


def test_stress_writes_metrics_statistics_and_the_worst_episode(reference, capsys):
    with xr.open_dataset(reference / "stress.nc") as ds:
        assert ds.sizes["scenario"] == N and ds.attrs["n_failed"] == 0
        assert (ds["episode_status"] == 0).all()
        for name in ("unserved_energy_mwh", "imbalance_energy_mwh", "closed_loop_cost"):
            assert ds[name].dims == ("scenario",) and "units" in ds[name].attrs
        x, p = ds["imbalance_energy_mwh"].to_numpy(), ds["probability"].to_numpy()
        row = ds["summary"].sel(metric="imbalance_energy_mwh")
        assert float(row.sel(statistic="mean")) == pytest.approx(stats.mean(x, p))
        assert float(row.sel(statistic="cvar_95")) == pytest.approx(stats.var_cvar(x, p, 0.95)[1])
        assert float(ds["eens_mwh_per_yr"]) == pytest.approx(
            365 * stats.mean(ds["unserved_energy_mwh"].to_numpy(), p)
        )
        worst = int(np.argmax(ds["closed_loop_cost"].to_numpy()))
    with xr.open_dataset(reference / "worst_episode.nc") as w:
        assert w.attrs["scenario_index"] == worst and w.sizes["time"] > 1
        with xr.open_dataset(reference / "stress.nc") as ds:
            assert float(w["closed_loop_cost"]) == float(ds["closed_loop_cost"][worst])
    assert len(list((reference / "episodes").glob("ep_*.nc"))) == N


def test_a_killed_run_resumes_to_the_same_result_on_any_number_of_workers(
    short_set, reference, tmp_path
):
    """Killed outright (SIGKILL to the whole process group) after two episodes, started again
    with the same command on one worker: the same dataset as the uninterrupted run on two."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "simgrid.cli", "stress", CONFIG, "--scenarios", short_set]
    argv += ["--out", str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list((out / "episodes").glob("ep_*.nc"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "episodes").glob("ep_*.nc")))
    assert 2 <= done < N and not (out / "stress.nc").exists()
    assert _stress(short_set, out, "--workers", "1") == 0
    _same(reference, out)


def test_a_finished_run_started_again_runs_nothing_and_writes_the_same(short_set, reference):
    before = {p: p.stat().st_mtime_ns for p in (reference / "episodes").glob("ep_*.nc")}
    assert _stress(short_set, reference, "--workers", "1") == 0
    after = {p: p.stat().st_mtime_ns for p in (reference / "episodes").glob("ep_*.nc")}
    assert before == after


def test_episodes_are_reused_only_when_every_input_is_the_same(
    short_set, reference, tmp_path, capsys
):
    """Episodes on disk are reused when the config's text, the files it reads and the scenario
    set's content are those of the run that wrote them (paths may differ); a config edited in
    place or another set under the same name is refused in one line, nothing touched, and
    --restart runs everything again."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference / "episodes", out / "episodes")
    shutil.copy(REPO / "configs" / "fcm_catalogue.toml", tmp_path)
    cfg, scenarios = tmp_path / "cfg.toml", tmp_path / "set.nc"
    text = Path(CONFIG).read_text()
    cfg.write_text(text)
    shutil.copy(short_set, scenarios)

    def stress(*extra) -> tuple[int, str]:
        argv = ["stress", str(cfg), "--scenarios", str(scenarios), "--out", str(out)]
        code = main([*argv, "--workers", "1", "--no-progress", *extra])
        return code, capsys.readouterr().err

    def stamps() -> dict:
        return {p.name: p.stat().st_mtime_ns for p in (out / "episodes").glob("ep_*.nc")}

    before = stamps()
    assert stress()[0] == 0 and stamps() == before  # same content elsewhere: reused
    _same(reference, out)
    cfg.write_text(text.replace("band_mw = 0.2", "band_mw = 0.5"))
    code, err = stress()
    lines = [e for e in err.splitlines() if not e.startswith("simgrid: warning")]
    assert code == 2 and len(lines) == 1 and "ep_000000.nc" in lines[0], err
    assert "config_sha256 was" in lines[0] and "--restart" in lines[0]
    assert stamps() == before
    cfg.write_text(text)
    other = tmp_path / "other.nc"
    spec = REPO / "scenarios" / "ieee33_ai.toml"
    assert main(["scenarios", str(spec), "--n", "2", "--out", str(other), "--no-progress"]) == 0
    shutil.copy(other, scenarios)
    code, err = stress()
    assert code == 2 and "scenarios_sha256 was" in err and stamps() == before
    shutil.copy(short_set, scenarios)
    cfg.write_text(text.replace("band_mw = 0.2", "band_mw = 0.5"))
    assert stress("--restart")[0] == 0
    assert all(stamps()[k] != before[k] for k in before)
    with xr.open_dataset(out / "stress.nc") as new, xr.open_dataset(reference / "stress.nc") as old:
        # the band changes what the dispatcher plans and what counts as imbalance: new numbers
        assert not np.allclose(new["imbalance_energy_mwh"], old["imbalance_energy_mwh"])


# ---- faults on a cluster the test controls -----------------------------------------------


def _spec(short_set, out):
    from simgrid.runner.episode import StressSpec

    return StressSpec(CONFIG, short_set, str(out), no_dispatch=True)


def _combined(spec):
    from simgrid.runner.stress import combine

    return combine(spec, list(range(N)))


def test_a_worker_killed_mid_episode_has_its_episode_run_again(short_set, tmp_path):
    from distributed import Client, LocalCluster

    from simgrid.runner.cluster import run_episodes

    clean = _spec(short_set, tmp_path / "clean")
    run_episodes([(clean, range(N))], workers=1)
    spec = _spec(short_set, tmp_path / "killed")
    killed: list[int] = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        pids = c.run(os.getpid)

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, tasks in c.processing().items() if tasks]
                if busy:
                    time.sleep(0.3)  # mid-episode
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        run_episodes([(spec, range(N))], scheduler=cluster.scheduler_address)
        killer.join()
    assert killed
    assert sorted(p.name for p in (tmp_path / "killed" / "episodes").glob("*.nc")) == [
        f"ep_{i:06d}.nc" for i in range(N)
    ]
    xr.testing.assert_identical(
        _combined(clean), _combined(spec).assign_attrs(_combined(clean).attrs)
    )


def test_a_failing_episode_is_recorded_and_the_others_complete(short_set, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from simgrid.runner import episode
    from simgrid.runner.cluster import run_episodes

    original = episode.EpisodeRunner._episode

    def fail_on_two(self, index):
        if index == 2:
            raise ValueError("a deliberate failure")
        return original(self, index)

    monkeypatch.setattr(episode.EpisodeRunner, "_episode", fail_on_two)
    spec = _spec(short_set, tmp_path)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        run_episodes([(spec, range(N))], scheduler=cluster.scheduler_address)
    ds = _combined(spec)
    assert ds["episode_status"].to_numpy().tolist() == [0, 0, 1, 0, 0]
    assert "a deliberate failure" in str(ds["episode_error"][2].item())
    assert ds.attrs["n_failed"] == 1 and np.isnan(ds["unserved_energy_mwh"][2])
    ok = [0, 1, 3, 4]
    x, p = ds["imbalance_energy_mwh"].to_numpy()[ok], ds["probability"].to_numpy()[ok]
    mean = float(ds["summary"].sel(metric="imbalance_energy_mwh", statistic="mean"))
    assert mean == pytest.approx(stats.mean(x, p))


def test_an_unwritable_output_folder_is_one_line(short_set, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _stress(short_set, blocker / "sub") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(
    short_set, reference, tmp_path, capsys, monkeypatch
):
    import errno
    import shutil

    out = tmp_path / "full"
    shutil.copytree(reference / "episodes", out / "episodes")  # only stress.nc left to write

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", no_space)
    assert _stress(short_set, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
    assert not (out / "stress.nc").exists() and not list(out.glob(".*tmp"))


# ---- evaluate -----------------------------------------------------------------------------


def test_evaluate_runs_every_allocation_on_the_same_scenarios(short_set, tmp_path, capsys):
    from simgrid.fcm import AllocationEntry, allocation_dataset

    alloc = tmp_path / "two_bess.nc"
    allocation_dataset([AllocationEntry("bess-0.5", 8, 2)]).to_netcdf(alloc)
    out = tmp_path / "eval"
    argv = ["evaluate", CONFIG, "--allocations", str(alloc), "--scenarios", short_set]
    assert main([*argv, "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| none |" in printed and "| two_bess |" in printed
    with xr.open_dataset(out / "evaluation.nc") as ds:
        assert ds["allocation"].to_numpy().tolist() == ["none", "two_bess"]
        assert ds["investment_per_yr"].sel(allocation="none") == 0
        assert float(ds["investment_per_yr"].sel(allocation="two_bess")) > 0
        assert np.isnan(ds["planned_recourse_per_yr"]).all()  # neither is Stage-I's
        total = ds["investment_per_yr"] + ds["closed_loop_recourse_per_yr"]
        np.testing.assert_allclose(ds["total_cost_per_yr"], total)
        # the do-nothing row is the plain do-nothing stress test, scenario by scenario
        with xr.open_dataset(out / "none" / "stress.nc") as none:
            np.testing.assert_array_equal(
                ds["unserved_energy_mwh"].sel(allocation="none"), none["unserved_energy_mwh"]
            )
        # two batteries at the mid-feeder campus cut the imbalance
        imb = ds["mean_imbalance_energy_mwh"]
        assert float(imb.sel(allocation="two_bess")) < float(imb.sel(allocation="none"))
        # paired against do-nothing, day by day: the mean of the differences, its interval
        # around it, and the days counted
        assert ds.attrs["reference"] == "none"
        d = ds["diff_imbalance_energy_mwh"].sel(allocation="two_bess")
        per_day = ds["imbalance_energy_mwh"].sel(allocation="two_bess") - ds[
            "imbalance_energy_mwh"
        ].sel(allocation="none")
        assert float(d.sel(difference="mean")) == pytest.approx(float(per_day.mean()))
        assert d.sel(difference="ci_low") <= d.sel(difference="mean") <= d.sel(difference="ci_high")
        assert int(d.sel(difference="wins")) == int((per_day < 0).sum())
        assert int(d.sel(difference="days")) == N
        assert np.isnan(ds["diff_total_cost"].sel(allocation="none")).all()
    md = (out / "evaluation.md").read_text()
    assert "Paired differences against `none`" in md and "Established: none" in md  # 5 days


def test_evaluate_compares_with_a_named_reference_until_the_difference_is_established(
    short_set, tmp_path, capsys, monkeypatch
):
    """--until-ci in batches of 2 days: it stops at the first batch where the difference of
    total cost is established, or at the end of the set; --reference an allocation's stem."""
    from simgrid.fcm import AllocationEntry, allocation_dataset

    monkeypatch.setattr(stats, "MIN_PAIRED_DAYS", 2)  # the set has 5 days
    paths = []
    for name, count in (("one", 1), ("four", 4)):
        paths.append(tmp_path / f"{name}.nc")
        allocation_dataset([AllocationEntry("bess-0.5", 8, count)]).to_netcdf(paths[-1])
    out = tmp_path / "eval"
    argv = ["evaluate", CONFIG, "--allocations", *map(str, paths), "--scenarios", short_set]
    flags = ["--reference", "one", "--until-ci", "--batch", "2", "--workers", "1"]
    assert main([*argv, "--out", str(out), *flags, "--no-progress"]) == 0
    with xr.open_dataset(out / "evaluation.nc") as ds:
        assert ds.attrs["reference"] == "one"
        days = ds.sizes["scenario"]
        assert days in (2, 4, N)  # whole batches, the last one cut at the set's end
        d = evaluate.difference(ds, "total_cost", "four")
        assert d.n == days and np.isnan(ds["diff_total_cost"].sel(allocation="one")).all()
        # it stopped at the first batch where the difference was established
        assert evaluate.settled(ds) == d.established and (d.established or days == N)
        if days > 2:
            before = {4: 2, N: 4}[days]
            cost = ds["total_cost"].to_numpy()[:, :before]
            earlier = stats.paired_difference(cost[2], cost[1], np.ones(before))
            assert not earlier.established
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--reference", "best", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reference" in err and "none, one, four" in err
