"""One stress-test episode: scenario `index` of a set in closed loop, written to its own file.

An episode is reproducible from (config, scenario file, allocation, index) alone. A worker
builds the network, reads the set and builds the dispatcher once (`EpisodeRunner`) and reuses
them across its episodes (the dispatcher is reset between them). The episode's file holds the
run's scalar metrics and closed-loop cost (its whole time series with `timeseries`), written
atomically as soon as it finishes; an episode that fails on its own is written too, with its
status and error, so that it is recorded and not retried forever.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import xarray as xr

from simgrid.config import RunConfig, load_config, with_allocation_file
from simgrid.errors import SimgridError
from simgrid.inputs import prepare
from simgrid.ncio import DatasetKind, package_versions, read_dataset, write_dataset
from simgrid.provenance import InputKey, file_sha256
from simgrid.runner import PerfectForecast, build_policy, run
from simgrid.scenarios.scenarioset import read_set, scenario_of

EPISODE_KIND = "episode"
OK, FAILED = 0, 1


@dataclass(frozen=True)
class StressSpec:
    """What every episode of a stress test shares (picklable: sent to the workers).

    `inputs` fingerprints what the episodes depend on (`keyed`): an episode on disk is reused
    only when it was computed from the same."""

    config: str
    scenarios: str
    out_dir: str
    allocation: str | None = None
    timeseries: bool = False
    no_dispatch: bool = False  # the do-nothing baseline (evaluate's reference)
    inputs: InputKey | None = None

    def path(self, index: int) -> Path:
        return Path(self.out_dir) / "episodes" / f"ep_{index:06d}.nc"

    def keyed(self) -> StressSpec:
        """This spec with its inputs fingerprinted now: the config's text and files, the
        scenario set's and allocation's content, the package versions and the options."""
        key = InputKey.of(
            load(self),
            package_versions(),
            scenarios_sha256=file_sha256(self.scenarios),
            no_dispatch=self.no_dispatch,
            timeseries=self.timeseries,
        )
        return replace(self, inputs=key)

    def check(self, attrs: dict, path: Path, what: str) -> None:
        if self.inputs is None:
            raise ValueError("an unkeyed StressSpec reuses nothing: call keyed() first")
        self.inputs.check(attrs, path, what)

    def discard(self) -> None:
        """Remove what an earlier run left in the output folder (`--restart`)."""
        out = Path(self.out_dir)
        shutil.rmtree(out / "episodes", ignore_errors=True)
        for name in ("stress.nc", "worst_episode.nc"):
            (out / name).unlink(missing_ok=True)


def load(spec: StressSpec) -> RunConfig:
    cfg = load_config(spec.config)
    if spec.no_dispatch:
        return replace(
            cfg, dispatch=replace(cfg.dispatch, policy="none", allocation=(), allocation_file=None)
        )
    if spec.allocation:
        cfg = with_allocation_file(cfg, Path(spec.allocation))
    return cfg


class EpisodeRunner:
    """A worker's network, scenario set and dispatcher, built once."""

    def __init__(self, spec: StressSpec) -> None:
        self.spec = spec
        self.cfg = load(spec)
        self.set = read_set(spec.scenarios, self.cfg.source)
        first = scenario_of(self.cfg, self.set, spec.scenarios, 0)
        self.inputs = prepare(first)
        self.policy = build_policy(first, self.inputs)

    def run(self, index: int) -> tuple[int, int, float]:
        """Run episode `index` and write its file: (index, status, wall seconds)."""
        t0 = time.perf_counter()
        try:
            ds = self._episode(index)
            status = OK
        except Exception as exc:  # an episode's own failure is data: recorded, not raised
            ds = _failed(index, exc)
            status = FAILED
        ds.attrs.update(self._attrs(index))
        path = self.spec.path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dataset(ds, path)
        return index, status, time.perf_counter() - t0

    def full(self, index: int) -> xr.Dataset:
        """Episode `index` as the whole run dataset `simgrid run --scenarios --index` writes."""
        cfg = scenario_of(self.cfg, self.set, self.spec.scenarios, index)
        inputs = replace(self.inputs, config=cfg)
        policy = self.policy
        if policy is not None:
            policy.reset()
            if cfg.dispatch.forecast == "perfect":
                policy.forecaster = PerfectForecast.of(cfg, inputs)
        ds = run(cfg, inputs=inputs, policy=policy)
        return ds.assign(
            closed_loop_cost=xr.Variable(
                (),
                closed_loop_cost(ds, cfg),
                {
                    "units": "$",
                    "long_name": "VoLL x unserved + imbalance and voltage penalties + FCM "
                    "operation (the dispatcher's prices)",
                },
            )
        )

    def _episode(self, index: int) -> xr.Dataset:
        ds = self.full(index)
        if not self.spec.timeseries:
            ds = ds[[n for n, v in ds.data_vars.items() if v.ndim == 0]]
        out = ds
        out = out.assign(
            episode_status=xr.Variable((), OK, {"units": "1", "long_name": "0 ok, 1 failed"})
        )
        out.attrs = {}
        return out

    def _attrs(self, index: int) -> dict[str, object]:
        p = float(self.set["probability"][index])
        return {
            "simgrid_kind": EPISODE_KIND,
            "scenario_index": index,
            "probability": p,
            "scenarios_file": self.spec.scenarios,
            "allocation_file": self.spec.allocation or "",
            **(self.spec.inputs.attrs() if self.spec.inputs is not None else {}),
        }


def closed_loop_cost(ds: xr.Dataset, cfg: RunConfig) -> float:
    """What the episode cost in the dispatcher's own prices: VoLL x unserved energy, the
    imbalance penalty x imbalance energy, the voltage penalty x the pu-hours of |V| outside its
    limits, and the flexible units' operating cost (the planner's recourse terms, less its
    SoC-restoration regulariser, which prices no outcome)."""
    from simgrid.metrics import step_durations_s

    d = cfg.dispatch
    fcm = float(ds["fcm_cost"]) if "fcm_cost" in ds else 0.0
    dt_h = step_durations_s(ds) / 3600.0
    # the run's own metric (with_metrics), not computed again
    pu_h = float((ds["voltage_violation_pu"].fillna(0.0).sum("bus").to_numpy() * dt_h).sum())
    return (
        d.voll_per_mwh * float(ds["unserved_energy_mwh"])
        + d.imbalance_per_mwh * float(ds["imbalance_energy_mwh"])
        + d.voltage_per_pu_h * pu_h
        + fcm
    )


def _failed(index: int, exc: Exception) -> xr.Dataset:
    why = str(exc) if isinstance(exc, SimgridError) else traceback.format_exc(limit=3)
    return xr.Dataset(
        {
            "episode_status": xr.Variable(
                (), FAILED, {"units": "1", "long_name": "0 ok, 1 failed"}
            ),
            "episode_error": xr.Variable((), why.strip(), {"units": "1", "long_name": "why"}),
        }
    )


def finished(spec: StressSpec) -> set[int]:
    """Episodes whose files are whole (a killed writer leaves none: writes are atomic). An
    episode computed from other inputs is refused (ConfigError), never silently reused."""
    done = set()
    folder = Path(spec.out_dir) / "episodes"
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("ep_*.nc")):
        try:
            ds = read_dataset(path, DatasetKind.EPISODE, source=str(path), key="episode")
        except SimgridError:
            path.unlink(missing_ok=True)  # damaged: run it again
            continue
        spec.check(ds.attrs, path, "episode")
        done.add(int(ds.attrs["scenario_index"]))
    return done


def nan_if_missing(ds: xr.Dataset, name: str) -> float:
    return float(ds[name]) if name in ds else math.nan
