"""Flexible Capacity Modules: the module catalogue, supplier inventories and allocations.

A catalogue (TOML) lists module types with per-module ratings and costs, and suppliers'
inventories. An allocation places `count` modules of a type at a bus; the modules at one bus
act as one aggregated unit (ratings x count; generators commit together).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid import units
from simgrid.config import AllocationEntry, Table, read_toml
from simgrid.errors import ConfigError
from simgrid.ncio import DatasetKind, read_dataset

# A catalogue module: its name, type, rating and price, and the keys of its type's family
# (simgrid.units). Re-exported here, where catalogues are read.
Module = units.Module


@dataclass(frozen=True)
class Supplier:
    name: str
    module: str
    available: int
    unit_cost: float
    lead_time_days: float


@dataclass(frozen=True)
class Catalogue:
    modules: tuple[Module, ...]
    suppliers: tuple[Supplier, ...]
    source: str
    text: str = ""  # the TOML as read (recorded with every run that dispatches from it)

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def module(self, name: str) -> Module:
        return next(m for m in self.modules if m.name == name)


@dataclass(frozen=True)
class Unit:
    """An allocated, aggregated unit: `module` already scaled by `count`."""

    name: str
    bus: int
    count: int
    module: Module

    @property
    def type(self) -> str:
        return self.module.type

    @property
    def family(self) -> units.Family:
        return units.family_of(self.module.type)


def _module(t: Table) -> Module:
    """One [[module]] table: the keys every module has, then its family's keys and checks."""
    mtype = t.string("type", choices=units.catalogue_types())
    family = units.family_of(mtype)
    fields: dict[str, object] = {
        "name": t.string("name"),
        "type": mtype,
        "p_mw": t.number("p_mw", lo=0, lo_open=True),
        "capex": t.number("capex", 0.0, lo=0),
    }
    for key in family.types[mtype]:
        fields[key.name] = t.number(
            key.name,
            None if key.required else family.default(key.name),
            lo=0,
            lo_open=key.lo_open,
            hi=key.hi,
            allow_inf=key.unbounded,
        )
    m = family.module(**fields)
    family.check(m, t.fail)
    t.done()
    return m


def load_catalogue(path: str | Path) -> Catalogue:
    data, text, source = read_toml(path)
    root = Table(data, "", source)
    root.only(("module", "supplier"), "an FCM catalogue")
    modules = tuple(_module(t) for t in root.tables("module"))
    names = [m.name for m in modules]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ConfigError(source, f"module[{i}].name", n, "must be unique")
    suppliers = []
    for t in root.tables("supplier"):
        module = t.string("module")
        if module not in names:
            raise t.fail("module", f"must name a [[module]] ({', '.join(names)})")
        suppliers.append(
            Supplier(
                t.string("name"),
                module,
                t.integer("available", lo=0),
                t.number("unit_cost", lo=0),
                t.number("lead_time_days", lo=0),
            )
        )
        t.done()
    root.done()
    return Catalogue(modules, tuple(suppliers), source, text)


def build_units(
    catalogue: Catalogue,
    entries: Sequence[AllocationEntry],
    n_bus: int,
    source: str,
    key: str = "allocation",
) -> tuple[Unit, ...]:
    """Aggregate allocation entries into units (one per module type and bus).

    `source` and `key` name where the entries came from: a config's [[allocation]] tables, or
    an allocation file (key `unit`: its entries along the dimension unit)."""
    names = [m.name for m in catalogue.modules]
    counts: dict[tuple[str, int], int] = {}
    for i, e in enumerate(entries):
        if e.module not in names:
            raise ConfigError(
                source,
                f"{key}[{i}].module",
                e.module,
                f"must name a module of {catalogue.source} ({', '.join(names)})",
            )
        if not 0 <= e.bus < n_bus:
            raise ConfigError(
                source, f"{key}[{i}].bus", e.bus, f"must be a bus index (0..{n_bus - 1})"
            )
        counts[(e.module, e.bus)] = counts.get((e.module, e.bus), 0) + e.count
    return tuple(
        Unit(f"{m}@{b}", b, n, catalogue.module(m).times(n))
        for (m, b), n in counts.items()
        if n > 0
    )


def allocation_dataset(entries: Sequence[AllocationEntry]) -> xr.Dataset:
    """An allocation as a Dataset (dim `unit`): the format Stage-I writes and runs read."""
    return xr.Dataset(
        {
            "module": (
                "unit",
                np.array([e.module for e in entries], dtype=str),
                {"long_name": "catalogue module type"},
            ),
            "bus": (
                "unit",
                np.array([e.bus for e in entries], dtype=np.int32),
                {"long_name": "pandapower bus index"},
            ),
            "count": (
                "unit",
                np.array([e.count for e in entries], dtype=np.int32),
                {"units": "1", "long_name": "modules placed"},
            ),
        },
        attrs={"title": "simgrid FCM allocation", "simgrid_kind": DatasetKind.ALLOCATION.value},
    )


# The modules one allocation entry may place: a unit acts as `count` x its module's ratings, so
# a million of the catalogue's MW-scale modules is hundreds of GW at one bus, beyond any network
# simgrid models; a larger count is a typo or a hostile file (a count of 2e9 was accepted and
# built one unit of 2e9 x the ratings).
MAX_MODULES_PER_UNIT = 1_000_000


def allocation_entries(
    ds: xr.Dataset, source: str = "<allocation>", key: str = "dispatch.allocation_file"
) -> tuple[AllocationEntry, ...]:
    """The entries of an allocation dataset, checked: at least one, counts whole, >= 1 and
    <= MAX_MODULES_PER_UNIT."""

    def bad(why: str) -> ConfigError:
        return ConfigError(source, key, str(ds.encoding.get("source", source)), why)

    for name in ("module", "bus", "count"):
        if ds[name].dims != ("unit",):
            raise bad(f"variable {name} must lie along the dimension unit")
    if ds.sizes["unit"] == 0:
        raise bad("holds no unit: an empty allocation would silently run as do-nothing")
    counts, buses = ds["count"].to_numpy(), ds["bus"].to_numpy()
    for name, values in (("count", counts), ("bus", buses)):
        if values.dtype.kind not in "iuf" or not np.all(np.isfinite(values)):
            raise bad(f"{name} must hold finite numbers")
        if np.any(values != np.round(values)):
            raise bad(f"{name} must hold whole numbers")
    if np.any(counts < 1):
        raise bad(f"count must be >= 1 for every unit (found {int(counts.min())})")
    if np.any(counts > MAX_MODULES_PER_UNIT):
        most = int(counts.max())
        raise bad(f"count must be <= {MAX_MODULES_PER_UNIT:,} for every unit (found {most:,})")
    if np.any(buses < 0):
        raise bad(f"bus must be a bus index >= 0 (found {int(buses.min())})")
    return tuple(
        AllocationEntry(str(m), int(b), int(c))
        for m, b, c in zip(ds["module"].to_numpy(), buses, counts, strict=True)
    )


def read_allocation_dataset(
    path: str | Path, source: str, key: str = "dispatch.allocation_file"
) -> xr.Dataset:
    """An allocation NetCDF read and checked (`allocation_entries`): what `run`, `evaluate` and
    `report` all accept."""
    ds = read_dataset(
        path, DatasetKind.ALLOCATION, source=source, key=key, required=("module", "bus", "count")
    )
    ds.encoding["source"] = str(path)
    allocation_entries(ds, source, key)
    return ds


def read_allocation(path: Path, source: str) -> tuple[AllocationEntry, ...]:
    """An allocation NetCDF (Stage-I's output, or `allocation_dataset`) as checked entries."""
    return allocation_entries(read_allocation_dataset(path, source), source)
