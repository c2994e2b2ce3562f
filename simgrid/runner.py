"""Run orchestration: config -> network -> closed loop -> metrics -> attributes -> NetCDF file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import xarray as xr

from simgrid.config import RunConfig, ScenarioRef
from simgrid.cosim import SimulationInputs, simulate
from simgrid.errors import ConfigError
from simgrid.metrics import with_metrics
from simgrid.ncio import package_versions
from simgrid.network import Network, build_network, check_placement
from simgrid.profiles import campus_profile, load_profile
from simgrid.types import DispatchPolicy


def prepare(cfg: RunConfig) -> SimulationInputs:
    """Build everything a run needs from its config (validates placements too)."""
    network = build_network(cfg.network, cfg.source)
    check_placement(cfg.source, cfg.campuses, cfg.events, network)
    profile = load_profile(cfg.network.load_profile, cfg.network.load_profile_file, cfg.source)
    return SimulationInputs(cfg, network, profile)


def build_policy(
    cfg: RunConfig,
    inputs: SimulationInputs,
    *,
    backend: str = "highs",
    reference: bool = False,
    forecast: str | None = None,
) -> DispatchPolicy | None:
    """The dispatch policy the config asks for (None: do nothing)."""
    if cfg.dispatch.policy == "none":
        return None
    from simgrid.aiload import campus_loads_mw
    from simgrid.fcm import allocation_entries, build_units, load_catalogue
    from simgrid.optimization.dispatcher import RollingDispatcher

    dc = cfg.dispatch
    catalogue = load_catalogue(dc.catalogue)
    entries = dc.allocation
    if dc.allocation_file is not None:
        with xr.open_dataset(dc.allocation_file) as ds:
            entries = allocation_entries(ds)
    units = build_units(catalogue, entries, inputs.network.n_bus, cfg.source)
    forecaster = None
    if (forecast or dc.forecast) == "perfect":
        profiles = [campus_profile(c, cfg.source) for c in cfg.campuses]

        def forecaster(times):
            return campus_loads_mw(cfg.campuses, profiles, cfg.events, times)

    net = cfg.network
    return RollingDispatcher(
        inputs.network,
        inputs.profile,
        cfg.campuses,
        units,
        dc,
        cfg.upstream,
        v_min_pu=net.v_min_pu,
        v_max_pu=net.v_max_pu,
        max_loading_percent=net.max_loading_percent,
        forecaster=forecaster,
        backend=backend,
        reference=reference,
        step_s=cfg.dt_s,
    )


COMPARED = (
    "unserved_energy_mwh",
    "imbalance_energy_mwh",
    "peak_imbalance_mw",
    "voltage_violation_s",
    "restoration_time_s",
)


def with_baseline(ds: xr.Dataset, baseline: xr.Dataset) -> xr.Dataset:
    """Add the do-nothing run's scalar metrics as `baseline_*` for comparison."""
    out = ds.copy()
    for name in COMPARED:
        out[f"baseline_{name}"] = baseline[name].assign_attrs(
            long_name=f"{baseline[name].attrs['long_name']} without flexible resources"
        )
    return out


def run_attrs(cfg: RunConfig, network: Network, policy_name: str) -> dict[str, object]:
    """Global attributes: what produced this dataset, enough to reproduce it."""
    attrs: dict[str, object] = {
        "title": f"simgrid run {cfg.name}",
        "run_name": cfg.name,
        "config_source": cfg.source,
        "config_sha256": cfg.text_sha256,
        "config_toml": cfg.text,
        "seed": cfg.seed,
        "network": network.name,
        "network_scale": network.scale,
        "horizon_s": cfg.horizon_s,
        "dt_s": cfg.dt_s,
        "dispatch_policy": policy_name,
        "redispatch_s": cfg.dispatch.redispatch_s,
        "upstream_band_mw": cfg.upstream.band_mw,
        "upstream_ramp_mw_per_min": cfg.upstream.ramp_mw_per_min,
        "v_min_pu": cfg.network.v_min_pu,
        "v_max_pu": cfg.network.v_max_pu,
        "max_loading_percent": cfg.network.max_loading_percent,
        "load_profile": cfg.network.load_profile,
    }
    attrs.update(asdict(cfg.metrics))
    if cfg.scenario is not None:
        attrs.update({f"scenario_{k}": v for k, v in asdict(cfg.scenario).items()})
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return attrs


def run(
    cfg: RunConfig,
    *,
    policy: DispatchPolicy | None = None,
    inputs: SimulationInputs | None = None,
    progress: Callable[[float], None] | None = None,
) -> xr.Dataset:
    """One closed-loop run with metrics and attributes; `inputs` reuses a prepared network."""
    inputs = inputs if inputs is not None else prepare(cfg)
    policy = policy if policy is not None else build_policy(cfg, inputs)
    ds = simulate(inputs, policy, progress=progress)
    if getattr(policy, "units", None):
        from simgrid.optimization.dispatcher import unit_dataset

        ds = ds.merge(unit_dataset(policy.units))
    name = type(policy).__name__ if policy is not None else "DoNothing"
    ds.attrs.update(run_attrs(cfg, inputs.network, name))
    return with_metrics(ds)


def with_scenario(cfg: RunConfig, set_path: str | Path, index: int) -> RunConfig:
    """The config with campuses, events and horizon taken from scenario `index` of a set."""
    from simgrid.scenarios.scenarioset import scenario_events, set_campuses

    source = str(set_path)
    try:
        with xr.open_dataset(set_path) as ds:
            ds = ds.drop_vars(["ai_load_mw", "distance"], errors="ignore").load()
    except (OSError, ValueError) as exc:
        raise ConfigError(source, "--scenarios", source, f"cannot be read ({exc})") from None
    if "event_kind" not in ds or "horizon_s" not in ds.attrs:
        raise ConfigError(source, "--scenarios", source, "is not a simgrid ScenarioSet")
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
        ),
    )
