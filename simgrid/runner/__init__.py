"""Run orchestration: config -> network -> closed loop -> metrics -> attributes -> NetCDF file."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import xarray as xr

from simgrid.config import RunConfig, ScenarioRef
from simgrid.cosim import SimulationInputs, simulate
from simgrid.errors import ConfigError
from simgrid.metrics import with_metrics
from simgrid.ncio import DatasetKind, package_versions, read_dataset
from simgrid.network import Network, build_network, check_placement
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import campus_profile, load_profile
from simgrid.types import DispatchPolicy


def prepare(cfg: RunConfig) -> SimulationInputs:
    """Build everything a run needs from its config (validates placements too)."""
    network = build_network(cfg.network, cfg.source)
    check_engine_base_case(network, cfg)
    check_scenario_network(cfg, network)
    placed_by = cfg.scenario.file if cfg.scenario else cfg.source
    check_placement(placed_by, cfg.campuses, cfg.events, network)
    profile = load_profile(cfg.network.load_profile, cfg.network.load_profile_file, cfg.source)
    campus_profiles = tuple(campus_profile(c, cfg.source) for c in cfg.campuses)
    return SimulationInputs(cfg, network, profile, campus_profiles)


def check_units(cfg: RunConfig, inputs: SimulationInputs) -> tuple:
    """What `run` would dispatch, checked without simulating: the catalogue (if named) and the
    allocation's units (none without a dispatcher)."""
    from simgrid.fcm import load_catalogue

    if cfg.dispatch.policy == "none":
        if cfg.dispatch.catalogue is not None:
            load_catalogue(cfg.dispatch.catalogue)
        return ()
    return allocated_units(cfg, inputs)


def allocated_units(cfg: RunConfig, inputs: SimulationInputs):
    """The config's catalogue and allocation as aggregated units (checked against the network)."""
    from simgrid.fcm import build_units, load_catalogue, read_allocation

    dc = cfg.dispatch
    catalogue = load_catalogue(dc.catalogue)
    if dc.allocation_file is None:
        return build_units(catalogue, dc.allocation, inputs.network.n_bus, cfg.source)
    entries = read_allocation(dc.allocation_file, cfg.source)
    return build_units(catalogue, entries, inputs.network.n_bus, str(dc.allocation_file), "unit")


@dataclass(frozen=True, eq=False)
class PerfectForecast:
    """Perfect foresight of the AI load (for benchmarking): what the config's events will make
    the campuses draw. A plain object, so a long run's checkpoint pickles it with the loop."""

    campuses: tuple
    profiles: tuple
    events: tuple

    @classmethod
    def of(cls, cfg: RunConfig, inputs: SimulationInputs) -> PerfectForecast:
        profiles = inputs.campus_profiles or tuple(
            campus_profile(c, cfg.source) for c in cfg.campuses
        )
        return cls(cfg.campuses, tuple(profiles), cfg.events)

    def __call__(self, times):
        from simgrid.aiload import campus_loads_mw

        return campus_loads_mw(self.campuses, self.profiles, self.events, times)


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
    from simgrid.optimization.dispatcher import RollingDispatcher

    dc = cfg.dispatch
    units = allocated_units(cfg, inputs)
    perfect = (forecast or dc.forecast) == "perfect"
    forecaster = PerfectForecast.of(cfg, inputs) if perfect else None
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
    "thermal_violation_s",
    "collapse_steps",
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
        "simgrid_kind": "run",
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
    attrs.update({f"protection_{k}": str(v) for k, v in asdict(cfg.protection).items()})
    attrs.update(_dispatch_attrs(cfg))
    if cfg.scenario is not None:
        attrs.update({f"scenario_{k}": v for k, v in asdict(cfg.scenario).items()})
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return attrs


def _dispatch_attrs(cfg: RunConfig) -> dict[str, object]:
    """The catalogue's content and hash and where the allocation came from: with the config,
    enough to reproduce the dispatched run."""
    from simgrid.fcm import load_catalogue

    dc = cfg.dispatch
    if dc.policy == "none" or dc.catalogue is None:
        return {}
    cat = load_catalogue(dc.catalogue)
    source = str(dc.allocation_file) if dc.allocation_file else "config [[allocation]]"
    out: dict[str, object] = {
        "catalogue_source": cat.source,
        "catalogue_sha256": cat.text_sha256,
        "catalogue_toml": cat.text,
        "allocation_source": source,
    }
    if dc.allocation_file is not None:
        out["allocation_sha256"] = hashlib.sha256(Path(dc.allocation_file).read_bytes()).hexdigest()
    return out


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
    return run_dataset(simulate(inputs, policy, progress=progress), cfg, inputs.network, policy)


def run_dataset(ds: xr.Dataset, cfg: RunConfig, network: Network, policy) -> xr.Dataset:
    """A simulated run with its units, attributes and metrics."""
    if getattr(policy, "units", None):
        from simgrid.optimization.dispatcher import unit_dataset

        ds = ds.merge(unit_dataset(policy.units))
    ds.attrs.update(run_attrs(cfg, network, type(policy).__name__))
    return with_metrics(ds)


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
    from simgrid.scenarios.scenarioset import check_set

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
    from simgrid.scenarios.scenarioset import scenario_events, set_campuses

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


def check_engine_base_case(network: Network, cfg: RunConfig) -> None:
    """The simulator's own engine must solve the base case too (it works in float32
    injections: absurd scales that pandapower still solves can fail here)."""
    res = PowerFlowEngine(network).solve(network.base_load_p_mw, network.base_load_q_mvar)
    if not res.converged:
        key = "network.file" if cfg.network.file else "network.case"
        value = str(cfg.network.file or cfg.network.case)
        raise ConfigError(
            cfg.source,
            key,
            value,
            f"the base case power flow of {network.name} has no solution in the simulator "
            f"({network.base_load_p_mw.sum():.6g} MW, loads x {network.scale:.6g}): check "
            "network.scale_to_peak_mw and the units of the network's loads",
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
