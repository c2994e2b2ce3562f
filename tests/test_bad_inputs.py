"""The bad-input corpus: every file kind simgrid reads, and its command-line flags, fed wrong.

Each case of `tests/bad_inputs/MANIFEST.toml` names a file (or, for `kind = "cli"`, an argument
list) and the fragment -- usually the key path -- its error must contain. `@REPO@` in a corpus
file stands for the repository's root (to name its catalogue, say). Every command that
reads that kind of file is run on it: each must exit with code 2 and print one line naming the
file, the key, the value and what is allowed; no traceback, no output file, no temporary file.

Kinds and the commands that read them (a wrapper config or spec points at the bad file):

* config: `run FILE`, `validate FILE`
* spec: `scenarios FILE --n 3`
* catalogue: a config with `dispatch.catalogue = FILE`: `run`, `validate`
* allocation: a config with `dispatch.allocation_file = FILE`: `run`, `validate`
* csv: a config with `network.load_profile = FILE`, and a campus with
  `utilisation_profile = FILE`: `run`, `validate`; a spec with the campus: `scenarios`
* network: a config with `network.file = FILE`: `run`, `validate`; a spec likewise: `scenarios`
* scenario_set: `run CONFIG --scenarios FILE`, `validate CONFIG --scenarios FILE`,
  `scenarios --plot FILE --out DIR`
* result: `report FILE --out DIR`
* checkpoint: planted as `.OUT.nc.parts/block_00000.state.nc` beside a whole block of the
  wrapper config's own run (a forger can copy the attributes that tie it to the run: a file
  with `forge_key = "yes"` gets the run's key): `run CONFIG --out OUT`
* episode: planted as `DIR/episodes/ep_000000.nc` (`forge_key` likewise):
  `stress CONFIG --scenarios SET --out DIR`
* cli: the case's `argv`, with {config}, {spec}, {set}, {out} and {dir} filled in (a dask
  scheduler is given 3 s to answer)

The Monte Carlo commands read allocations and scenario sets too, and check them before any
worker starts: `stress` and `evaluate` run on every allocation case, `stress`, `evaluate` and
`allocate` on every scenario-set case.
"""

from __future__ import annotations

import functools
import shutil
import tomllib
from pathlib import Path

import dask
import pytest

from simgrid.cli import main

from conftest import REPO

CORPUS = Path(__file__).parent / "bad_inputs"
CATALOGUE = REPO / "configs" / "fcm_catalogue.toml"

GOOD_CONFIG = """
[run]
name = "probe"
horizon_s = 600
dt_s = 60
[network]
{network}
[upstream]
band_mw = 0.1
ramp_mw_per_min = 0.05
{dispatch}
{campus}
"""
DISPATCH = """
[dispatch]
policy = "milp"
catalogue = "{catalogue}"
{allocation}
"""
ALLOCATION_TABLE = '[[allocation]]\nmodule = "bess-0.5"\nbus = 2\ncount = 1'
CAMPUS = '[[campus]]\nname = "dc"\nbus = 2\np_nom_mw = 1.0\nbase_utilisation = 0.5\n{extra}'
GOOD_SPEC = """
[spec]
name = "probe"
horizon_s = 3600
dt_s = 60
[network]
{network}
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 1.0
{extra}
[[shock]]
kind = "ramp_up"
rate_per_day = 2.0
magnitude = 0.2
ramp_rate = 1.0
duration_s = 600
"""


@functools.cache
def _manifest() -> tuple[dict, ...]:
    return tuple(tomllib.loads((CORPUS / "MANIFEST.toml").read_text())["case"])


def _config(
    tmp: Path, *, network='case = "case33bw"\nload_profile = "flat"', dispatch="", campus=""
) -> Path:
    path = tmp / "wrapper.toml"
    path.write_text(GOOD_CONFIG.format(network=network, dispatch=dispatch, campus=campus))
    return path


def _spec(tmp: Path, *, network='case = "case33bw"', extra="") -> Path:
    path = tmp / "wrapper_spec.toml"
    path.write_text(GOOD_SPEC.format(network=network, extra=extra))
    return path


def _good_set(tmp: Path) -> Path:
    out = tmp / "good_set.nc"
    spec = _spec(tmp)
    assert main(["scenarios", str(spec), "--n", "3", "--out", str(out), "--no-progress"]) == 0
    spec.unlink()
    return out


def _commands(case: dict, bad: Path | None, tmp: Path) -> list[list[str]]:
    """The argument lists that read the case's file (see the module docstring)."""
    out, outdir = str(tmp / "out.nc"), str(tmp / "plots")
    run = lambda cfg: [["run", str(cfg), "--out", out, "--no-progress"], ["validate", str(cfg)]]  # noqa: E731
    kind = case["kind"]
    if kind == "config":
        return run(bad)
    if kind == "spec":
        return [["scenarios", str(bad), "--n", "3", "--out", out, "--no-progress"]]
    if kind == "catalogue":
        dispatch = DISPATCH.format(catalogue=bad, allocation=ALLOCATION_TABLE)
        return run(_config(tmp, dispatch=dispatch))
    if kind == "allocation":
        dispatch = DISPATCH.format(catalogue=CATALOGUE, allocation=f'allocation_file = "{bad}"')
        return run(_config(tmp, dispatch=dispatch))
    if kind == "csv":
        profile = f'case = "case33bw"\nload_profile = "{bad}"'
        cmds = run(_config(tmp, network=profile))
        campus = CAMPUS.format(extra=f'utilisation_profile = "{bad}"')
        cmds += run(_config(tmp / "campus", campus=campus))
        spec = _spec(tmp / "spec", extra=f'utilisation_profile = "{bad}"')
        return cmds + [["scenarios", str(spec), "--n", "3", "--out", out, "--no-progress"]]
    if kind == "network":
        network = f'file = "{bad}"\nload_profile = "flat"'
        spec = _spec(tmp / "spec", network=f'file = "{bad}"')
        return run(_config(tmp, network=network)) + [
            ["scenarios", str(spec), "--n", "3", "--out", out, "--no-progress"]
        ]
    if kind == "scenario_set":
        cfg = _config(tmp)
        return [
            ["run", str(cfg), "--scenarios", str(bad), "--out", out, "--no-progress"],
            ["validate", str(cfg), "--scenarios", str(bad)],
            ["scenarios", "--plot", str(bad), "--out", outdir],
        ]
    if kind == "result":
        return [["report", str(bad), "--out", outdir]]
    if kind == "checkpoint":
        return [_plant_checkpoint(bad, tmp)]
    if kind == "episode":
        return [_plant_episode(bad, tmp)]
    assert kind == "cli", kind
    fill = {
        "config": str(_config(tmp)),
        "spec": str(_spec(tmp)),
        "set": str(_good_set(tmp)) if any("{set}" in a for a in case["argv"]) else "",
        "out": out,
        "dir": outdir,
    }
    return [[a.format(**fill) for a in case["argv"]]]


def _forged(bad: Path, key: dict, dest: Path) -> None:
    """`bad` copied to `dest`; a NetCDF file asking for it (`forge_key`) gets `key` planted."""
    import xarray as xr

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with xr.open_dataset(bad) as ds:
            forge = ds.attrs.get("forge_key") == "yes"
            ds = ds.load()
    except (OSError, ValueError):
        forge = False
    if forge:
        ds.attrs = {k: v for k, v in ds.attrs.items() if k != "forge_key"} | key
        ds.to_netcdf(dest)
    else:
        shutil.copy(bad, dest)


def _plant_checkpoint(bad: Path, tmp: Path) -> list[str]:
    import numpy as np
    import xarray as xr

    from simgrid.config import load_config
    from simgrid.runner.blocks import BlockStore, parts_folder

    cfg, out = _config(tmp), tmp / "run.nc"
    store = BlockStore(parts_folder(out), load_config(cfg), "DoNothing")
    store.write(0, xr.Dataset({"x": ("time", np.zeros(2))}), None)
    _forged(bad, store.key.attrs(), store.checkpoint(0))
    return ["run", str(cfg), "--out", str(out), "--no-progress"]


def _plant_episode(bad: Path, tmp: Path) -> list[str]:
    from simgrid.runner.episode import StressSpec

    cfg, scenarios, out = _config(tmp), _good_set(tmp), tmp / "stress"
    spec = StressSpec(str(cfg), str(scenarios), str(out)).keyed()
    _forged(bad, spec.inputs.attrs(), spec.path(0))
    argv = ["stress", str(cfg), "--scenarios", str(scenarios), "--out", str(out)]
    return [*argv, "--workers", "1", "--no-progress"]


def test_the_corpus_is_large_and_its_files_exist():
    cases = _manifest()
    assert len(cases) >= 150
    assert len({c["name"] for c in cases}) == len(cases)
    for c in cases:
        assert ("file" in c) != (c["kind"] == "cli"), c["name"]
        if "file" in c:
            assert (CORPUS / c["file"]).is_file(), c["name"]
    kinds = {c["kind"] for c in cases}
    assert kinds == {
        "config",
        "spec",
        "catalogue",
        "allocation",
        "csv",
        "network",
        "scenario_set",
        "result",
        "checkpoint",
        "episode",
        "cli",
    }


def _monte_carlo_commands(case: dict, bad: Path | None, tmp: Path) -> list[list[str]]:
    """`stress`, `evaluate` (and `allocate`) on an allocation or scenario-set case."""
    from simgrid.fcm import AllocationEntry, allocation_dataset
    from simgrid.ncio import write_dataset

    dispatch = f'[dispatch]\npolicy = "none"\ncatalogue = "{CATALOGUE}"\n'
    cfg = str(_config(tmp, dispatch=dispatch, campus=CAMPUS.format(extra="")))
    flags = ["--workers", "1", "--no-progress"]
    st, ev = ["--out", str(tmp / "stress")], ["--out", str(tmp / "evaluation")]
    if case["kind"] == "allocation":
        good = str(_good_set(tmp))
        return [
            ["stress", cfg, "--scenarios", good, "--allocation", str(bad), *st, *flags],
            ["evaluate", cfg, "--allocations", str(bad), "--scenarios", good, *ev, *flags],
        ]
    alloc = tmp / "good_allocation.nc"
    write_dataset(allocation_dataset((AllocationEntry("bess-0.5", 2, 1),)), alloc)
    return [
        ["stress", cfg, "--scenarios", str(bad), *st, *flags],
        ["evaluate", cfg, "--allocations", str(alloc), "--scenarios", str(bad), *ev, *flags],
        ["allocate", cfg, "--scenarios", str(bad), "--out", str(tmp / "a.nc"), "--no-progress"],
    ]


MONTE_CARLO = [c for c in _manifest() if c["kind"] in ("allocation", "scenario_set")]


@pytest.mark.parametrize("case", MONTE_CARLO, ids=[c["name"] for c in MONTE_CARLO])
def test_the_monte_carlo_commands_refuse_bad_input_alike(case, tmp_path, capsys):
    _check_case(case, tmp_path, capsys, _monte_carlo_commands)


@pytest.mark.parametrize("case", _manifest(), ids=[c["name"] for c in _manifest()])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    _check_case(case, tmp_path, capsys, _commands)


def _check_case(case, tmp_path, capsys, commands) -> None:
    for sub in ("campus", "spec"):
        (tmp_path / sub).mkdir()
    bad = None
    if "file" in case:
        bad = tmp_path / Path(case["file"]).name
        shutil.copy(CORPUS / case["file"], bad)
        raw = bad.read_bytes()
        if b"@REPO@" in raw:  # corpus files name the repository's own files this way
            bad.write_bytes(raw.replace(b"@REPO@", str(REPO).encode()))
    before = set(tmp_path.rglob("*"))
    for argv in commands(case, bad, tmp_path):
        before |= set(tmp_path.rglob("*"))  # wrappers written for this command
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            code = main(argv)
        err = capsys.readouterr().err
        lines = [
            line for line in err.strip().splitlines() if not line.startswith("simgrid: warning")
        ]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("simgrid: error: "), err
        assert case["expect"] in lines[0], (case["expect"], lines[0])
        if bad is not None:
            assert bad.name in lines[0], lines[0]
        assert "Traceback" not in err
    assert set(tmp_path.rglob("*")) == before, "an output or temporary file was left"
