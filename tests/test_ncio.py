"""The guarded NetCDF reader checks a file's header against its kind's schema before it loads
anything: a file that declares far more than it stores is refused without the allocation."""

from __future__ import annotations

import contextlib
import io
import math
import tracemalloc
from pathlib import Path

import netCDF4
import pytest
import xarray as xr

from simgrid import cli, config, ncio
from simgrid.cli import main
from simgrid.config import AllocationEntry
from simgrid.errors import ConfigError
from simgrid.fcm import MAX_MODULES_PER_UNIT, allocation_dataset, read_allocation
from simgrid.ncio import SCHEMAS, DatasetKind, read_dataset, write_dataset
from simgrid.scenarios.scenarioset import SET_VARIABLES, read_set

from conftest import MINIMAL

CORPUS = Path(__file__).parent / "bad_inputs"
HUGE = {
    "scenario_set/huge_declared_1e8.nc": 10**8,
    "scenario_set/huge_declared_2e9.nc": 2 * 10**9,
    "scenario_set/huge_event_dim.nc": 3 * 10**8,
    "scenario_set/huge_time_coordinate.nc": 2 * 10**9,
    "scenario_set/huge_declared_bytes.nc": 25 * 10**12,
    "allocation/huge_declared_unit.nc": 2 * 10**9,
}
# what refusing a file from its header may allocate (traced by Python): the header and the
# error, nowhere near the 0.8 GB and more that loading these files would take
REFUSAL_PEAK_BYTES = 4 * 2**20

SPEC = """
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
kind = "trip"
count = 1
fraction = 0.9
duration_s = 600
"""


def _quiet_main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


@pytest.fixture
def good_set(tmp_path) -> Path:
    spec, out = tmp_path / "tiny.toml", tmp_path / "tiny_set.nc"
    spec.write_text(SPEC)
    assert (
        _quiet_main(["scenarios", str(spec), "--n", "3", "--out", str(out), "--no-progress"]) == 0
    )
    return out


def _traced_peak(read) -> tuple[int, Exception | None]:
    tracemalloc.start()
    try:
        read()
        err = None
    except ConfigError as exc:
        err = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, err


@pytest.mark.parametrize("name", list(HUGE))
def test_a_file_declaring_billions_of_values_is_refused_before_anything_is_loaded(name):
    path = CORPUS / name
    kind = DatasetKind.ALLOCATION if name.startswith("allocation") else DatasetKind.SCENARIO_SET
    peak, err = _traced_peak(
        lambda: read_dataset(path, kind, source="test", key="--scenarios", required=())
    )
    assert isinstance(err, ConfigError), name
    assert str(path) in str(err) and "at most" in str(err)
    assert peak < REFUSAL_PEAK_BYTES, f"{name}: {peak:,} bytes traced"


@pytest.mark.parametrize("name", list(HUGE))
def test_the_huge_corpus_files_are_small_on_disk(name):
    """Their variables are never written: HDF5 allocates nothing for them."""
    path = CORPUS / name
    with netCDF4.Dataset(path) as nc:
        declared = sum(math.prod(v.shape) for v in nc.variables.values())
    assert declared >= HUGE[name]
    assert path.stat().st_size < 64 * 2**10


def test_a_good_set_and_allocation_still_read(good_set, tmp_path):
    ds = read_set(good_set, "test")
    assert ds.sizes["scenario"] == 3 and set(SET_VARIABLES) <= set(ds.variables)
    assert ds["event_start_s"].dtype.kind == "f"
    path = tmp_path / "allocation.nc"
    write_dataset(allocation_dataset([AllocationEntry("bess-0.5", 2, 3)]), path)
    assert read_allocation(path, "test") == (AllocationEntry("bess-0.5", 2, 3),)


def test_a_short_run_reads_back_as_a_run_dataset(tmp_path):
    cfg, out = tmp_path / "run.toml", tmp_path / "run.nc"
    cfg.write_text(MINIMAL.replace("horizon_s = 3600", "horizon_s = 180"))
    assert _quiet_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    ds = read_dataset(out, DatasetKind.RUN, source="test", key="RESULT")
    assert ds.sizes["time"] == 3


def test_dropped_variables_are_neither_counted_nor_loaded():
    """The 1e8 variable is the only thing along its dimension: dropped, the set is whole."""
    path = CORPUS / "scenario_set" / "huge_declared_1e8.nc"
    peak, err = _traced_peak(lambda: read_set(path, "test", drop=("padding",)))
    assert err is None
    assert peak < REFUSAL_PEAK_BYTES


def test_kind_and_required_variables_are_checked_before_the_sizes():
    path = CORPUS / "scenario_set" / "huge_declared_2e9.nc"
    with pytest.raises(ConfigError, match="must be a simgrid run dataset; it is a simgrid Scen"):
        read_dataset(path, DatasetKind.RUN, source="test", key="RESULT")
    with pytest.raises(ConfigError, match="is a ScenarioSet without ai_load_mw$"):
        read_dataset(
            path, DatasetKind.SCENARIO_SET, source="test", key="k", required=("ai_load_mw",)
        )


def test_text_where_numbers_belong_is_refused_with_its_dtype():
    path = CORPUS / "scenario_set" / "string_event_start.nc"
    with pytest.raises(ConfigError, match=r"event_start_s must hold numbers .* text \(char\)"):
        read_set(path, "test")


def test_a_time_unit_does_not_turn_seconds_into_dates(good_set, tmp_path):
    """simgrid stores seconds (units "s"); a CF time unit on an edited file is not decoded."""
    with xr.open_dataset(good_set) as ds:
        ds = ds.load()
    ds["event_start_s"].attrs["units"] = "seconds since 2000-01-01"
    edited = tmp_path / "edited.nc"
    ds.to_netcdf(edited)
    assert read_set(edited, "test")["event_start_s"].dtype.kind == "f"


def test_a_count_beyond_the_bound_is_refused(tmp_path):
    path = tmp_path / "allocation.nc"
    write_dataset(allocation_dataset([AllocationEntry("bess-0.5", 2, MAX_MODULES_PER_UNIT)]), path)
    assert read_allocation(path, "test")[0].count == MAX_MODULES_PER_UNIT
    write_dataset(
        allocation_dataset([AllocationEntry("bess-0.5", 2, MAX_MODULES_PER_UNIT + 1)]), path
    )
    with pytest.raises(ConfigError, match="count must be <= 1,000,000 for every unit"):
        read_allocation(path, "test")


def test_every_kind_has_a_schema_and_the_restated_bounds_agree():
    assert set(SCHEMAS) == set(DatasetKind)
    assert ncio.MAX_SCENARIOS == cli.MAX_SCENARIOS
    assert ncio.MAX_STEPS == config.MAX_STEPS
    assert SCHEMAS[DatasetKind.SCENARIO_SET].max_dims["scenario"] == cli.MAX_SCENARIOS
    assert SCHEMAS[DatasetKind.RUN].max_dims["time"] > config.MAX_STEPS  # and event instants
