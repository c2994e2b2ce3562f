"""Write the NetCDF files of the bad-input corpus (kinds `allocation` and `scenario_set`).

    .venv/bin/python tests/bad_inputs/make_netcdf.py

Run from anywhere; it rewrites `tests/bad_inputs/allocation/*.nc` and
`tests/bad_inputs/scenario_set/*.nc` (MANIFEST.toml lists the cases and the message each must
give). Every file starts from a valid simgrid dataset -- an allocation made by
`simgrid.fcm.allocation_dataset`, a ScenarioSet or a run dataset made by the `simgrid` command
itself on tiny inputs -- and is then damaged the way a hand-edited or foreign file would be
(with xarray, or by cutting its bytes). Allocations are netCDF-4 as simgrid writes them (about
9 kB); sets and run datasets are written as netCDF-3 to stay small (7 kB; the run dataset
22 kB). Deterministic (the files come out byte-identical on a rerun): fixed seeds, and the
inputs are written under fixed relative names in a scratch folder, so the provenance
attributes (config and spec source) do not depend on where the script runs.

The `huge_*` cases declare far more than they store: netCDF-4 files written with netCDF4
directly, whose resized dimensions and extra variables are never written, so HDF5 allocates
nothing for them (a few kB to a few tens of kB on disk, up to 2e9 values declared). A reader
that loaded them would allocate what they declare.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from simgrid.cli import main
from simgrid.config import AllocationEntry
from simgrid.fcm import allocation_dataset
from simgrid.ncio import write_dataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ALLOCATION = HERE / "allocation"
SCENARIO_SET = HERE / "scenario_set"

# A tiny run: case33bw, three one-minute steps, one campus tripping once, no dispatch.
RUN_CONFIG = """
[run]
name = "tiny"
horizon_s = 180
dt_s = 60
[network]
case = "case33bw"
load_profile = "flat"
[upstream]
band_mw = 0.1
ramp_mw_per_min = 0.05
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 1.0
[[event]]
kind = "trip"
campus = "dc"
start_s = 60
duration_s = 60
"""

# A one-hour set on case33bw with events in every scenario (fixed counts): the base that the
# scenario_set cases damage. Same campus as the test's wrapper spec.
SET_SPEC = """
[spec]
name = "tiny"
horizon_s = 3600
dt_s = 60
[network]
case = "case33bw"
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 1.0
[[shock]]
kind = "ramp_up"
count = 2
magnitude = 0.2
ramp_rate = 1.0
duration_s = 600
[[shock]]
kind = "trip"
count = 1
fraction = 0.9
duration_s = 600
"""


def _made_by_cli(argv: list[str], files: dict[str, str]) -> xr.Dataset:
    """Run `simgrid` in a scratch folder holding `files`; return the dataset it wrote to out.nc."""
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for name, text in files.items():
                Path(name).write_text(text)
            with contextlib.redirect_stdout(io.StringIO()):
                code = main([*argv, "--out", "out.nc", "--no-progress"])
            assert code == 0, argv
            with xr.open_dataset("out.nc") as ds:
                return ds.load()
        finally:
            os.chdir(cwd)


def run_dataset() -> xr.Dataset:
    return _made_by_cli(["run", "tiny.toml"], {"tiny.toml": RUN_CONFIG})


def scenario_set(spec: str = SET_SPEC, name: str = "tiny.toml") -> xr.Dataset:
    return _made_by_cli(["scenarios", name, "--n", "3", "--seed", "1"], {name: spec})


def good_allocation() -> xr.Dataset:
    """What the wrapper config of the test would otherwise allocate: one bess-0.5 at bus 2."""
    return allocation_dataset([AllocationEntry("bess-0.5", 2, 1)])


def _nc(path: Path, ds: xr.Dataset) -> None:
    """An allocation as simgrid writes it (netCDF-4, through its atomic writer)."""
    path.unlink(missing_ok=True)
    write_dataset(ds, path)


def _nc3(path: Path, ds: xr.Dataset) -> None:
    """A run dataset or ScenarioSet as netCDF-3: a tenth of the netCDF-4 size (HDF5 spends kBs
    per variable); simgrid reads both, and what these cases damage is the same in either."""
    path.unlink(missing_ok=True)
    _plain(ds).to_netcdf(path, format="NETCDF3_64BIT")


def _bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _with(ds: xr.Dataset, **variables) -> xr.Dataset:
    """`ds` with variables replaced (same attributes)."""
    out = ds.copy()
    for name, (dims, values) in variables.items():
        out[name] = xr.Variable(dims, values, ds[name].attrs if name in ds else {})
    return out


def _declaring(
    ds: xr.Dataset,
    sizes: dict[str, int],
    extra: dict[str, tuple[tuple[str, ...], str]] | None = None,
) -> Callable[[Path], None]:
    """A writer of `ds` as netCDF-4 whose dimensions in `sizes` are declared that long (new
    ones added), with `extra` variables (name: (dims, dtype)) declared too. Variables along a
    resized dimension and the extra ones are never written: HDF5 allocates chunks only when
    they are written, so the file stays small whatever it declares."""

    def write(path: Path) -> None:
        path.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src.nc"
            _plain(ds).to_netcdf(src, engine="netcdf4")
            with netCDF4.Dataset(src) as s, netCDF4.Dataset(path, "w") as d:
                d.setncatts({a: s.getncattr(a) for a in s.ncattrs()})
                for name, dim in s.dimensions.items():
                    d.createDimension(name, sizes.get(name, len(dim)))
                for name, size in sizes.items():
                    if name not in d.dimensions:
                        d.createDimension(name, size)
                for name, v in s.variables.items():
                    declared = any(dim in sizes for dim in v.dimensions)
                    attrs = {a: v.getncattr(a) for a in v.ncattrs()}
                    fill = attrs.pop("_FillValue", None)
                    out = d.createVariable(
                        name, v.datatype, v.dimensions, zlib=declared, fill_value=fill
                    )
                    out.setncatts(attrs)
                    if not declared:
                        out[...] = v[...]
                for name, (dims, dtype) in (extra or {}).items():
                    d.createVariable(name, dtype, dims, zlib=True)

    return write


def _plain(ds: xr.Dataset) -> xr.Dataset:
    """`ds` without the encodings it was read with (written as xarray would write it anew)."""
    ds = ds.copy()
    ds.encoding = {}
    for var in ds.variables.values():
        var.encoding = {}
    return ds


def _nc_bytes(ds: xr.Dataset, write: Callable[[Path, xr.Dataset], None] = _nc) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.nc"
        write(path, ds)
        return path.read_bytes()


def _foreign(ds: xr.Dataset) -> xr.Dataset:
    """The same variables as written by another tool: none of simgrid's global attributes."""
    out = ds.copy()
    out.attrs = {}
    return out


def allocations(run: xr.Dataset, sets: xr.Dataset) -> dict[str, Callable[[Path], None]]:
    good = good_allocation()
    one = np.array
    return {
        "zero_count": lambda p: _nc(p, _with(good, count=("unit", one([0], dtype=np.int32)))),
        "negative_count": lambda p: _nc(p, _with(good, count=("unit", one([-1], dtype=np.int32)))),
        "fractional_count": lambda p: _nc(p, _with(good, count=("unit", one([1.5])))),
        "nan_count": lambda p: _nc(p, _with(good, count=("unit", one([np.nan])))),
        "string_count": lambda p: _nc(p, _with(good, count=("unit", one(["1"], dtype=str)))),
        "empty_unit": lambda p: _nc(p, allocation_dataset([])),
        "missing_count": lambda p: _nc(p, good.drop_vars("count")),
        # count along another dimension than `unit` (one count per module name, say)
        "wrong_dimension": lambda p: _nc(p, _with(good, count=("module_type", one([1])))),
        "unknown_bus": lambda p: _nc(p, _with(good, bus=("unit", one([33], dtype=np.int32)))),
        "negative_bus": lambda p: _nc(p, _with(good, bus=("unit", one([-1], dtype=np.int32)))),
        "unknown_module": lambda p: _nc(
            p, allocation_dataset([AllocationEntry("flux-capacitor", 2, 1)])
        ),
        # module given by its position in the catalogue instead of its name
        "numeric_module": lambda p: _nc(p, _with(good, module=("unit", one([0], dtype=np.int32)))),
        # the right variables, written by another tool (no simgrid_kind, no title)
        "foreign_netcdf": lambda p: _nc(p, _foreign(good)),
        "run_dataset": lambda p: _nc3(p, run),
        "scenario_set": lambda p: _nc3(p, sets),
        "text_renamed": lambda p: _bytes(p, b"allocation: one bess-0.5 at bus 2\n"),
        "csv_renamed": lambda p: _bytes(p, b"module,bus,count\nbess-0.5,2,1\n"),
        "truncated": lambda p: _bytes(p, (b := _nc_bytes(good))[: len(b) // 2]),
        "empty_file": lambda p: _bytes(p, b""),
        # a unit of two billion modules (the count fits int32, as simgrid writes it)
        "count_2e9": lambda p: _nc(
            p, _with(good, count=("unit", one([2_000_000_000], dtype=np.int32)))
        ),
        # two billion units declared, none written (module, bus and count along `unit`)
        "huge_declared_unit": _declaring(good, {"unit": 2_000_000_000}),
    }


def scenario_sets(run: xr.Dataset, base: xr.Dataset) -> dict[str, Callable[[Path], None]]:
    dims = base["event_kind"].dims
    spike = base["event_kind"].to_numpy().astype(object)
    spike[0, 0] = "spike"
    west = base["event_campus"].to_numpy().astype(object)
    west[0, 0] = "dc-west"
    width = base.sizes["event"]
    no_horizon = base.copy()
    del no_horizon.attrs["horizon_s"]

    def corrupt(p: Path) -> None:
        data = bytearray(_nc_bytes(base, _nc3))
        data[:4] = b"\0" * 4  # the netCDF signature (CDF\x02) overwritten
        p.write_bytes(bytes(data))

    return {
        "run_dataset": lambda p: _nc3(p, run),
        "allocation": lambda p: _nc(p, good_allocation()),
        "corrupt": corrupt,
        "text_renamed": lambda p: _bytes(p, b"scenario,event,kind\n0,0,ramp_up\n"),
        "empty_file": lambda p: _bytes(p, b""),
        "foreign_netcdf": lambda p: _nc3(p, _foreign(base)),
        "kinds_dropped": lambda p: _nc3(p, base.drop_vars("event_kind")),
        # an event kind simgrid does not know (a newer or hand-edited set)
        "spike_kind": lambda p: _nc3(p, _with(base, event_kind=(dims, spike.astype(str)))),
        # more events claimed than the padded table holds
        "too_many_events": lambda p: _nc3(
            p, _with(base, n_events=("scenario", np.full(base.sizes["scenario"], width + 2)))
        ),
        "empty_set": lambda p: _nc3(p, base.isel(scenario=slice(0, 0))),
        "no_horizon": lambda p: _nc3(p, no_horizon),
        # an event on a campus the set's campus table does not list
        "stray_campus": lambda p: _nc3(p, _with(base, event_campus=(dims, west.astype(str)))),
        # a set generated with a CSV utilisation profile, moved to a machine without the CSV
        # (sets store the profile's absolute path)
        "profile_gone": lambda p: _nc3(
            p, _with(base, campus_profile=("campus", np.array(["/nonexistent/profiles/dc.csv"])))
        ),
        # event onsets as text ('600.0', 'nan'): each parses as a float, so only the dtype
        # tells a number from text
        "string_event_start": lambda p: _nc3(
            p, _with(base, event_start_s=(dims, base["event_start_s"].to_numpy().astype(str)))
        ),
        # an extra variable along a dimension of its own, 1e8 and 2e9 float64 values declared
        # (0.8 GB and 16 GB in memory) and never written
        "huge_declared_1e8": _declaring(
            base, {"sample": 100_000_000}, {"padding": (("sample",), "f8")}
        ),
        "huge_declared_2e9": _declaring(
            base, {"sample": 2_000_000_000}, {"padding": (("sample",), "f8")}
        ),
        # the event table 1e8 slots wide: every event variable, and the `event` coordinate
        # (an index, which xarray reads as soon as it opens a file), declared that long
        "huge_event_dim": _declaring(base, {"event": 100_000_000}),
        # an index coordinate of 2e9 times: xarray would read it on open, before any check
        "huge_time_coordinate": _declaring(
            base, {"time": 2_000_000_000}, {"time": (("time",), "f8")}
        ),
        # every dimension within its bound, their product not: 5e6 x 5e6 float64 values
        "huge_declared_bytes": _declaring(
            base,
            {"sample": 5_000_000, "sample_to": 5_000_000},
            {"padding": (("sample", "sample_to"), "f8")},
        ),
    }


def main_() -> None:
    ALLOCATION.mkdir(exist_ok=True)
    SCENARIO_SET.mkdir(exist_ok=True)
    run = run_dataset()
    ai_set = scenario_set((REPO / "scenarios" / "ieee33_ai.toml").read_text(), "ieee33_ai.toml")
    base = scenario_set()
    for folder, makers in (
        (ALLOCATION, allocations(run, ai_set)),
        (SCENARIO_SET, scenario_sets(run, base)),
    ):
        for name, make in makers.items():
            path = folder / f"{name}.nc"
            make(path)
            print(f"{path.relative_to(REPO)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main_()
