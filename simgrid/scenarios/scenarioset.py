"""ScenarioSet: scenarios as an xarray Dataset (dims `scenario`, `event`, `campus`, `feature`).

The event table is padded to the longest scenario (kind '' and NaN beyond `n_events`), and
compressed on disk so the padding costs next to nothing. Shock features (below) support
reduction and the Wasserstein distance of Stage-I, which is computed from them where it is used
(scenarios/reduce.py); the set stores only their scale. Nothing is quadratic in the number of
scenarios N: on disk a set grows with the events drawn; in memory the table is N x the longest
scenario (which grows only slowly with N). Materialised AI load curves
`ai_load_mw(scenario, time, campus)` are streamed to the file in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.aiload import campus_loads_mw
from simgrid.config import RunConfig, ScenarioRef, not_a_data_file
from simgrid.errors import ConfigError
from simgrid.ncio import DatasetKind, atomic_path, package_versions, read_dataset, variables
from simgrid.network import Network, build_network, check_placement
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.scenarios.sample import Scenario, sample_scenario
from simgrid.scenarios.spec import ScenarioSpec
from simgrid.types import Campus, Event, EventKind

# Features of a scenario, from its aggregate AI load P(t) on the spec's dt grid against the
# no-shock base B(t), and its line outages valued at the nominal load they island.
FEATURES = {
    "peak_increase_mw": "max(P - B)",
    "peak_decrease_mw": "max(B - P)",
    "max_ramp_up_mw_per_min": "largest rise of P between grid points, per minute",
    "max_ramp_down_mw_per_min": "largest fall of P between grid points, per minute",
    "deviation_energy_mwh": "integral of |P - B|",
    "islanded_energy_mwh": "sum over outages of islanded nominal load x outage time",
}

FEATURE_UNITS = {
    "peak_increase_mw": "MW",
    "peak_decrease_mw": "MW",
    "max_ramp_up_mw_per_min": "MW/min",
    "max_ramp_down_mw_per_min": "MW/min",
    "deviation_energy_mwh": "MWh",
    "islanded_energy_mwh": "MWh",
}

_FLOAT_FIELDS = (
    "start_s",
    "duration_s",
    "ramp_s",
    "return_ramp_s",
    "magnitude_mw",
    "fraction",
    "period_s",
)
_UNITS = {
    "start_s": "s",
    "duration_s": "s",
    "ramp_s": "s",
    "return_ramp_s": "s",
    "magnitude_mw": "MW",
    "fraction": "1",
    "period_s": "s",
}


@dataclass(frozen=True, eq=False)
class SetContext:
    """What sampling and features need from the spec's network, built once per set."""

    spec: ScenarioSpec
    network: Network
    in_service_lines: tuple[int, ...]
    islanded_mw: np.ndarray  # per line: nominal conventional + campus base load it islands
    t_s: np.ndarray
    base_mw: np.ndarray  # aggregate campus base load on the grid
    profiles: tuple[LoadProfile, ...]  # campus utilisation profiles, read once


def build_context(spec: ScenarioSpec) -> SetContext:
    network = build_network(spec.network, spec.source)
    check_placement(spec.source, spec.campuses, (), network)
    for i, shock in enumerate(spec.shocks):
        for line in shock.lines:
            if line >= network.n_line:
                raise ConfigError(
                    spec.source,
                    f"shock[{i}].lines",
                    line,
                    f"must be line indices of {network.name} (0..{network.n_line - 1})",
                )
            if not network.line_in_service[line]:
                raise ConfigError(
                    spec.source,
                    f"shock[{i}].lines",
                    line,
                    f"is normally open in {network.name} (a tie switch): outages take out "
                    "in-service lines",
                )
    load = network.base_load_p_mw.copy()
    for c in spec.campuses:
        load[c.bus] += c.base_utilisation * c.p_nom_mw
    islanded = np.zeros(network.n_line)
    for line in np.flatnonzero(network.line_in_service):
        status = network.line_in_service.copy()
        status[line] = False
        islanded[line] = load[~network.energised(status)].sum()
    t = np.arange(0.0, spec.horizon_s, spec.dt_s)
    profiles = tuple(campus_profile(c, spec.source) for c in spec.campuses)
    base = campus_loads_mw(spec.campuses, profiles, (), t).sum(axis=1)
    return SetContext(
        spec,
        network,
        tuple(np.flatnonzero(network.line_in_service).tolist()),
        islanded,
        t,
        base,
        profiles,
    )


def ai_load_curves(ctx: SetContext, events: Sequence[Event]) -> np.ndarray:
    """Per-campus AI load on the spec's grid, shape (time, campus)."""
    return campus_loads_mw(ctx.spec.campuses, ctx.profiles, events, ctx.t_s)


def features(ctx: SetContext, scenario: Scenario) -> np.ndarray:
    p = ai_load_curves(ctx, scenario.events).sum(axis=1)
    dev = p - ctx.base_mw
    ramp = np.diff(p) / (ctx.spec.dt_s / 60.0) if len(p) > 1 else np.zeros(1)
    islanded = (
        sum(
            ctx.islanded_mw[e.line] * min(e.duration_s, ctx.spec.horizon_s - e.start_s)
            for e in scenario.events
            if e.kind is EventKind.LINE_OUTAGE
        )
        / 3600.0
    )
    return np.array(
        [
            max(dev.max(), 0.0),
            max(-dev.min(), 0.0),
            max(ramp.max(), 0.0),
            max(-ramp.min(), 0.0),
            np.abs(dev).sum() * ctx.spec.dt_s / 3600.0,
            islanded,
        ]
    )


def generate(
    ctx: SetContext, seed: int, n: int, progress: Callable[[int], None] | None = None
) -> xr.Dataset:
    """Scenarios 0..n-1 of (spec, seed), with features and equal probabilities."""
    scenarios, feats = [], np.empty((n, len(FEATURES)))
    for i in range(n):
        sc = sample_scenario(ctx.spec, seed, i, ctx.in_service_lines)
        scenarios.append(sc)
        feats[i] = features(ctx, sc)
        if progress is not None:
            progress(1)
    ds = to_dataset(ctx.spec, seed, scenarios, feats, np.full(n, 1.0 / n))
    ds.attrs.update(
        network_name=ctx.network.name,
        network_scale=ctx.network.scale,
        network_n_bus=ctx.network.n_bus,
    )
    return ds


def to_dataset(
    spec: ScenarioSpec,
    seed: int,
    scenarios: Sequence[Scenario],
    feats: np.ndarray,
    probability: np.ndarray,
) -> xr.Dataset:
    n = len(scenarios)
    width = max([len(s.events) for s in scenarios], default=0)
    table: dict[str, np.ndarray] = {f: np.full((n, width), np.nan) for f in _FLOAT_FIELDS}
    kind = np.full((n, width), "", dtype=object)
    campus = np.full((n, width), "", dtype=object)
    line = np.full((n, width), -1, dtype=np.int32)
    group = np.full((n, width), -1, dtype=np.int32)
    for i, sc in enumerate(scenarios):
        for j, e in enumerate(sc.events):
            for f in _FLOAT_FIELDS:
                table[f][i, j] = getattr(e, f)
            kind[i, j] = e.kind.value
            campus[i, j] = e.campus or ""
            line[i, j] = -1 if e.line is None else e.line
            group[i, j] = e.group
    dims = ("scenario", "event")
    data = {
        f"event_{f}": xr.Variable(dims, v, {"units": _UNITS[f], "long_name": f"event {f}"})
        for f, v in table.items()
    }
    data["event_kind"] = xr.Variable(
        dims, kind.astype(str), {"units": "1", "long_name": "event kind ('' beyond n_events)"}
    )
    data["event_campus"] = xr.Variable(
        dims, campus.astype(str), {"units": "1", "long_name": "campus hit ('' for an outage)"}
    )
    data["event_line"] = xr.Variable(
        dims, line, {"units": "1", "long_name": "line taken out (-1: an AI event)"}
    )
    data["event_group"] = xr.Variable(
        dims,
        group,
        {"units": "1", "long_name": "coincident group (-1: an independent event)"},
    )
    data["n_events"] = xr.Variable(
        "scenario",
        np.array([len(s.events) for s in scenarios]),
        {"units": "1", "long_name": "events in the scenario"},
    )
    data["probability"] = xr.Variable(
        "scenario", probability, {"units": "1", "long_name": "scenario probability"}
    )
    data["source_index"] = xr.Variable(
        "scenario",
        np.array([s.index for s in scenarios]),
        {
            "units": "1",
            "long_name": "index of the scenario in its (spec, seed) stream: regenerates it alone",
        },
    )
    data["features"] = xr.Variable(
        ("scenario", "feature"),
        feats,
        {
            "units": "mixed: see feature_units",
            "long_name": "shock features (see the feature coordinate)",
        },
    )
    data["feature_units"] = xr.Variable(
        "feature",
        np.array([FEATURE_UNITS[f] for f in FEATURES], dtype=str),
        {"units": "1", "long_name": "units of each feature"},
    )
    cs = spec.campuses
    campus_vars = {
        "campus_bus": (np.array([c.bus for c in cs], dtype=np.int32), "1", "bus"),
        "campus_p_nom_mw": (np.array([c.p_nom_mw for c in cs]), "MW", "nameplate"),
        "campus_base_utilisation": (
            np.array([c.base_utilisation for c in cs]),
            "1",
            "base utilisation",
        ),
        "campus_power_factor": (np.array([c.power_factor for c in cs]), "1", "power factor"),
        "campus_profile": (
            np.array(
                [str(c.profile_file.resolve()) if c.profile_file else c.profile for c in cs],
                dtype=str,
            ),
            "1",
            "utilisation profile (name or CSV path)",
        ),
    }
    data.update(
        variables("campus", {k: (v, u, f"campus {ln}") for k, (v, u, ln) in campus_vars.items()})
    )
    coords = {
        "scenario": ("scenario", np.arange(n), {"long_name": "scenario number in this set"}),
        "event": ("event", np.arange(width), {"long_name": "event slot within a scenario"}),
        "campus": (
            "campus",
            np.array([c.name for c in cs], dtype=str),
            {"long_name": "AI campus name"},
        ),
        "feature": (
            "feature",
            np.array(list(FEATURES), dtype=str),
            {"long_name": "; ".join(f"{k}: {v}" for k, v in FEATURES.items())},
        ),
    }
    attrs = {
        "title": f"simgrid ScenarioSet {spec.name}",
        "simgrid_kind": "scenario_set",
        "spec_name": spec.name,
        "spec_source": spec.source,
        "spec_sha256": spec.text_sha256,
        "spec_toml": spec.text,
        "seed": seed,
        "horizon_s": spec.horizon_s,
        "dt_s": spec.dt_s,
        "n_generated": n,
        "reduction": "none",
    }
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return xr.Dataset(data, coords=coords, attrs=attrs)


@dataclass(frozen=True, eq=False)
class EventTable:
    """The event table of a set as plain arrays, to rebuild scenarios fast."""

    n_events: np.ndarray
    kind: np.ndarray
    campus: np.ndarray
    line: np.ndarray
    group: np.ndarray
    floats: dict[str, np.ndarray]

    @classmethod
    def of(cls, ds: xr.Dataset) -> EventTable:
        return cls(
            ds["n_events"].to_numpy(),
            ds["event_kind"].to_numpy().astype(str).astype(object),
            ds["event_campus"].to_numpy().astype(str).astype(object),
            ds["event_line"].to_numpy(),
            ds["event_group"].to_numpy(),
            {f: ds[f"event_{f}"].to_numpy() for f in _FLOAT_FIELDS},
        )

    def events(self, i: int) -> tuple[Event, ...]:
        return tuple(
            Event(
                kind=EventKind(self.kind[i, j]),
                campus=self.campus[i, j] or None,
                line=None if self.line[i, j] < 0 else int(self.line[i, j]),
                group=int(self.group[i, j]),
                **{f: float(v[i, j]) for f, v in self.floats.items()},
            )
            for j in range(int(self.n_events[i]))
        )


def check_set(ds: xr.Dataset, source: str, key: str) -> None:
    """A ScenarioSet read from a file is whole and consistent, or a ConfigError naming it."""

    def bad(why: str) -> ConfigError:
        return ConfigError(source, key, str(ds.encoding.get("source", source)), why)

    for attr in ("horizon_s", "dt_s", "seed"):
        if attr not in ds.attrs:
            raise bad(f"has no {attr} attribute: not a whole ScenarioSet")
    n = ds.sizes.get("scenario", 0)
    if n == 0:
        raise bad("holds no scenario")
    counts = ds["n_events"].to_numpy()
    width = ds.sizes.get("event", 0)
    if counts.dtype.kind not in "iu" or counts.min() < 0 or counts.max() > width:
        raise bad(f"n_events must count events within the event table (0..{width})")
    kinds = ds["event_kind"].to_numpy().astype(str)
    used = np.arange(width)[None, :] < counts[:, None]
    unknown = sorted(set(kinds[used]) - {k.value for k in EventKind})
    if unknown:
        raise bad(
            f"event_kind holds {unknown[0]!r}: kinds are {', '.join(k.value for k in EventKind)}"
        )
    campuses = set(ds["campus"].to_numpy().astype(str))
    named = ds["event_campus"].to_numpy().astype(str)[used & (kinds != "line_outage")]
    stray = sorted(set(named) - campuses)
    if stray:
        raise bad(f"event_campus names {stray[0]!r}, not a campus of the set")
    p = ds["probability"].to_numpy()
    if not (np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0):
        raise bad("probability must hold finite, non-negative numbers of positive sum")
    for prof in ds["campus_profile"].to_numpy().astype(str):
        if not prof.lower().endswith(".csv"):
            continue
        if not Path(prof).is_file():
            raise bad(f"names the utilisation profile {prof}, which no longer exists")
        why = not_a_data_file(Path(prof))
        if why is not None:
            raise bad(f"names the utilisation profile {prof}, which {why}")


def scenario_events(ds: xr.Dataset, index: int) -> tuple[Event, ...]:
    """The events of scenario `index` (position in the set) as records."""
    return EventTable.of(ds.isel(scenario=[index])).events(0)


def set_campuses(ds: xr.Dataset) -> tuple[Campus, ...]:
    out = []
    for k, name in enumerate(ds["campus"].to_numpy()):
        prof = str(ds["campus_profile"].to_numpy()[k])
        is_file = prof.lower().endswith(".csv")
        out.append(
            Campus(
                str(name),
                int(ds["campus_bus"][k]),
                float(ds["campus_p_nom_mw"][k]),
                float(ds["campus_base_utilisation"][k]),
                float(ds["campus_power_factor"][k]),
                profile=prof,
                profile_file=Path(prof) if is_file else None,
            )
        )
    return tuple(out)


def write_set(
    ds: xr.Dataset,
    path: str | Path,
    *,
    ctx: SetContext | None = None,
    chunk: int = 256,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the set atomically; with `ctx`, also stream `ai_load_mw(scenario, time, campus)`.

    Load curves are computed and written `chunk` scenarios at a time, so memory stays at one
    chunk whatever the number of scenarios.
    """
    import netCDF4

    def write(tmp: Path, interrupt) -> None:
        out = ds
        if ctx is not None:
            out = ds.assign_coords(
                time=("time", ctx.t_s, {"units": "s", "long_name": "seconds since start"})
            )
        # the padded (scenario, event) table compressed: padding costs next to nothing on disk,
        # so the file grows with the events drawn, not with N x the longest scenario; strings
        # as compressible character arrays (a variable-length string takes ~20 bytes each)
        enc = {
            name: {
                "zlib": True,
                "complevel": 1,
                **({"dtype": "S1"} if v.dtype.kind in "OU" else {}),
            }
            for name, v in out.data_vars.items()
            if v.ndim >= 2 and v.dtype.kind in "fiuOU"
        }
        out.to_netcdf(tmp, engine="netcdf4", encoding=enc)
        if ctx is None:
            return
        n, nt, nc = ds.sizes["scenario"], len(ctx.t_s), len(ctx.spec.campuses)
        with netCDF4.Dataset(tmp, "a") as nc_file:
            var = nc_file.createVariable(
                "ai_load_mw",
                "f4",
                ("scenario", "time", "campus"),
                zlib=True,
                complevel=1,
                chunksizes=(min(chunk, n) or 1, nt, max(nc, 1)),
            )
            var.units = "MW"
            var.long_name = "AI campus load on the spec's time grid"
            table = EventTable.of(ds)
            for i0 in range(0, n, chunk):
                i1 = min(i0 + chunk, n)
                interrupt.check()
                var[i0:i1] = np.stack([ai_load_curves(ctx, table.events(i)) for i in range(i0, i1)])
                if progress is not None:
                    progress(i1 - i0)

    return atomic_path(path, write)


# ---- a run config on a scenario of a set ------------------------------------------------------
# Every command that takes `--scenarios` (run, validate, stress, evaluate, allocate) reads the set
# and builds its scenarios' run configs here.


SET_VARIABLES = (
    "event_kind",
    "event_campus",
    "event_line",
    "event_start_s",
    "n_events",
    "probability",
    "source_index",
    "campus_bus",
    "campus_p_nom_mw",
    "campus_profile",
)


def read_set(set_path: str | Path, source: str, drop=("ai_load_mw", "distance")) -> xr.Dataset:
    """A ScenarioSet file, read through the guarded reader and checked whole."""
    ds = read_dataset(
        set_path,
        DatasetKind.SCENARIO_SET,
        source=source,
        key="--scenarios",
        required=SET_VARIABLES,
        drop=drop,
    )
    ds.encoding["source"] = str(set_path)
    check_set(ds, str(set_path), "--scenarios")
    return ds


def with_scenario(cfg: RunConfig, set_path: str | Path, index: int) -> RunConfig:
    """The config with campuses, events and horizon taken from scenario `index` of a set."""
    return scenario_of(cfg, read_set(set_path, cfg.source), str(set_path), index)


def scenario_of(cfg: RunConfig, ds: xr.Dataset, source: str, index: int) -> RunConfig:
    """`with_scenario` on a set already read (a stress test reads it once per worker)."""
    n = ds.sizes["scenario"]
    if not 0 <= index < n:
        raise ConfigError(source, "--index", index, f"must be a scenario of the set (0..{n - 1})")
    horizon_s = float(ds.attrs["horizon_s"])
    if cfg.dt_s > horizon_s:
        raise ConfigError(
            cfg.source, "run.dt_s", cfg.dt_s, f"must be <= the scenario horizon ({horizon_s:g} s)"
        )
    return replace(
        cfg,
        campuses=set_campuses(ds),
        events=scenario_events(ds, index),
        horizon_s=horizon_s,
        scenario=ScenarioRef(
            source,
            index,
            int(ds["source_index"][index]),
            int(ds.attrs["seed"]),
            str(ds.attrs.get("spec_sha256", "")),
            str(ds.attrs.get("network_name", "")),
            float(ds.attrs.get("network_scale", math.nan)),
            int(ds.attrs.get("network_n_bus", -1)),
        ),
    )


def check_scenario_network(cfg: RunConfig, network: Network) -> None:
    """A scenario set runs only on the network (and scale) it was generated on."""
    ref = cfg.scenario
    if ref is None:
        return
    same = (
        ref.network_name == network.name
        and ref.network_n_bus == network.n_bus
        and math.isclose(ref.network_scale, network.scale, rel_tol=1e-9)
    )
    if not same:
        raise ConfigError(
            ref.file,
            "--scenarios",
            ref.file,
            f"was generated on {ref.network_name or 'an unrecorded network'} "
            f"({ref.network_n_bus} buses, loads x {ref.network_scale:.6g}); the config's network "
            f"is {network.name} ({network.n_bus} buses, loads x {network.scale:.6g}): a set runs "
            "on the network and scale of its spec",
        )
