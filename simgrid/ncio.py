"""NetCDF output shared by every writer of simgrid: atomic files and provenance attributes."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from simgrid import __version__

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


def package_versions() -> dict[str, str]:
    out = {"simgrid": __version__}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def atomic_path(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A crash or an error leaves neither a half-written target nor the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)  # mkstemp makes the file private; give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write NetCDF atomically, compressing multi-dimensional variables (zlib level 1)."""
    encoding = {
        name: {"zlib": True, "complevel": 1} for name, var in ds.data_vars.items() if var.ndim >= 2
    }
    return atomic_path(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding))
