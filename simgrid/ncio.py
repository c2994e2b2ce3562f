"""NetCDF output shared by every writer of simgrid: atomic files and provenance attributes."""

from __future__ import annotations

import contextlib
import enum
import glob
import importlib.metadata
import math
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import xarray as xr

from simgrid import __version__
from simgrid.errors import ConfigError, OutputError

_VERSIONED = (
    "pandapower",
    "lightsim2grid",
    "simpy",
    "numpy",
    "xarray",
    "netCDF4",
    "pyomo",
    "highspy",
)


# HDF5 (under netCDF4) is one process-wide C library that is not thread-safe: concurrent opens
# from threads of one process crash it (a dask worker with several threads, or several workers
# in one process). Every simgrid NetCDF read and write holds this lock; it guards the library,
# which is process-wide state whatever simgrid does, so the lock is too.
HDF5_LOCK = threading.RLock()


def package_versions() -> dict[str, str]:
    out = {"simgrid": __version__}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Interrupt:
    """SIGINT recorded instead of raised while a file is written (see `atomic_path`).

    A KeyboardInterrupt raised inside netCDF4/HDF5 or xarray's file locks can leave a lock
    held and hang the process at close; deferring it to `check()` points (between chunks) and
    to the end of the write keeps the library calls whole.
    """

    def __init__(self) -> None:
        self.hit = False

    def check(self) -> None:
        """Give up the write now if an interrupt arrived."""
        if self.hit:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[Interrupt]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach only the main thread (e.g. dask workers)
            return

        def record(signum, frame) -> None:
            self.hit = True

        previous = signal.signal(signal.SIGINT, record)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def _temporary(path: Path) -> Path:
    """A hidden temporary name beside `path` that carries the writer's process id."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def remove_stale_temporaries(path: Path) -> None:
    """Remove temporary files of writes to `path` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].split(".")
        pid = int(parts[0]) if len(parts) == 2 and parts[0].isdigit() else None
        if pid is None or not _alive(pid):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_path(path: str | Path, write: Callable[[Path, Interrupt], None]) -> Path:
    """Call `write(tmp, interrupt)` on a temporary file beside `path`, then rename it into place.

    The one interrupt-safe writer of simgrid: an error or a Ctrl-C (SIGINT is deferred to
    `interrupt.check()` calls and the end of the write) leaves neither a half-written target
    nor the temporary file, and raises (KeyboardInterrupt for SIGINT). A process killed outright
    may leave its temporary file; the next write to the same path removes it.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = _temporary(path)
    interrupt = Interrupt()
    with interrupt.deferred():
        try:
            write(tmp, interrupt)
            interrupt.check()
            umask = os.umask(0)
            os.umask(umask)
            if tmp.exists():
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            why = exc.strerror or str(exc)
            raise OutputError(f"{path}: cannot be written ({why}); nothing was written") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


# HDF5 keeps a cache of 64 MB per compressed variable of each open file by default: writing a
# year-long run (a dozen multi-dimensional series) filled those caches with chunks already
# written, and reading month-long group files filled them with chunks already read, growing
# memory with the run. Chunks are read and written whole, in order, so a small cache loses
# nothing.
SMALL_CHUNK_CACHE_BYTES = 2**20
TARGET_CHUNK_BYTES = 2**20  # along the first dimension of in-memory arrays


@contextlib.contextmanager
def small_chunk_cache() -> Iterator[None]:
    """HDF5 files opened (or created) inside keep SMALL_CHUNK_CACHE_BYTES per variable. The
    setting is the library's, process-wide: it is held under HDF5_LOCK and restored after."""
    import netCDF4

    with HDF5_LOCK:
        default = netCDF4.get_chunk_cache()
        netCDF4.set_chunk_cache(SMALL_CHUNK_CACHE_BYTES)
        try:
            yield
        finally:
            netCDF4.set_chunk_cache(*default)


Row = tuple[object, str, str]  # values, units, long_name


def variables(dims: str | tuple[str, ...], rows: Mapping[str, Row]) -> dict[str, xr.Variable]:
    """Variables from a table `name: (values, units, long_name)` along `dims`: every variable
    simgrid writes carries its units and a long name, and every writer states them this way."""
    return {
        name: xr.Variable(dims, values, {"units": units, "long_name": long_name})
        for name, (values, units, long_name) in rows.items()
    }


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write NetCDF atomically, compressing multi-dimensional variables (zlib level 1) in
    chunks of whole blocks along their first dimension."""
    encoding = {
        name: {"zlib": True, "complevel": 1, **_chunking(var)}
        for name, var in ds.data_vars.items()
        if var.ndim >= 2
    }

    def write(tmp: Path, _: Interrupt) -> None:
        with small_chunk_cache():
            ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)

    return atomic_path(path, write)


def _chunking(var: xr.DataArray) -> dict:
    """HDF5 chunks of a variable: its dask chunks along the first dimension (the blocks a long
    run is written in), or about TARGET_CHUNK_BYTES of it; whole along the others."""
    if var.size == 0 or var.dtype.kind not in "biuf":
        return {}
    first, rest = var.shape[0], var.shape[1:]
    if var.chunks is not None:
        rows = var.chunks[0][0]
    else:
        rows = TARGET_CHUNK_BYTES // max(1, var.dtype.itemsize * math.prod(rest))
    return {"chunksizes": (max(1, min(first, rows)), *rest)}


class DatasetKind(enum.StrEnum):
    """What a simgrid NetCDF file holds (its `simgrid_kind` attribute)."""

    RUN = "run"
    SCENARIO_SET = "scenario_set"
    ALLOCATION = "allocation"
    EPISODE = "episode"
    STRESS = "stress"
    EVALUATION = "evaluation"
    CHECKPOINT = "checkpoint"

    @property
    def article(self) -> str:
        return "an" if self is DatasetKind.ALLOCATION else "a"

    @property
    def label(self) -> str:
        return {
            "run": "run dataset",
            "scenario_set": "ScenarioSet",
            "allocation": "allocation",
            "episode": "stress-test episode",
            "stress": "stress-test result",
            "evaluation": "evaluation",
            "checkpoint": "long-run checkpoint",
        }[self.value]


_TITLES = {
    "simgrid run": DatasetKind.RUN,
    "simgrid ScenarioSet": DatasetKind.SCENARIO_SET,
    "simgrid FCM allocation": DatasetKind.ALLOCATION,
}


def _declared_kind(attrs: Mapping[str, object]) -> DatasetKind | None:
    """The kind a file declares (or, for files written before the attribute, its title)."""
    declared = attrs.get("simgrid_kind")
    # an attribute of numbers is read as an array, which cannot be looked up (unhashable)
    if isinstance(declared, str) and declared in DatasetKind._value2member_map_:
        return DatasetKind(declared)
    title = str(attrs.get("title", ""))
    return next((k for prefix, k in _TITLES.items() if title.startswith(prefix)), None)


# What a file may declare, by kind: checked from its header (netCDF4 reads dimensions, shapes,
# dtypes and attributes, never data) before anything is loaded. A header costs nothing to
# write: an HDF5 variable never written takes no room on disk, so a file of kilobytes can
# declare terabytes, and xarray would allocate them all (index coordinates as soon as it opens
# the file, the rest on `load`). The bounds are what simgrid itself writes, with room to spare.
#
# ncio sits below config and cli (tests/test_layering.py), so their limits are restated here;
# tests/test_ncio.py checks that the two agree.
MAX_SCENARIOS = 1_000_000  # cli.MAX_SCENARIOS: the most `simgrid scenarios --n` draws
MAX_STEPS = 1_100_000  # config.MAX_STEPS: a run's grid steps (two years at one minute)
# Events of a scenario or a run: a spec may expect 1,000 a simulated day
# (scenarios/spec.py MAX_EVENTS_PER_DAY), 730,000 over the two years of MAX_STEPS; more events
# than a run has grid steps is not a scenario simgrid could simulate.
MAX_EVENTS = MAX_STEPS
# A run's steps: its grid steps and every instant an event changes the system, at most 4 an
# event (`Event.knots`).
MAX_TIME = MAX_STEPS + 4 * MAX_EVENTS
# Networks simgrid reads (pandapower JSON, MATPOWER): about three times the largest published
# test cases (MATPOWER's ACTIVSg70k: 70,000 buses, 88,207 branches).
MAX_BUSES = 200_000
MAX_LINES = 300_000
MAX_CAMPUSES = 100_000  # each a [[campus]] table: far beyond any feeder's
MAX_UNITS = 1_000_000  # flexible units are (module type, bus) pairs: a few types at every bus
MAX_FEATURES = 64  # shock features of a set: simgrid writes 6
MAX_ALLOCATIONS = 10_000  # allocations one evaluation compares: each is a stress test
MAX_SUMMARY_ROWS = 10_000  # a stress test's metrics and statistics (a few per VaR level)
# Characters of a string stored as a char array (its last dimension): the longest simgrid
# writes is a utilisation profile's absolute path (PATH_MAX on Linux is 4,096 bytes).
MAX_STRING_CHARS = 4096
# A dimension a schema does not name (an extra variable's, a checkpoint's): no axis simgrid
# writes is longer than a run's time axis.
MAX_OTHER_DIM = MAX_TIME

# Memory a variable takes once read, counted from its header. Numbers at 8 bytes whatever is
# stored: xarray decodes masked or scaled integers (a _FillValue, a scale_factor) to float64.
# Text as Python strings in an object array: an 8-byte pointer and up to 80 bytes of str header
# each, and up to 4 bytes a character (UCS-4). The text of variable-length strings, and the
# attributes, are stored whole in the file, so they cost at most what the file holds: only
# what a header declares without storing it needs a bound.
VALUE_BYTES = 8
STRING_BYTES = 88
CHAR_BYTES = 4
GiB = 2**30

NUMBER, INTEGER, TEXT = "iuf", "iu", "SU"  # numpy dtype kinds (S: char array, U: string)
_KIND_NAMES = {NUMBER: "numbers", INTEGER: "integers", TEXT: "text"}


@dataclass(frozen=True)
class Schema:
    """What one kind of simgrid NetCDF file may declare: the longest each dimension may be
    (`max_dims`; a dimension it does not name: MAX_OTHER_DIM, or MAX_STRING_CHARS as a char
    array's string length), the dtype kinds of known variables (`dtypes`, e.g. NUMBER), and the
    most memory its variables may take once read (`max_bytes`, counted as `_declared_bytes`).
    Unknown variables are allowed, within the dimension bounds and `max_bytes`."""

    max_dims: Mapping[str, int]
    dtypes: Mapping[str, str]
    max_bytes: int


def _schema(
    max_dims: Mapping[str, int],
    max_bytes: int,
    *,
    numbers: tuple[str, ...] = (),
    integers: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
) -> Schema:
    dtypes = {
        **dict.fromkeys(numbers, NUMBER),
        **dict.fromkeys(integers, INTEGER),
        **dict.fromkeys(text, TEXT),
    }
    return Schema(MappingProxyType(dict(max_dims)), MappingProxyType(dtypes), max_bytes)


_RUN_DIMS = {
    "time": MAX_TIME,
    "bus": MAX_BUSES,
    "line": MAX_LINES,
    "campus": MAX_CAMPUSES,
    "event": MAX_EVENTS,
    "unit": MAX_UNITS,
}
# Run variables the report and the stress test compute with. Integers stay NUMBER: a run
# without events writes event_line as float64 (numpy's dtype of an empty list).
_RUN_NUMBERS = (
    "time",
    "demand_mw",
    "unserved_mw",
    "imbalance_mw",
    "import_mw",
    "vm_pu",
    "shed_mw",
    "uvls_shed_mw",
    "pf_converged",
    "energised",
    "line_in_service",
    "line_loading_percent",
    "line_from_bus",
    "line_to_bus",
    "campus_bus",
    "campus_p_nom_mw",
    "campus_load_mw",
    "event_start_s",
    "event_end_s",
    "event_line",
    "event_magnitude_mw",
    "event_fraction",
    "unit_bus",
    "unit_count",
    "unit_p_mw",
    "fcm_p_mw",
    "unserved_energy_mwh",
    "imbalance_energy_mwh",
)
_RUN_TEXT = ("event_kind", "event_campus", "unit_type")
# A run's memory counted as above: a day at one minute of configs/ieee33.toml (33 buses, 5
# units) counts 4.4 MB, so a year 1.6 GB and two years (MAX_STEPS) 3.4 GB; 8 GiB holds two
# years of a feeder of about 80 buses or one year of about 160.
RUN_BYTES = 8 * GiB

SCHEMAS: Mapping[DatasetKind, Schema] = MappingProxyType(
    {
        DatasetKind.RUN: _schema(_RUN_DIMS, RUN_BYTES, numbers=_RUN_NUMBERS, text=_RUN_TEXT),
        # an episode holds a run's scalars, or with --timeseries the whole run
        DatasetKind.EPISODE: _schema(
            _RUN_DIMS,
            RUN_BYTES,
            numbers=(*_RUN_NUMBERS, "episode_status", "closed_loop_cost"),
            text=(*_RUN_TEXT, "episode_error"),
        ),
        # The event table is MAX_SCENARIOS x the longest scenario, counted at about 320 bytes
        # a slot (the text dominates). At MAX_SCENARIOS the bundled day-long specs count about
        # 5 GB (ieee33_ai: 3.5 events a scenario, 15 slots) and 7.4 GB (ieee33_ai_heavy: 6.7,
        # 23 slots); a year-long set (ieee33_ai_year: 1,381 slots) fits 19,000 scenarios.
        # Reading such a set takes 0.7-0.9 x its count at the peak (measured on 2,000).
        DatasetKind.SCENARIO_SET: _schema(
            {
                "scenario": MAX_SCENARIOS,
                "event": MAX_EVENTS,
                "campus": MAX_CAMPUSES,
                "feature": MAX_FEATURES,
                "time": MAX_STEPS,  # the spec's grid of materialised load curves
                "scenario_to": MAX_SCENARIOS,  # the distance matrix of older versions
            },
            8 * GiB,
            numbers=(
                "event_start_s",
                "event_duration_s",
                "event_ramp_s",
                "event_return_ramp_s",
                "event_magnitude_mw",
                "event_fraction",
                "event_period_s",
                "n_events",
                "probability",
                "source_index",
                "features",
                "feature_scale",
                "campus_p_nom_mw",
                "campus_base_utilisation",
                "campus_power_factor",
                "ai_load_mw",
                "time",
            ),
            # written as int32 by every version; a fraction would be truncated unseen
            integers=("event_line", "event_group", "campus_bus"),
            text=("event_kind", "event_campus", "campus_profile", "campus"),
        ),
        # Stage-I writes one unit per module type and bus it uses: a few hundred bytes each.
        # `module` is not typed here: a module that is not a catalogue name (a number, say) is
        # named by the allocation's own check.
        DatasetKind.ALLOCATION: _schema({"unit": MAX_UNITS}, 256 * 2**20, numbers=("bus", "count")),
        # per scenario: a few dozen metrics (8 bytes each) and an error string
        DatasetKind.STRESS: _schema(
            {
                "scenario": MAX_SCENARIOS,
                "metric": MAX_SUMMARY_ROWS,
                "statistic": MAX_SUMMARY_ROWS,
            },
            4 * GiB,
            numbers=("probability", "episode_status", "summary", "scenario"),
            text=("metric", "statistic", "episode_error"),
        ),
        # per allocation and scenario: a dozen metrics
        DatasetKind.EVALUATION: _schema(
            {"allocation": MAX_ALLOCATIONS, "scenario": MAX_SCENARIOS},
            4 * GiB,
            numbers=("probability", "episode_status", "scenario"),
            text=("allocation", "allocation_file"),
        ),
        # a run's state at a block's end: arrays per bus, line, unit or step of the planner's
        # window, each along dimensions named after it
        DatasetKind.CHECKPOINT: _schema({}, 1 * GiB),
    }
)


@dataclass(frozen=True)
class _VariableHeader:
    """A variable as its header declares it (no data read)."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    kind: str  # numpy dtype kind: i, u, f numbers; S a char array; U strings; V anything else
    type_name: str  # as messages name it: float64, char, string, compound type ...


@dataclass(frozen=True)
class _Header:
    """What `read_dataset` checks before it loads a file: its kind attributes, dimensions and
    the variables it would read (the dropped ones left out)."""

    attrs: Mapping[str, object]
    dims: Mapping[str, int]
    variables: Mapping[str, _VariableHeader]


def _read_header(path: Path, drop: tuple[str, ...]) -> _Header:
    """The header of a NetCDF file (raises whatever netCDF4 raises on a file it cannot read)."""
    import netCDF4

    with netCDF4.Dataset(path, "r") as nc:
        names = nc.ncattrs()
        attrs = {a: nc.getncattr(a) for a in ("simgrid_kind", "title") if a in names}
        dims = {name: len(dim) for name, dim in nc.dimensions.items()}
        variables = {
            name: _variable_header(var) for name, var in nc.variables.items() if name not in drop
        }
    return _Header(attrs, dims, variables)


def _variable_header(var) -> _VariableHeader:
    """A netCDF4.Variable's dimensions, shape and type, read from its header."""
    import netCDF4

    datatype = var.datatype
    if var.dtype is str:  # NC_STRING: variable-length text (a VLType of str)
        kind, type_name = "U", "string"
    elif isinstance(datatype, netCDF4.EnumType):
        kind, type_name = datatype.dtype.kind, f"enum of {datatype.dtype}"
    elif isinstance(datatype, netCDF4.VLType):
        kind, type_name = "V", "variable-length type"  # its length is in the data, not here
    elif isinstance(datatype, netCDF4.CompoundType):
        kind, type_name = "V", "compound type"
    else:
        dtype = np.dtype(datatype)
        kind = dtype.kind if dtype.kind in "iufS" else "V"
        type_name = "char" if dtype.kind == "S" else str(dtype)
    shape = tuple(int(n) for n in var.shape)
    return _VariableHeader(tuple(var.dimensions), shape, kind, type_name)


def _declared_bytes(var: _VariableHeader) -> int:
    """Memory the variable takes once read, counted as VALUE_BYTES, STRING_BYTES and CHAR_BYTES
    say (Python integers: exact however large the shape)."""
    if var.kind == "S" and var.shape:  # a char array: strings along its last dimension
        return math.prod(var.shape[:-1]) * (STRING_BYTES + CHAR_BYTES * var.shape[-1])
    if var.kind in TEXT:
        return math.prod(var.shape) * STRING_BYTES
    return math.prod(var.shape) * VALUE_BYTES


def _size(n_bytes: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("kiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes} bytes"


def _check_header(header: _Header, kind: DatasetKind, bad: Callable[[str], ConfigError]) -> None:
    """Dimensions, then dtypes, then the memory the variables would take (see `Schema`)."""
    schema = SCHEMAS[kind]
    what = f"{kind.article} {kind.label}"
    variables = header.variables
    char_dims = {v.dims[-1] for v in variables.values() if v.kind == "S" and v.dims}
    used = {d for v in variables.values() for d in v.dims}
    for name, size in header.dims.items():
        if name not in used:
            continue  # along dropped variables only, or none: nothing is read along it
        if name in schema.max_dims:
            limit = schema.max_dims[name]
        else:
            limit = MAX_STRING_CHARS if name in char_dims else MAX_OTHER_DIM
        if size > limit:
            raise bad(f"declares dimension {name} of length {size:,}: at most {limit:,} in {what}")
    for name, var in variables.items():
        if var.kind == "V":
            raise bad(f"variable {name} is of a {var.type_name}: simgrid reads numbers and text")
        allowed = schema.dtypes.get(name)
        if allowed is not None and var.kind not in allowed:
            raise bad(
                f"variable {name} must hold {_KIND_NAMES[allowed]} in {what}; it holds "
                f"{_KIND_NAMES[TEXT] if var.kind in TEXT else 'numbers'} ({var.type_name})"
            )
    sizes = {name: _declared_bytes(var) for name, var in variables.items()}
    total = sum(sizes.values())
    if total > schema.max_bytes:
        largest = max(sizes, key=sizes.__getitem__)
        raise bad(
            f"declares {_size(total)} of data (variable {largest} alone {_size(sizes[largest])}"
            f"): at most {_size(schema.max_bytes)} in {what}"
        )


def declared_kind(path: str | Path) -> tuple[DatasetKind | None, object] | None:
    """The kind a file declares and its raw `simgrid_kind` attribute, from the header alone
    (nothing loaded); None for a file that cannot be read as NetCDF."""
    try:
        with HDF5_LOCK:
            header = _read_header(Path(path), ())
    except Exception:  # netCDF4/HDF5 fail in many ways on a foreign file
        return None
    return _declared_kind(header.attrs), header.attrs.get("simgrid_kind")


def read_dataset(
    path: str | Path,
    kind: DatasetKind,
    *,
    source: str,
    key: str,
    required: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> xr.Dataset:
    """The one guarded NetCDF reader: a file of the expected kind with its required variables,
    loaded into memory (without `drop`), or a ConfigError naming the file and what is wrong.

    Nothing is loaded before the header is checked against the kind's `Schema` (in this order:
    readable as NetCDF, kind, required variables, dimension lengths, dtypes, bytes), so a file
    cannot make simgrid allocate more than SCHEMAS[kind].max_bytes."""
    path = Path(path)
    value = str(path)
    if not path.is_file():
        raise ConfigError(source, key, value, "file not found")

    def bad(why: str) -> ConfigError:
        return ConfigError(source, key, value, why)

    def unreadable(exc: Exception) -> ConfigError:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return bad(f"cannot be read as NetCDF ({type(exc).__name__}: {why})")

    with HDF5_LOCK:
        try:
            header = _read_header(path, drop)
        except Exception as exc:  # netCDF4/HDF5 fail in many ways on a foreign file
            raise unreadable(exc) from None
        found = _declared_kind(header.attrs)
        if found is not kind:
            what = f"a simgrid {found.label}" if found else "not written by simgrid"
            raise bad(f"must be a simgrid {kind.label}; it is {what}")
        missing = [name for name in required if name not in header.variables]
        if missing:
            raise bad(f"is {kind.article} {kind.label} without {', '.join(missing)}")
        _check_header(header, kind, bad)
        try:
            # the engine the header was read with; simgrid stores times as seconds (units
            # "s"), so a CF time unit on a hand-edited file must not turn numbers into dates
            with xr.open_dataset(
                path,
                engine="netcdf4",
                drop_variables=list(drop),
                decode_times=False,
                decode_timedelta=False,
            ) as ds:
                return ds.load()
        except Exception as exc:
            raise unreadable(exc) from None
