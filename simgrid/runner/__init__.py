"""Run orchestration: config -> network -> closed loop -> metrics -> attributes -> NetCDF file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import xarray as xr

from simgrid.config import RunConfig
from simgrid.cosim import simulate
from simgrid.inputs import SimulationInputs, prepare
from simgrid.metrics import with_metrics
from simgrid.ncio import package_versions
from simgrid.network import Network
from simgrid.profiles import campus_profile
from simgrid.types import DispatchPolicy


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
    return RollingDispatcher.build(
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
        hold_s=cfg.dt_s,  # a real-time set-point holds for one power-flow step
        model=net.model,
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
