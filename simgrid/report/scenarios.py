"""ScenarioSet plots: sample AI load curves and shock distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.aiload import campus_loads_mw
from simgrid.ncio import DatasetKind, read_dataset
from simgrid.profiles import campus_profile
from simgrid.scenarios.scenarioset import EventTable, check_set, set_campuses


def _curves(ds: xr.Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(t_h, load (time, campus)) of a scenario: stored curves, else computed from its events."""
    if "ai_load_mw" in ds:
        return ds["time"].to_numpy() / 3600.0, ds["ai_load_mw"][index].to_numpy()
    t = np.arange(0.0, float(ds.attrs["horizon_s"]), float(ds.attrs["dt_s"]))
    events = EventTable.of(ds.isel(scenario=[index])).events(0)
    campuses = set_campuses(ds)
    loads = campus_loads_mw(campuses, [campus_profile(c) for c in campuses], events, t)
    return t / 3600.0, loads


def plot_scenarios(path: str | Path, out_dir: str | Path, n_samples: int = 6) -> list[Path]:
    """Write `sample_loads.png` and `distributions.png` for a ScenarioSet file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = read_dataset(
        path,
        DatasetKind.SCENARIO_SET,
        source=str(path),
        key="--plot",
        required=("event_kind", "n_events", "probability", "source_index", "campus_p_nom_mw"),
    )
    ds.encoding["source"] = str(path)
    check_set(ds, str(path), "--plot")
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    name = ds.attrs.get("spec_name", Path(path).stem)
    campuses = ds["campus"].to_numpy().astype(str)
    busy = np.argsort(-ds["n_events"].to_numpy(), kind="stable")[:n_samples]

    fig, axes = plt.subplots(len(busy), 1, figsize=(9, 1.9 * len(busy)), sharex=True, squeeze=False)
    for ax, i in zip(axes[:, 0], sorted(busy), strict=True):
        t_h, load = _curves(ds, int(i))
        for k, c in enumerate(campuses):
            ax.plot(t_h, load[:, k], lw=1, label=c)
        row = ds.isel(scenario=int(i))
        for j in range(int(row["n_events"])):
            if str(row["event_kind"][j].item()) == "line_outage":
                s = float(row["event_start_s"][j]) / 3600
                ax.axvspan(s, s + float(row["event_duration_s"][j]) / 3600, color="0.85")
        ax.set_ylabel("MW")
        ax.set_title(
            f"scenario {int(i)} (source {int(row['source_index'])}, "
            f"p = {float(row['probability']):.3g}, {int(row['n_events'])} events; "
            "grey: line out)",
            fontsize=8,
        )
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("hour")
    fig.suptitle(f"{name}: AI campus load of the busiest scenarios", fontsize=10)
    fig.tight_layout()
    loads_png = out_dir / "sample_loads.png"
    fig.savefig(loads_png, dpi=110)
    plt.close(fig)

    kind = ds["event_kind"].to_numpy().astype(str).ravel()
    p_nom = dict(zip(campuses, ds["campus_p_nom_mw"].to_numpy(), strict=True))
    campus = ds["event_campus"].to_numpy().astype(str).ravel()
    mag = ds["event_magnitude_mw"].to_numpy().ravel()
    frac = ds["event_fraction"].to_numpy().ravel()
    lost = np.array([f * p_nom.get(c, np.nan) for f, c in zip(frac, campus, strict=True)])
    mag = np.where(kind == "trip", lost, mag)
    ramp_s = ds["event_ramp_s"].to_numpy().ravel()
    back_s = ds["event_return_ramp_s"].to_numpy().ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(kind == "trip", lost / back_s * 60, mag / ramp_s * 60)
    dur_h = ds["event_duration_s"].to_numpy().ravel() / 3600

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        (
            axes[0, 0],
            mag,
            "magnitude (MW; trip: fraction x nameplate)",
            ("ramp_up", "surge", "trip", "oscillation"),
        ),
        (axes[0, 1], rate, "ramp rate (MW/min; trip: return)", ("ramp_up", "surge", "trip")),
        (
            axes[1, 0],
            dur_h,
            "duration (h; trip: time down; outage: repair)",
            ("ramp_up", "surge", "trip", "oscillation", "line_outage"),
        ),
    ]
    # a reduced set's scenarios stand for their clusters: weight by probability (expected
    # events per scenario, or the probability of a count)
    prob = ds["probability"].to_numpy()
    weight = np.broadcast_to(prob[:, None], ds["event_kind"].shape).ravel()
    for ax, values, label, kinds in panels:
        for k in kinds:
            keep = (kind == k) & np.isfinite(values)
            if keep.any():
                ax.hist(
                    values[keep],
                    bins=40,
                    weights=weight[keep],
                    histtype="step",
                    lw=1.2,
                    label=f"{k} ({weight[keep].sum():.2f} per scenario)",
                    log=(label.startswith("ramp")),
                )
        ax.set_xlabel(label)
        ax.set_ylabel("expected events per scenario")
        ax.legend(fontsize=7)
    counts = ds["n_events"].to_numpy()
    axes[1, 1].hist(counts, bins=np.arange(counts.max() + 2) - 0.5, weights=prob, rwidth=0.8)
    axes[1, 1].set_xlabel("events per scenario")
    axes[1, 1].set_ylabel("probability")
    fig.suptitle(
        f"{name}: {ds.sizes['scenario']} scenarios, seed {ds.attrs.get('seed')}, "
        f"reduction: {ds.attrs.get('reduction', 'none')}",
        fontsize=10,
    )
    fig.tight_layout()
    dist_png = out_dir / "distributions.png"
    fig.savefig(dist_png, dpi=110)
    plt.close(fig)
    return [loads_png, dist_png]
