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
        "block_00000.nc",
        "block_00000.state.nc",
        "block_00001.nc",
        "block_00001.state.nc",
    ]
    with xr.open_dataset(parts / "block_00001.state.nc") as state:  # numbers, nothing else
        assert {v.dtype.kind for v in state.data_vars.values()} <= set("biuf")
        assert "policy.units.storage.e" in state and "protection.blocks" in state
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


def test_blocks_of_other_inputs_are_refused_and_restart_discards_them(uninterrupted, capsys):
    """Blocks left by a run of another config (here another block_s) are never reused: one
    line, exit 2, the folder untouched; --restart discards them and runs afresh."""
    tmp, whole = uninterrupted
    out = tmp / "other.nc"
    store = BlockStore(parts_folder(out), _load(_config(tmp, 7200)), "RollingDispatcher")
    store.write(0, xr.Dataset({"x": ("time", np.zeros(2))}), None)
    argv = ["run", str(_config(tmp, 3600)), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("simgrid: error: ") and "block_00000.nc" in err, err
    assert "config_sha256 was" in err and "--restart" in err, err
    assert sorted(p.name for p in store.folder.iterdir()) == ["block_00000.nc"]
    assert not out.exists()
    assert main([*argv, "--restart"]) == 0
    _same(whole, out)


def _killed_at_block_1(tmp: Path, out: Path, monkeypatch) -> Path:
    """Run the four-hour config until block 1 is written, then stop it (as a kill would)."""
    write = BlockStore.write

    def dies(self, k, ds, ckpt):
        if k == 1:
            raise KeyboardInterrupt
        write(self, k, ds, ckpt)

    cfg = _config(tmp, 3600)
    with monkeypatch.context() as m:
        m.setattr(BlockStore, "write", dies)
        assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 130
    return cfg


def test_a_planted_pickle_is_never_loaded(uninterrupted, monkeypatch, tmp_path):
    """A `.ckpt` pickle beside a block whose attributes were copied from a real one (all of
    them are public) is not a checkpoint simgrid reads: the run starts afresh, the payload
    never runs, and the result is the uninterrupted run's."""
    import pickle

    tmp, whole = uninterrupted
    out = tmp / "planted.nc"
    cfg = _killed_at_block_1(tmp, out, monkeypatch)
    folder = parts_folder(out)
    (folder / "block_00000.state.nc").unlink()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    (folder / "block_00000.ckpt").write_bytes(pickle.dumps(Payload()))
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert not marker.exists()
    _same(whole, out)


@pytest.mark.parametrize(
    ("name", "value", "expect"),
    [
        ("policy.units.storage.e", np.zeros(7), "policy.units.storage.e"),  # another shape
        ("protection.blocks", np.zeros(33), "protection.blocks"),  # float where ints are
        ("policy.units.storage.e", np.full(3, 1e9), "policy.units.storage.e"),  # too much
        ("policy.extra", np.zeros(1), "policy.extra"),  # not part of the loop's state
    ],
)
def test_a_forged_checkpoint_is_one_line_exit_2(
    uninterrupted, monkeypatch, capsys, tmp_path, name, value, expect
):
    """A checkpoint file is data: one that does not fit this run's loop (a changed shape or
    dtype, values outside what the units hold, a stray variable) is refused in one line."""
    tmp, _ = uninterrupted
    out = tmp_path / "forged.nc"
    cfg = _killed_at_block_1(tmp, out, monkeypatch)
    path = parts_folder(out) / "block_00000.state.nc"
    with xr.open_dataset(path) as ds:
        forged = ds.load()
    forged[name] = xr.Variable(tuple(f"{name}.{i}" for i in range(value.ndim)), value)
    path.unlink()
    forged.to_netcdf(path)
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = [e for e in capsys.readouterr().err.splitlines() if not e.startswith("simgrid: warn")]
    assert len(err) == 1 and err[0].startswith("simgrid: error: "), err
    assert "block_00000.state.nc" in err[0] and expect in err[0], err
    assert "Traceback" not in "".join(err) and not out.exists()


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


def test_a_checkpoint_restores_the_loop_it_was_taken_from():
    """Snapshot -> NetCDF -> snapshot -> a fresh loop gives the same state, mid-run with a
    plan; a perfect-forecast policy keeps its forecaster. (The events' loads are replayed, not
    stored: the killed-run test checks the whole dataset.)"""
    from simgrid.config import load_config
    from simgrid.cosim.simulation import Checkpoint, Loop
    from simgrid.inputs import prepare
    from simgrid.runner import PerfectForecast, build_policy
    from simgrid.runner.blocks import _state_dataset
    from simgrid.types import Snapshot

    cfg = load_config(REPO / "configs" / "ieee33.toml")
    inputs = prepare(cfg)
    loop = Loop(inputs, build_policy(cfg, inputs, forecast="perfect"))
    for t in np.arange(21600.0, 23400.0, 60.0):  # into the training ramp, with dispatch calls
        loop.step(float(t), t % 300 == 0)
    loop.rest()
    snap = Checkpoint.of(loop, 23400.0, 0).state
    assert snap.part("policy.plan") is not None
    path = REPO / "results" / "_checkpoint_probe.nc"
    try:
        _state_dataset(snap).to_netcdf(path)
        with xr.open_dataset(path) as ds:
            back = Snapshot({k: ds[k].to_numpy() for k in ds.data_vars}, str(path))
    finally:
        path.unlink(missing_ok=True)
    policy = build_policy(cfg, inputs, forecast="perfect")
    restored = Checkpoint(23400.0, 0, back).restore(inputs, policy)
    assert restored.snapshot().same(snap)
    assert isinstance(restored.policy.forecaster, PerfectForecast)


def test_nothing_in_simgrid_unpickles():
    """No module of simgrid can load a pickle (or another code-carrying format) from disk."""
    import ast

    risky = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
    found = []
    for path in (REPO / "simgrid").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                names = ["allow_pickle"]
            found += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in risky | {"allow_pickle"}
            ]
    assert found == []
