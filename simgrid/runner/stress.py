"""A stress test's combined result: every episode's metrics over `scenario`, and statistics.

`combine` reads the episode files (in scenario order, whatever order they finished in) into
one Dataset: the per-episode metrics under the names `simgrid run` uses, `episode_status`,
`probability`; `summary(metric, statistic)` weighted by probability (mean, standard deviation,
percentiles, VaR and CVaR at each level, bootstrap intervals of the mean and of the CVaR); and
EENS, LOLE and IEEE 1366 SAIFI, SAIDI, CAIDI, each scenario standing for one day. No wall-clock
figure enters it, so the same inputs give the same dataset on any number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid import stats
from simgrid.errors import SimgridError
from simgrid.ncio import DatasetKind, package_versions, read_dataset, variables, write_dataset
from simgrid.runner.episode import FAILED, StressSpec

# The per-episode metrics summarised (name: units); the rest of an episode's scalars are kept
# per scenario without summary.
SUMMARISED = {
    "unserved_energy_mwh": "MWh",
    "imbalance_energy_mwh": "MWh",
    "peak_imbalance_mw": "MW",
    "restoration_time_s": "s",
    "voltage_violation_s": "s",
    "thermal_violation_s": "s",
    "closed_loop_cost": "$",
    "customer_interruptions": "1",
    "customer_minutes_interrupted": "min",
}


def read_episodes(spec: StressSpec, indices: Sequence[int]) -> list[xr.Dataset]:
    out = []
    for i in indices:
        path = spec.path(i)
        out.append(read_dataset(path, DatasetKind.EPISODE, source=str(path), key="episode"))
    return out


def combine(
    spec: StressSpec,
    indices: Sequence[int],
    *,
    levels: tuple[float, ...] = (0.95,),
    days_per_year: float = 365.0,
) -> xr.Dataset:
    """The combined stress-test Dataset (see the module)."""
    episodes = read_episodes(spec, indices)
    p = np.array([float(e.attrs["probability"]) for e in episodes])
    status = np.array([int(e["episode_status"]) for e in episodes])
    names = sorted(
        {n for e in episodes for n, v in e.data_vars.items() if v.ndim == 0}
        - {"episode_status", "episode_error"}
    )
    data = {
        "probability": xr.Variable(
            "scenario",
            p / p.sum(),
            {"units": "1", "long_name": "scenario probability (of the set, normalised)"},
        ),
        "episode_status": xr.Variable(
            "scenario",
            status,
            {"units": "1", "long_name": "0: episode ran; 1: it failed (see episode_error)"},
        ),
        "episode_error": xr.Variable(
            "scenario",
            np.array(
                [str(e["episode_error"].item()) if "episode_error" in e else "" for e in episodes],
                dtype=str,
            ),
            {"units": "1", "long_name": "why an episode failed ('' if it ran)"},
        ),
    }
    for name in names:
        values = np.array([float(e[name]) if name in e else np.nan for e in episodes])
        attrs = next(e[name].attrs for e in episodes if name in e)
        data[name] = xr.Variable("scenario", values, dict(attrs))
    ok = status != FAILED
    data.update(_summary(data, p, ok, levels))
    data.update(_reliability(data, p, ok, days_per_year))
    coords = {
        "scenario": ("scenario", np.asarray(indices), {"long_name": "scenario index in the set"})
    }
    attrs = {
        "title": "simgrid stress test",
        "simgrid_kind": DatasetKind.STRESS.value,
        "config": spec.config,
        "scenarios_file": spec.scenarios,
        "allocation_file": spec.allocation or "",
        "levels": list(levels),
        "days_per_year": days_per_year,
        "n_episodes": len(indices),
        "n_failed": int((~ok).sum()),
        "timeseries": f"in {spec.out_dir}/episodes" if spec.timeseries else "not kept",
    }
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _summary(data, p, ok, levels) -> dict[str, xr.Variable]:
    rows, stat_names = {}, None
    for name in SUMMARISED:
        if name not in data:
            continue
        s = stats.summary(data[name].values[ok], p[ok], levels) if ok.any() else {}
        rows[name] = s
        stat_names = list(s) if len(s) > len(stat_names or ()) else stat_names
    stat_names = stat_names or list(stats.STATISTICS)
    table = np.array([[rows[m].get(k, np.nan) for k in stat_names] for m in rows])
    return {
        "summary": xr.Variable(
            ("metric", "statistic"),
            table.reshape(len(rows), len(stat_names)),
            {"units": "as the metric", "long_name": "statistics over scenarios, by probability"},
        ),
        "metric": xr.Variable(
            "metric",
            np.array(list(rows), dtype=str),
            {"long_name": "summarised per-episode metric"},
        ),
        "statistic": xr.Variable(
            "statistic",
            np.array(stat_names, dtype=str),
            {
                "long_name": "p_undefined: probability of NaN (restoration: not restored); "
                "over the rest: mean, std, percentiles, VaR/CVaR at each level, bootstrap 95 % "
                "intervals (ci_low, ci_high)"
            },
        ),
    }


def _reliability(data, p, ok, days_per_year) -> dict[str, xr.Variable]:
    if not ok.any() or "customers" not in data:
        return {}
    r = stats.reliability(
        data["unserved_energy_mwh"].values[ok],
        data["customer_interruptions"].values[ok],
        data["customer_minutes_interrupted"].values[ok],
        float(np.nanmax(data["customers"].values[ok])),
        p[ok],
        days_per_year,
    )
    units = {
        "eens_mwh_per_yr": ("MWh/yr", "expected energy not supplied"),
        "lole_days_per_yr": ("d/yr", "days a year with unserved energy (LOLE-style)"),
        "saifi": ("1/yr", "IEEE 1366 SAIFI: sustained interruptions per customer a year"),
        "saidi_h": ("h/yr", "IEEE 1366 SAIDI: hours of interruption per customer a year"),
        "caidi_h": ("h", "IEEE 1366 CAIDI: hours per interruption"),
    }
    return variables((), {k: (v, *units[k]) for k, v in r.items()})


def worst_index(ds: xr.Dataset, metric: str = "closed_loop_cost") -> int | None:
    """The scenario of the episode that ran and cost most (ties: the lowest index)."""
    ok = ds["episode_status"].to_numpy() != FAILED
    if metric not in ds or not ok.any():
        return None
    values = np.where(ok, ds[metric].to_numpy(), -np.inf)
    return int(ds["scenario"].to_numpy()[int(np.argmax(values))])


def write_worst_episode(spec: StressSpec, ds: xr.Dataset) -> Path | None:
    """Run the worst episode again with its whole time series (episodes are reproducible from
    their index) and write it as a run dataset beside stress.nc, for `simgrid report`."""
    from simgrid.runner.episode import EpisodeRunner

    index = worst_index(ds)
    if index is None:
        return None
    path = Path(spec.out_dir) / "worst_episode.nc"
    if path.exists():
        try:
            old = read_dataset(path, DatasetKind.RUN, source=str(path), key="worst episode")
            spec.check(old.attrs, path, "worst episode")
            if old.attrs.get("scenario_index") == index:
                return path
        except SimgridError:
            pass  # damaged, or of other inputs: written again
    full = EpisodeRunner(spec).full(index)
    full.attrs["scenario_index"] = index
    full.attrs["why"] = "the stress test's episode with the largest closed_loop_cost"
    full.attrs.update(spec.inputs.attrs() if spec.inputs is not None else {})
    return write_dataset(full, path)
