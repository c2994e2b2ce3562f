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
from collections.abc import Callable, Iterator
from pathlib import Path

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
        }[self.value]


_TITLES = {
    "simgrid run": DatasetKind.RUN,
    "simgrid ScenarioSet": DatasetKind.SCENARIO_SET,
    "simgrid FCM allocation": DatasetKind.ALLOCATION,
}


def kind_of(ds: xr.Dataset) -> DatasetKind | None:
    """The kind a dataset declares (or, for files written before the attribute, its title)."""
    declared = ds.attrs.get("simgrid_kind")
    if declared in DatasetKind._value2member_map_:
        return DatasetKind(declared)
    title = str(ds.attrs.get("title", ""))
    return next((k for prefix, k in _TITLES.items() if title.startswith(prefix)), None)


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
    loaded into memory (without `drop`), or a ConfigError naming the file and what is wrong."""
    path = Path(path)
    value = str(path)
    if not path.is_file():
        raise ConfigError(source, key, value, "file not found")
    try:
        with HDF5_LOCK, xr.open_dataset(path, drop_variables=list(drop)) as ds:
            ds = ds.load()
    except Exception as exc:  # netCDF4/HDF5/xarray fail in many ways on a foreign file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            source, key, value, f"cannot be read as NetCDF ({type(exc).__name__}: {why})"
        ) from None
    found = kind_of(ds)
    if found is not kind:
        what = f"a simgrid {found.label}" if found else "not written by simgrid"
        raise ConfigError(source, key, value, f"must be a simgrid {kind.label}; it is {what}")
    missing = [name for name in required if name not in ds.variables]
    if missing:
        raise ConfigError(
            source, key, value, f"is {kind.article} {kind.label} without {', '.join(missing)}"
        )
    return ds
