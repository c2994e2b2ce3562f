"""Long runs streamed block by block: the same dataset as one piece, and a killed run resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from simgrid.cli import main
from simgrid.runner.blocks import BlockStore, parts_folder

REPO = Path(__file__).resolve().parents[1]

# the bundled example's feeder, units and events, moved into four hours so that the ramp, the
# oscillation, the outage and the surge all cross hour boundaries (blocks of one hour)
SHIFT = {21600: 1800, 32400: 3300, 43200: 6000, 50400: 5400, 64800: 9000}


def _config(tmp_path: Path, block_s: float) -> Path:
    text = (REPO / "configs" / "ieee33.toml").read_text()
    for old, new in SHIFT.items():
        text = text.replace(f"start_s = {old}\n", f"start_s = {new}\n")
    text = text.replace("[run]\n", f"[run]\nhorizon_s = 14400\nblock_s = {block_s}\n", 1)
    text = text.replace('catalogue = "', f'catalogue = "{REPO / "configs"}/', 1)
    path = tmp_path / f"b{int(block_s)}.toml"
    path.write_text(_drop_horizon(text))
    return path


def _drop_horizon(text: str) -> str:
    """Keep the first horizon_s (ours) in [run]."""
    lines, seen = [], False
    for line in text.splitlines():
        if line.startswith("horizon_s"):
            if seen:
                continue
            seen = True
        lines.append(line)
    return "\n".join(lines) + "\n"


def _same(a: Path, b: Path) -> None:
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        assert set(x.variables) == set(y.variables)
        for name in x.variables:
            if name == "dispatch_solve_s":  # wall time
                continue
            xr.testing.assert_identical(x[name], y[name])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blocks")
    out = tmp / "whole.nc"
    assert main(["run", str(_config(tmp, 3600)), "--out", str(out), "--no-progress"]) == 0
    return tmp, out


def test_blocks_make_one_dataset_with_every_step(uninterrupted):
    tmp, out = uninterrupted
    with xr.open_dataset(out) as ds:
        t = ds["time"].to_numpy()
        assert np.all(np.diff(t) > 0) and t[0] == 0.0 and t[-1] == 14400 - 60
        # every grid step and event instant once, the boundaries included
        assert {3600.0, 7200.0, 10800.0} <= set(t) and ds.sizes["time"] >= 240
        assert float(ds["unserved_energy_mwh"]) > 0 and "baseline_unserved_energy_mwh" in ds
    assert not parts_folder(out).exists() and not parts_folder(out, ".baseline").exists()


def test_series_are_written_in_chunks_of_whole_blocks(uninterrupted):
    """HDF5 chunks follow the blocks the run is joined from (a chunk written whole needs no
    cache: the writer's memory does not grow with the run)."""
    tmp, out = uninterrupted
    with xr.open_dataset(out) as ds:
        first_block = int((ds["time"] < 3600).sum())
        for name in ("vm_pu", "line_loading_percent", "voltage_violation_pu"):
            assert ds[name].encoding["chunksizes"] == (first_block, ds[name].shape[1]), name


def test_a_killed_run_resumes_from_its_last_block(uninterrupted, monkeypatch):
    tmp, whole = uninterrupted
    cfg = _config(tmp, 3600)
    out = tmp / "killed.nc"
    write = BlockStore.write

    def dies_at_block_2(self, k, ds, ckpt):
        if k == 2:
            raise KeyboardInterrupt
        write(self, k, ds, ckpt)

    monkeypatch.setattr(BlockStore, "write", dies_at_block_2)
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 130
    parts = parts_folder(out)
    assert sorted(p.name for p in parts.iterdir()) == [
        "block_00000.ckpt",
        "block_00000.nc",
        "block_00001.ckpt",
        "block_00001.nc",
    ]
    assert not out.exists()
    monkeypatch.setattr(BlockStore, "write", write)
    resumed = []
    original = BlockStore.resume_point
    monkeypatch.setattr(
        BlockStore, "resume_point", lambda self: resumed.append(original(self)) or resumed[-1]
    )
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert resumed[0] is not None and resumed[0].block == 1 and resumed[0].t_s == 7200
    _same(whole, out)
    assert not parts.exists()


def test_blocks_joined_through_group_files_give_the_same_dataset(uninterrupted, monkeypatch):
    """A long run joins its blocks in groups first (bounded memory): same result."""
    from simgrid.runner import blocks

    tmp, whole = uninterrupted
    out = tmp / "grouped.nc"
    groups = []
    group = blocks.BlockStore._group
    monkeypatch.setattr(blocks, "JOIN_GROUP", 3)
    monkeypatch.setattr(
        blocks.BlockStore,
        "_group",
        lambda self, g, paths: groups.append(len(paths)) or group(self, g, paths),
    )
    assert main(["run", str(_config(tmp, 3600)), "--out", str(out), "--no-progress"]) == 0
    assert groups == [3, 1, 3, 1]  # the run's 4 blocks, then the baseline's
    _same(whole, out)
    assert not parts_folder(out).exists()


def test_blocks_of_another_config_are_not_resumed(uninterrupted, monkeypatch):
    tmp, whole = uninterrupted
    out = tmp / "other.nc"
    store = BlockStore(parts_folder(out), _load(_config(tmp, 7200)), "RollingDispatcher")
    store.folder.mkdir()
    (store.folder / "block_00000.nc").write_text("not this run")
    (store.folder / "block_00000.ckpt").write_text("")
    assert main(["run", str(_config(tmp, 3600)), "--out", str(out), "--no-progress"]) == 0
    _same(whole, out)


def _load(path: Path):
    from simgrid.config import load_config

    return load_config(path)


def test_the_year_long_spec_is_the_daily_one_over_365_days():
    from simgrid.scenarios.spec import load_spec

    def body(name: str) -> list[str]:
        text = (REPO / "scenarios" / name).read_text()
        lines = text[text.index("[spec]") :].splitlines()
        return [ln for ln in lines if not ln.startswith(("name =", "horizon_s ="))]

    assert body("ieee33_ai_year.toml") == body("ieee33_ai.toml")
    year = load_spec(REPO / "scenarios" / "ieee33_ai_year.toml")
    assert year.horizon_s == 365 * 86400


def test_a_checkpoint_carries_a_perfect_forecast_dispatcher():
    from simgrid.config import load_config
    from simgrid.cosim.simulation import Checkpoint, Loop
    from simgrid.runner import PerfectForecast, build_policy, prepare

    cfg = load_config(REPO / "configs" / "ieee33.toml")
    inputs = prepare(cfg)
    policy = build_policy(cfg, inputs, forecast="perfect")
    back = Checkpoint.of(Loop(inputs, policy), 3600.0, 0).restore().policy
    assert isinstance(back.forecaster, PerfectForecast)
    t = np.arange(0.0, 86400.0, 600.0)
    np.testing.assert_array_equal(back.forecaster(t), policy.forecaster(t))
