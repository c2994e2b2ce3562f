"""Unit families are plug-ins (simgrid.units): the registry, and the fifth family -- campus
backup generation -- working end to end from one file: catalogue, model block, planner sizing,
rolling dispatch, its state, the real-time layer and the run's report."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from test_blocks import WEIGHTS, _data, _solve
from test_dispatch import DT, _dispatcher, _state, _unit, two_bus  # noqa: F401 -- a fixture

from simgrid.errors import ConfigError
from simgrid.fcm import load_catalogue
from simgrid.units import FAMILIES, catalogue_types, family_of
from simgrid.units.backup_gen import BackupGenModule
from simgrid.units.base import Family

from conftest import MINIMAL, REPO

MW_TOL = 1e-6
PKG = REPO / "simgrid"

BACKUP = BackupGenModule(
    "backup", "backup_gen", p_mw=0.5, ramp_mw_per_min=0.01, energy_mwh=0.5,
    marginal_cost_per_mwh=300.0,
)  # fmt: skip


def test_the_registry_names_every_family_once_and_each_implements_the_interface():
    assert [f.name for f in FAMILIES] == ["storage", "fast_gen", "dr", "backup_gen"]
    types = catalogue_types()
    assert len(types) == len(set(types)) and set(types) >= {"bess", "ldes", "fast_gen", "dr"}
    for f in FAMILIES:
        assert isinstance(f, Family)  # abstract methods all implemented, or it could not exist
        assert all(family_of(t) is f for t in f.types)


def test_a_family_is_one_file_and_one_registry_line():
    """Nothing outside its own module and the registry knows the fifth family by name."""
    mentions = []
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if "backup_gen" in text or "BackupGen" in text:
            mentions.append(str(path.relative_to(PKG)))
    assert sorted(mentions) == ["units/__init__.py", "units/backup_gen.py"]
    tree = ast.parse((PKG / "units" / "__init__.py").read_text())
    registry = next(n for n in ast.walk(tree) if isinstance(n, ast.AnnAssign))
    assert len(registry.value.elts) == len(FAMILIES)


def test_the_catalogue_reads_and_checks_a_backup_generator(tmp_path):
    path = tmp_path / "cat.toml"
    text = (
        (REPO / "configs" / "fcm_catalogue.toml").read_text()
        + """
[[module]]
name = "gensets-1"
type = "backup_gen"
p_mw = 1.0
ramp_mw_per_min = 0.5
energy_mwh = 50.0
marginal_cost_per_mwh = 400.0

[[supplier]]
name = "campus"
module = "gensets-1"
available = 2
unit_cost = 0.0
lead_time_days = 0
"""
    )
    path.write_text(text)
    m = load_catalogue(path).module("gensets-1")
    assert isinstance(m, BackupGenModule) and m.energy_mwh == 50.0
    assert m.times(2).energy_mwh == 100.0 and m.times(2).marginal_cost_per_mwh == 400.0
    path.write_text(text.replace("energy_mwh = 50.0", "energy_mwh = -1.0"))
    with pytest.raises(ConfigError, match=r"module\[4\]\.energy_mwh"):
        load_catalogue(path)
    path.write_text(text.replace("energy_mwh = 50.0", "e_mwh = 1.0"))
    with pytest.raises(ConfigError, match="e_mwh"):  # a storage key is not a genset's
        load_catalogue(path)


def test_the_block_covers_a_deficit_within_its_ramp_and_run_budget():
    # 0.4 MW short for two hours: the gensets ramp 0.6 MW an hour from rest, so they reach
    # 0.4 MW in the first hour, but their 0.5 MWh budget covers only 0.5 MWh of the 0.8
    res, hd = _solve(_data([0.4, 0.4]), modules=(BACKUP,))
    p = res.x[hd.of("backup_gen").p[0]]
    assert p.sum() == pytest.approx(0.5, abs=MW_TOL) and np.all(p <= 0.4 + MW_TOL)
    # the same physics for a size the planner chooses as for a fixed one
    counts = [2]
    fixed, _ = _solve(_data([0.9, 0.9]), modules=(BACKUP.times(2),))
    chosen, _ = _solve(_data([0.9, 0.9]), modules=(BACKUP,), sizes="chosen", fix=counts)
    assert chosen.objective == pytest.approx(fixed.objective, rel=1e-7, abs=1e-6)
    assert WEIGHTS.voll > BACKUP.marginal_cost_per_mwh  # running beats shedding


def test_the_dispatcher_runs_it_and_its_state_keeps_the_budget(two_bus):  # noqa: F811
    unit = _unit(
        "backup_gen", p_mw=0.5, ramp_mw_per_min=0.05, energy_mwh=0.05, marginal_cost_per_mwh=300.0
    )
    pol = _dispatcher(two_bus, unit)
    # a call starts "now": from rest the gensets move only as far as they ramp since the last
    # step (nothing at the first call), then 0.25 MW per 5-minute period
    assert pol.dispatch(_state(0.0, 0.3)).p_injection_mw[1] == pytest.approx(0.0, abs=MW_TOL)
    second = pol.dispatch(_state(DT, 0.3)).p_injection_mw[1]
    assert 0.0 < second <= 0.05 * DT / 60 + MW_TOL
    for k in range(2, 12):
        pol.dispatch(_state(k * DT, 0.3))
    used = pol.state.of("backup_gen").used[0]
    assert used == pytest.approx(0.05, abs=1e-6)  # the whole budget, and not more
    assert pol.dispatch(_state(12 * DT, 0.3)).p_injection_mw[1] == pytest.approx(0.0, abs=1e-6)
    report = pol.report(12 * DT)
    assert np.isnan(report.soc_mwh[0]) and report.dr_curtail_mw[0] == 0.0


def test_the_real_time_layer_moves_it_within_its_limits(two_bus):  # noqa: F811
    unit = _unit("backup_gen", p_mw=0.5, ramp_mw_per_min=0.06, energy_mwh=10.0)
    pol = _dispatcher(two_bus, unit, realtime="follow")
    assert pol.dispatch(_state(0.0, 0.1)).p_injection_mw[1] == pytest.approx(0.0, abs=MW_TOL)
    sp = pol.follow(_state(60.0, 0.5))  # 0.4 MW more than planned, one minute later
    # from rest it takes up what it can: a minute's ramp, 0.06 MW, not the 0.4 asked
    assert sp.p_injection_mw[1] == pytest.approx(0.06, abs=MW_TOL)


def test_a_run_dispatches_and_reports_it(tmp_path):
    """`simgrid run` with campus gensets allocated: the run's unit table and series."""
    import xarray as xr

    from simgrid.cli import main

    catalogue = tmp_path / "cat.toml"
    catalogue.write_text(GENSETS_CATALOGUE)
    config = tmp_path / "run.toml"
    config.write_text(RUN.format(catalogue=catalogue))
    out = tmp_path / "run.nc"
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds["unit_type"].values.tolist() == ["backup_gen"]
        assert float(ds["unit_cost_per_mwh"][0]) == 400.0
        p = ds["fcm_p_mw"][:, 0].to_numpy()
        assert p.max() > 0.1 and p.max() <= 1.0 + MW_TOL  # it ran, within its rating
        assert float(ds["imbalance_energy_mwh"]) < float(ds["baseline_imbalance_energy_mwh"])


GENSETS_CATALOGUE = """
[[module]]
name = "gensets-1"
type = "backup_gen"
p_mw = 1.0
ramp_mw_per_min = 0.5
energy_mwh = 50.0
marginal_cost_per_mwh = 400.0
"""
RUN = (
    MINIMAL
    + """
[dispatch]
policy = "milp"
catalogue = "{catalogue}"
[[allocation]]
module = "gensets-1"
bus = 2
count = 1
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 2.0
base_utilisation = 0.25
[[event]]
kind = "ramp_up"
campus = "dc"
start_s = 600
magnitude_mw = 0.8
ramp_s = 120
duration_s = 1800
"""
)
