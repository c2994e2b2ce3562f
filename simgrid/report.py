"""Plots from result files alone (no simulator): ScenarioSet load curves and distributions,
and `make_report`: plots and a Markdown summary of a run, stress test, evaluation or allocation."""

from __future__ import annotations

import math
import re
import tomllib
from collections import deque
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.aiload import campus_loads_mw
from simgrid.errors import ConfigError
from simgrid.fcm import allocation_entries
from simgrid.metrics import AT_DEPTH_BAND, event_windows, step_durations_s
from simgrid.ncio import DatasetKind, kind_of, read_dataset
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


# ---------------------------------------------------------------------------------------------
# make_report: plots and a Markdown summary of any simgrid result file


REPORT_MD = "report.md"
STRESS_FILE = "stress.nc"
WORST_EPISODE_FILE = "worst_episode.nc"
RUN_REQUIRED = (
    "demand_mw",
    "unserved_mw",
    "imbalance_mw",
    "import_mw",
    "vm_pu",
    "line_from_bus",
    "line_to_bus",
)
# variables the report never reads (large, per step and bus)
RUN_UNUSED = (
    "planned_vm_pu",
    "voltage_violation_pu",
    "thermal_violation_percent",
    "line_loading_percent",
    "soc_mwh",
    "dispatch_solve_s",
)
EVALUATED = {
    "unserved_energy_mwh": "unserved energy",
    "imbalance_energy_mwh": "imbalance energy",
    "restoration_time_s": "restoration time",
    "peak_imbalance_mw": "peak imbalance",
    "closed_loop_cost": "closed-loop cost",
}
UNIT_STYLE = {  # FCM type: (marker, colour)
    "bess": ("s", "tab:blue"),
    "ldes": ("D", "tab:purple"),
    "fast_gen": ("^", "tab:red"),
    "dr": ("v", "tab:green"),
}
EVENT_COLOURS = {
    "ramp_up": "tab:orange",
    "surge": "tab:red",
    "trip": "tab:purple",
    "oscillation": "tab:olive",
    "line_outage": "tab:gray",
}


def make_report(path: str | Path, out_dir: str | Path, event: int | None = None) -> list[Path]:
    """Plots (PNG) and `report.md` for a simgrid result file, from the file alone.

    Dispatches on the file's kind: a run (`feeder.png`, `timeseries.png`, `trapezoid.png`), a
    stress test (`distributions.png`, and the run plots of `worst_episode.nc` prefixed `worst_`
    when that file lies beside it; `path` may be the stress test's directory), an evaluation
    (`evaluation.png`) or an allocation (`allocation.png`). `event` picks the event of the
    trapezoid (default: the one with the most unserved energy). Returns the files written,
    `report.md` last.
    """
    path = _result_file(Path(path))
    kind = _peek_kind(path)
    ds = _read_result(path, kind)  # every check before the folder is made
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if kind is DatasetKind.RUN:
        files, lines = run_report(ds, out_dir, event=event, source=str(path))
        title = f"Run {ds.attrs.get('run_name', path.stem)}"
    elif kind is DatasetKind.STRESS:
        files, lines = stress_report(ds, path, out_dir, event=event)
        title = "Stress test"
    elif kind is DatasetKind.EVALUATION:
        files, lines = evaluation_report(ds, out_dir)
        title = "Evaluation of allocations"
    else:
        files, lines = allocation_report(ds, out_dir)
        title = "FCM allocation"
    md = out_dir / REPORT_MD
    header = [f"# {title}", "", f"Source: `{path}` (simgrid {kind.label})", ""]
    md.write_text("\n".join(header + lines).rstrip() + "\n")
    return [*files, md]


def _read_result(path: Path, kind: DatasetKind) -> xr.Dataset:
    """The result file, read and checked as its kind (ConfigError: one line)."""
    if kind is DatasetKind.RUN:
        return _read_run(path, kind)
    if kind in (DatasetKind.STRESS, DatasetKind.EVALUATION):
        return read_dataset(path, kind, source=str(path), key="RESULT", required=("probability",))
    ds = read_dataset(
        path, kind, source=str(path), key="RESULT", required=("module", "bus", "count")
    )
    ds.encoding["source"] = str(path)
    allocation_entries(ds, str(path), key="RESULT")  # the checks `run --allocation` makes
    return ds


def _result_file(path: Path) -> Path:
    """The file a RESULT argument names: itself, or a stress test's directory's stress.nc."""
    if path.is_dir():
        if not (path / STRESS_FILE).is_file():
            raise ConfigError(
                str(path), "RESULT", str(path), f"is a directory without {STRESS_FILE}"
            )
        return path / STRESS_FILE
    return path


def _peek_kind(path: Path) -> DatasetKind:
    """The declared kind of a result file (ConfigError: unreadable or not a result)."""
    try:
        with xr.open_dataset(path) as ds:
            kind = kind_of(ds)
            declared = ds.attrs.get("simgrid_kind", kind.value if kind else None)
    except Exception:
        # the guarded reader says why in one line (missing, not NetCDF, ...)
        read_dataset(path, DatasetKind.RUN, source=str(path), key="RESULT")
        raise
    reportable = (
        DatasetKind.RUN,
        DatasetKind.STRESS,
        DatasetKind.EVALUATION,
        DatasetKind.ALLOCATION,
    )
    if kind not in reportable:
        raise ConfigError(
            str(path),
            "RESULT",
            declared or "a NetCDF file without simgrid_kind",
            "must be a simgrid run, stress, evaluation or allocation file",
        )
    return kind


def _read_run(path: Path, kind: DatasetKind = DatasetKind.RUN) -> xr.Dataset:
    with xr.open_dataset(path) as peek:
        drop = tuple(n for n in RUN_UNUSED if n in peek.variables)
    ds = read_dataset(path, kind, source=str(path), key="RESULT", required=RUN_REQUIRED, drop=drop)
    return ds


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path) -> Path:
    fig.savefig(png, dpi=110)
    _pyplot().close(fig)
    return png


# --- Markdown --------------------------------------------------------------------------------


def fmt(x: object) -> str:
    """A number as the tables print it: 4 significant digits, thousands grouped, NaN, inf."""
    if isinstance(x, str):
        return x
    x = float(x)  # numpy scalars, ints, bools
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == round(x) and abs(x) < 1e15:
        return f"{int(round(x)):,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _cell(x: object) -> str:
    return fmt(x).replace("|", "\\|").replace("\n", " ")


def _numeric(x: object) -> bool:
    return isinstance(x, int | float | np.number) or (isinstance(x, str) and x.startswith("["))


def md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A GitHub Markdown table (then a blank line): columns of numbers right-aligned."""
    align = [
        "---:" if rows and all(_numeric(r[i]) or r[i] == "" for r in rows) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _units(var: xr.DataArray) -> str:
    return str(var.attrs.get("units", ""))


def _interval(lo: float, hi: float) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


# --- run -------------------------------------------------------------------------------------


def run_report(
    ds: xr.Dataset,
    out_dir: Path,
    *,
    prefix: str = "",
    event: int | None = None,
    source: str = "RESULT",
) -> tuple[list[Path], list[str]]:
    """The run plots (`feeder.png`, `timeseries.png`, `trapezoid.png`, each after `prefix`)
    and the Markdown sections of a run dataset."""
    chosen = _trapezoid_event(ds, event, source)
    files = [
        plot_feeder(ds, out_dir / f"{prefix}feeder.png"),
        plot_timeseries(ds, out_dir / f"{prefix}timeseries.png"),
    ]
    if chosen is not None:
        files.append(plot_trapezoid(ds, chosen, out_dir / f"{prefix}trapezoid.png"))
    a = ds.attrs
    lines = [
        f"Network {a.get('network', '?')}, {ds.sizes.get('bus', 0)} buses, "
        f"horizon {fmt(float(a.get('horizon_s', np.nan)) / 3600)} h at "
        f"dt = {fmt(a.get('dt_s', np.nan))} s, dispatch: {a.get('dispatch_policy', '?')}, "
        f"config `{a.get('config_source', '?')}`.",
        "",
        f"![feeder]({files[0].name})",
        "",
        f"![time series]({files[1].name})",
        "",
    ]
    if chosen is not None:
        lines += [
            f"![resilience trapezoid of event {chosen}]({files[2].name})",
            "",
        ]
    lines += ["## Metrics", "", *scalar_table(ds)]
    lines += _event_table(ds)
    lines += _units_table(ds)
    lines += _campus_table(ds)
    return files, lines


def scalar_table(ds: xr.Dataset) -> list[str]:
    """Every 0-d variable with its units; `baseline_<name>` beside `<name>` where present."""
    names = [n for n, v in ds.data_vars.items() if v.ndim == 0 and not n.startswith("baseline_")]
    baseline = any(f"baseline_{n}" in ds for n in names)
    header = ["metric", "value"] + (["without FCMs (baseline)"] if baseline else [])
    header += ["units", "meaning"]
    rows = []
    for n in names:
        row = [n, ds[n].item()]
        if baseline:
            row.append(ds[f"baseline_{n}"].item() if f"baseline_{n}" in ds else "")
        rows.append([*row, _units(ds[n]), ds[n].attrs.get("long_name", "")])
    return md_table(header, rows)


def _event_table(ds: xr.Dataset) -> list[str]:
    if ds.sizes.get("event", 0) == 0 or "event_start_s" not in ds:
        return ["No events.", ""]
    cols = {
        "event_unserved_energy_mwh": "unserved (MWh)",
        "event_imbalance_energy_mwh": "imbalance (MWh)",
        "event_peak_imbalance_mw": "peak imbalance (MW)",
        "event_restoration_time_s": "restoration (s)",
        "event_served_depth_mw": "served depth (MW)",
        "event_served_degradation_rate_mw_per_h": "degradation (MW/h)",
        "event_served_degraded_duration_h": "degraded (h)",
        "event_served_recovery_rate_mw_per_h": "recovery (MW/h)",
        "event_served_area_mwh": "area (MWh)",
    }
    cols = {k: v for k, v in cols.items() if k in ds}
    rows = []
    for i in range(ds.sizes["event"]):
        end = float(ds["event_end_s"][i]) / 3600 if "event_end_s" in ds else np.nan
        rows.append(
            [
                int(ds["event"][i]),
                _event_label(ds, i),
                float(ds["event_start_s"][i]) / 3600,
                end,
                *(float(ds[k][i]) for k in cols),
            ]
        )
    return [
        "## Events",
        "",
        "Per event, within its window (onset until the next later onset or the end of the "
        "run). Trapezoid columns (Panteli et al. 2017) are those of the served-load curve; "
        "NaN: the phase did not happen in the window, inf: a step change.",
        "",
        *md_table(["event", "what", "start (h)", "end (h)", *cols.values()], rows),
    ]


def _event_label(ds: xr.Dataset, i: int) -> str:
    kind = str(ds["event_kind"][i].item()) if "event_kind" in ds else "event"
    if kind == "line_outage" and "event_line" in ds:
        return f"{kind} line {int(ds['event_line'][i])}"
    campus = str(ds["event_campus"][i].item()) if "event_campus" in ds else ""
    return f"{kind} {campus}".strip()


def _has_units(ds: xr.Dataset) -> bool:
    return ds.sizes.get("unit", 0) > 0 and "unit_bus" in ds


def _units_table(ds: xr.Dataset) -> list[str]:
    if not _has_units(ds):
        return ["No flexible units (FCMs) in this run.", ""]
    rows = []
    for j in range(ds.sizes["unit"]):
        rows.append(
            [
                str(ds["unit"][j].item()),
                str(ds["unit_type"][j].item()) if "unit_type" in ds else "",
                int(ds["unit_bus"][j]),
                int(ds["unit_count"][j]) if "unit_count" in ds else 1,
                float(ds["unit_p_mw"][j]) if "unit_p_mw" in ds else np.nan,
                float(ds["unit_e_mwh"][j]) if "unit_e_mwh" in ds else np.nan,
                float(ds["fcm_energy_mwh"][j]) if "fcm_energy_mwh" in ds else np.nan,
                int(ds["fcm_starts"][j]) if "fcm_starts" in ds else np.nan,
            ]
        )
    header = ["unit", "type", "bus", "modules", "P (MW)", "E (MWh)", "throughput (MWh)"]
    return ["## Flexible units", "", *md_table([*header, "starts"], rows)]


def _campus_table(ds: xr.Dataset) -> list[str]:
    if ds.sizes.get("campus", 0) == 0 or "campus_bus" not in ds:
        return []
    rows = []
    for k in range(ds.sizes["campus"]):
        load = ds["campus_load_mw"][:, k] if "campus_load_mw" in ds else None
        rows.append(
            [
                str(ds["campus"][k].item()),
                int(ds["campus_bus"][k]),
                float(ds["campus_p_nom_mw"][k]) if "campus_p_nom_mw" in ds else np.nan,
                float(load.min()) if load is not None else np.nan,
                float(load.max()) if load is not None else np.nan,
            ]
        )
    header = ["campus", "bus", "nameplate (MW)", "min load (MW)", "max load (MW)"]
    return ["## AI campuses", "", *md_table(header, rows)]


def feeder_layout(
    n_bus: int, from_bus: np.ndarray, to_bus: np.ndarray, in_service: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(depth, row) of each bus in a tree drawing of a radial feeder.

    Depth: lines from bus 0 along a breadth-first spanning tree (in-service lines first,
    out-of-service ones only to reach buses cut off); each bus continues its parent's row
    through its largest child subtree, and every other branch starts a new row below all
    rows used so far, so branches never overlap.
    """
    adj: list[list[tuple[int, bool]]] = [[] for _ in range(n_bus)]
    for a, b, on in zip(from_bus, to_bus, in_service, strict=True):
        adj[int(a)].append((int(b), bool(on)))
        adj[int(b)].append((int(a), bool(on)))
    depth = np.full(n_bus, -1)
    parent = np.full(n_bus, -1)
    order: list[int] = []
    for root in range(n_bus):
        if depth[root] >= 0:
            continue
        depth[root] = 0
        component = [root]
        for use_all in (False, True):
            queue = deque(component)
            while queue:
                u = queue.popleft()
                for v, on in adj[u]:
                    if depth[v] < 0 and (on or use_all):
                        depth[v], parent[v] = depth[u] + 1, u
                        component.append(v)
                        queue.append(v)
        order += component
    size = np.ones(n_bus, dtype=int)
    for v in reversed(order):
        if parent[v] >= 0:
            size[parent[v]] += size[v]
    children: list[list[int]] = [[] for _ in range(n_bus)]
    for v in order:
        if parent[v] >= 0:
            children[parent[v]].append(v)
    row = np.zeros(n_bus, dtype=int)
    last_row = -1
    stack: list[tuple[int, int | None]] = [(r, None) for r in reversed(order) if parent[r] < 0]
    while stack:
        u, r = stack.pop()
        if r is None:
            last_row += 1
            r = last_row
        row[u] = r
        kids = sorted(children[u], key=lambda v: (-size[v], v))
        stack += [(v, None) for v in reversed(kids[1:])]
        if kids:
            stack.append((kids[0], r))
    return depth, row


def plot_feeder(ds: xr.Dataset, png: Path) -> Path:
    """The feeder as a tree: buses coloured by their lowest voltage over the run, dashed
    lines out of service at the start, campuses and flexible units at their buses."""
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    n_bus = ds.sizes["bus"]
    f = ds["line_from_bus"].to_numpy().astype(int)
    t = ds["line_to_bus"].to_numpy().astype(int)
    if "line_in_service" in ds and ds.sizes.get("time", 0):
        service = ds["line_in_service"].to_numpy().astype(bool)
        on0, ever_out = service[0], ~service.all(axis=0)
    else:
        on0 = np.ones(len(f), dtype=bool)
        ever_out = np.zeros(len(f), dtype=bool)
    depth, row = feeder_layout(n_bus, f, t, on0)
    gap = 1.6  # vertical distance between rows (room for unit markers)
    x, y = depth.astype(float), -gap * row.astype(float)
    width = float(np.clip(0.42 * depth.max() + 4, 8, 22))
    height = float(np.clip(0.75 * gap * (row.max() + 1) + 2.2, 4, 16))
    fig, ax = plt.subplots(figsize=(width, height))
    handles = []
    for k, (a, b) in enumerate(zip(f, t, strict=True)):
        if on0[k]:
            style = {"color": "0.35", "lw": 1.6, "ls": "-"}
            if ever_out[k]:
                style = {"color": "tab:red", "lw": 1.8, "ls": ":"}
            ax.plot([x[a], x[b]], [y[a], y[b]], zorder=1, **style)
        else:
            ax.add_patch(
                FancyArrowPatch(
                    (x[a], y[a]),
                    (x[b], y[b]),
                    connectionstyle="arc3,rad=0.25",
                    arrowstyle="-",
                    ls="--",
                    lw=1.0,
                    color="0.6",
                    zorder=0,
                )
            )
    handles.append(Line2D([], [], color="0.35", lw=1.6, label="line in service"))
    if (~on0).any():
        handles.append(
            Line2D([], [], color="0.6", lw=1, ls="--", label="out of service at t = 0 (tie)")
        )
    if (ever_out & on0).any():
        out = ", ".join(str(int(ds["line"][k])) for k in np.flatnonzero(ever_out & on0))
        handles.append(
            Line2D([], [], color="tab:red", lw=1.8, ls=":", label=f"out during the run: {out}")
        )

    v_min_pu = float(ds.attrs.get("v_min_pu", 0.9))
    vmin = ds["vm_pu"].min("time").to_numpy()
    alive = np.isfinite(vmin)
    lo = min(float(np.min(vmin[alive])) if alive.any() else v_min_pu, v_min_pu - 0.02)
    hi = max(float(np.max(vmin[alive])) if alive.any() else 1.0, v_min_pu + 0.02)
    # red below the limit, yellow at it, blue well above (a linear scale)
    at = (v_min_pu - lo) / (hi - lo)
    cmap = LinearSegmentedColormap.from_list(
        "voltage",
        [
            (0.0, "#a50026"),
            (at, "#fee090"),
            (min(at + 0.35 * (1 - at), 1.0), "#abd9e9"),
            (1.0, "#313695"),
        ],
    )
    norm = Normalize(vmin=lo, vmax=hi)
    sc = ax.scatter(
        x[alive],
        y[alive],
        c=vmin[alive],
        cmap=cmap,
        norm=norm,
        s=90,
        edgecolors="k",
        linewidths=0.6,
        zorder=3,
    )
    if (~alive).any():
        ax.scatter(x[~alive], y[~alive], c="0.7", marker="X", s=70, zorder=3)
        handles.append(Line2D([], [], color="0.7", marker="X", ls="", label="never energised"))
    bar = fig.colorbar(sc, ax=ax, pad=0.01, fraction=0.03)
    bar.set_label("lowest |V| over the run (pu); black line: v_min_pu")
    bar.ax.axhline(v_min_pu, color="k", lw=1.5)
    if n_bus <= 150:
        for b in range(n_bus):
            ax.annotate(
                str(int(ds["bus"][b])),
                (x[b], y[b]),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=7,
            )
    handles += _draw_campuses(ds, ax, x, y)
    handles += _draw_units(ds, ax, x, y)
    ax.set_xlabel("lines from the substation (bus 0)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_yticks([])
    ax.set_xlim(-0.8, x.max() + 0.8)
    ax.set_ylim(y.min() - 0.9, y.max() + 1.3)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.1),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(
        f"{ds.attrs.get('run_name', 'run')}: feeder {ds.attrs.get('network', '')} "
        f"(units above their bus: marker by type, label and area by MW)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, png)


def _draw_campuses(ds, ax, x, y) -> list:
    from matplotlib.lines import Line2D

    if ds.sizes.get("campus", 0) == 0 or "campus_bus" not in ds:
        return []
    for k in range(ds.sizes["campus"]):
        b = int(ds["campus_bus"][k])
        p = float(ds["campus_p_nom_mw"][k]) if "campus_p_nom_mw" in ds else np.nan
        ax.scatter(
            x[b], y[b], s=330, facecolors="none", edgecolors="k", marker="h", lw=1.4, zorder=4
        )
        ax.annotate(
            f"{ds['campus'][k].item()}\n{fmt(p)} MW",
            (x[b], y[b]),
            xytext=(0, -24),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            fontweight="bold",
        )
    return [Line2D([], [], marker="h", ls="", mfc="none", mec="k", ms=13, label="AI campus")]


def _draw_units(ds, ax, x, y) -> list:
    """Flexible units in a row above their bus: marker by type, area by MW, label MW."""
    from matplotlib.lines import Line2D

    if not _has_units(ds):
        return []
    types = ds["unit_type"].to_numpy().astype(str)
    buses = ds["unit_bus"].to_numpy().astype(int)
    p = ds["unit_p_mw"].to_numpy() if "unit_p_mw" in ds else np.ones(len(buses))
    count = ds["unit_count"].to_numpy() if "unit_count" in ds else np.ones(len(buses))
    scale = 260.0 / max(float(np.nanmax(p)), 1e-9)
    for b in np.unique(buses):
        here = np.flatnonzero(buses == b)
        for i, j in enumerate(here):
            dx = 0.42 * (i - (len(here) - 1) / 2)
            marker, colour = UNIT_STYLE.get(types[j], ("o", "tab:brown"))
            ux, uy = x[b] + dx, y[b] + 0.7
            ax.plot([x[b], ux], [y[b], uy], color=colour, lw=0.6, zorder=2)
            ax.scatter(
                ux,
                uy,
                s=30 + scale * p[j],
                marker=marker,
                color=colour,
                edgecolors="k",
                linewidths=0.5,
                zorder=4,
            )
            label = f"{fmt(p[j])}" if count[j] == 1 else f"{int(count[j])}x\n{fmt(p[j])}"
            ax.annotate(
                label,
                (ux, uy),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6.5,
            )
    return [
        Line2D(
            [],
            [],
            marker=UNIT_STYLE.get(u, ("o", "tab:brown"))[0],
            ls="",
            color=UNIT_STYLE.get(u, ("o", "tab:brown"))[1],
            mec="k",
            ms=8,
            label=f"{u} unit",
        )
        for u in dict.fromkeys(types)
    ]


def _shade_events(ds: xr.Dataset, axes) -> list:
    """Shade each event's disturbance (onset to end) on every panel; legend handles by kind."""
    from matplotlib.patches import Patch

    if ds.sizes.get("event", 0) == 0 or "event_start_s" not in ds:
        return []
    horizon = float(ds.attrs.get("horizon_s", ds["time"].max()))
    kinds = ds["event_kind"].to_numpy().astype(str) if "event_kind" in ds else None
    starts = ds["event_start_s"].to_numpy()
    ends = ds["event_end_s"].to_numpy() if "event_end_s" in ds else np.full_like(starts, np.nan)
    seen: dict[str, list[int]] = {}
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        kind = kinds[i] if kinds is not None else "event"
        e = horizon if not np.isfinite(e) else min(e, horizon)
        if e <= s:
            e = s + max(float(ds.attrs.get("dt_s", 60.0)), 1e-3)
        colour = EVENT_COLOURS.get(kind, "tab:cyan")
        for ax in axes:
            ax.axvspan(s / 3600, e / 3600, color=colour, alpha=0.12, lw=0)
        seen.setdefault(kind, []).append(int(ds["event"][i]))
    return [
        Patch(
            color=EVENT_COLOURS.get(k, "tab:cyan"),
            alpha=0.3,
            label=f"{k} (event {', '.join(map(str, v))})",
        )
        for k, v in seen.items()
    ]


def _series(ds: xr.Dataset, name: str, label: str, **style) -> tuple | None:
    """(values, label, style) of a time series, or None when absent or all NaN."""
    if name not in ds:
        return None
    v = ds[name].to_numpy().astype(float)
    v = v.sum(axis=1) if v.ndim == 2 else v  # per bus: the feeder's total
    return (v, label, style) if np.isfinite(v).any() else None


def timeseries_panels(ds: xr.Dataset) -> list[tuple[str, list[tuple]]]:
    """The panels of `plot_timeseries`: (y label, [(values, label, style), ...]), those
    without data left out (a do-nothing run has no FCM panel)."""
    ai = [_series(ds, "ai_load_mw", "all campuses", color="k", lw=1.3)]
    if "campus_load_mw" in ds and ds.sizes.get("campus", 0) > 1:
        ai += [
            (ds["campus_load_mw"][:, k].to_numpy(), str(c), {"lw": 1})
            for k, c in enumerate(ds["campus"].to_numpy())
        ]
    unserved = [_series(ds, "unserved_mw", "unserved (total)", color="k", lw=1.3)]
    parts = {
        "islanded_mw": "islanded",
        "shed_mw": "shed by dispatcher",
        "uvls_shed_mw": "shed by UVLS",
        "collapse_mw": "collapse",
    }
    for name, label in parts.items():
        part = _series(ds, name, label, lw=0.9, ls="--")
        if part is not None and np.nanmax(np.abs(part[0])) > 0:
            unserved.append(part)
    fcm = []
    if _has_units(ds) and "fcm_p_mw" in ds:
        types = ds["unit_type"].to_numpy().astype(str)
        buses = ds["unit_bus"].to_numpy().astype(int)
        unique = len(set(types)) == len(types)
        for j in range(ds.sizes["unit"]):
            style = {"lw": 1}
            if unique and types[j] in UNIT_STYLE:
                style["color"] = UNIT_STYLE[types[j]][1]
            fcm.append((ds["fcm_p_mw"][:, j].to_numpy(), f"{types[j]}@{buses[j]}", style))
    vm = ds["vm_pu"]
    panels = [
        ("AI load (MW)", ai),
        (
            "import (MW)",
            [
                _series(ds, "import_mw", "import", color="0.25", lw=2.2, alpha=0.6),
                _series(
                    ds, "import_schedule_mw", "day-ahead schedule", color="tab:blue", ls="--", lw=1
                ),
                _series(
                    ds,
                    "planned_import_mw",
                    "dispatcher's plan (at its calls)",
                    color="tab:orange",
                    ls="none",
                    marker="o",
                    ms=2,
                ),
            ],
        ),
        (
            "imbalance (MW)",
            [_series(ds, "imbalance_mw", "beyond the upstream band", color="tab:red", lw=1)],
        ),
        ("unserved load (MW)", unserved),
        ("FCM output (MW)\n(+: injection)", fcm),
        (
            "|V| (pu)",
            [
                (vm.min("bus").to_numpy(), "lowest bus", {"color": "tab:red", "lw": 1}),
                (vm.max("bus").to_numpy(), "highest bus", {"color": "tab:blue", "lw": 1}),
            ],
        ),
    ]
    panels = [(label, [ln for ln in lines if ln is not None]) for label, lines in panels]
    return [p for p in panels if p[1]]


def plot_timeseries(ds: xr.Dataset, png: Path) -> Path:
    """Stacked panels over the run (hours): AI load, import, imbalance, unserved load, FCM
    output, voltage range; event disturbances (onset to end) shaded."""
    plt = _pyplot()
    t_h = ds["time"].to_numpy() / 3600.0
    panels = timeseries_panels(ds)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, 1.75 * len(panels) + 1.2), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    for ax, (label, lines) in zip(axes, panels, strict=True):
        for values, name, style in lines:
            ax.plot(t_h, values, label=name, drawstyle="steps-post", **style)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if label.startswith(("imbalance", "FCM")):
            ax.axhline(0, color="0.5", lw=0.6)
        if label == "|V| (pu)":
            for name in ("v_min_pu", "v_max_pu"):
                if name in ds.attrs:
                    value = float(ds.attrs[name])
                    ax.axhline(value, color="k", ls="--", lw=0.8, label=f"{name} = {value:g}")
    events = _shade_events(ds, axes)
    for k, ax in enumerate(axes):
        handles = ax.get_legend_handles_labels()[0] + (events if k == 0 else [])
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=7,
            frameon=False,
        )
    axes[-1].set_xlabel("time (h)")
    axes[-1].set_xlim(t_h[0], float(ds.attrs.get("horizon_s", t_h[-1] * 3600)) / 3600)
    fig.suptitle(
        f"{ds.attrs.get('run_name', 'run')}: {ds.attrs.get('dispatch_policy', '')} "
        "(shaded: event disturbances)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, png)


def _trapezoid_event(ds: xr.Dataset, event: int | None, source: str) -> int | None:
    """The event whose trapezoid is drawn: `event`, else the most unserved energy."""
    n = ds.sizes.get("event", 0)
    if event is not None:
        if not 0 <= event < n:
            allowed = f"must be an event of the run (0..{n - 1})" if n else "the run has no events"
            raise ConfigError(source, "--event", event, allowed)
        return event
    if n == 0 or "event_start_s" not in ds:
        return None
    score = (
        ds["event_unserved_energy_mwh"].fillna(-1.0).to_numpy()
        if "event_unserved_energy_mwh" in ds
        else np.zeros(n)
    )
    return int(np.argmax(score))


def trapezoid_phases(
    t_s: np.ndarray,
    deficit_mw: np.ndarray,
    durations_s: np.ndarray,
    *,
    tol_mw: float,
    recovery_fraction: float,
) -> dict[str, float] | None:
    """The instants (h) of `simgrid.metrics.trapezoid`'s phases in one window: onset, first at
    depth, recovery start (end of the degraded phase), recovery done (NaN: not within the
    window), with the depth and the deficit left at the end (MW). None: no deficit."""
    d = np.nan_to_num(np.asarray(deficit_mw, dtype=float))
    depth = float(d.max()) if d.size else 0.0
    if depth <= tol_mw:
        return None
    t_h = np.asarray(t_s, dtype=float) / 3600.0
    end_h = float(t_h[-1] + durations_s[-1] / 3600.0)
    i_onset = int(np.flatnonzero(d > tol_mw)[0])
    at_depth = np.flatnonzero(d >= depth - max(tol_mw, AT_DEPTH_BAND * depth))
    out = {
        "onset_h": float(t_h[i_onset]),
        "deep_h": float(t_h[at_depth[0]]),
        "depth_mw": depth,
        "recovery_h": end_h,
        "done_h": math.nan,
        "left_mw": math.nan,
        "end_h": end_h,
    }
    i_rec = int(at_depth[-1]) + 1
    if i_rec >= len(d):
        return out
    out["recovery_h"] = float(t_h[i_rec])
    done = np.flatnonzero(d[i_rec:] <= (1.0 - recovery_fraction) * depth)
    if done.size:
        out["done_h"] = float(t_h[i_rec + int(done[0])])
        out["left_mw"] = float(d[i_rec + int(done[0])])
    return out


def plot_trapezoid(ds: xr.Dataset, event: int, png: Path) -> Path:
    """The resilience trapezoid of one event on the served-load curve (deficit = unserved
    load), in the event's window as `simgrid.metrics.event_metrics` defines it."""
    plt = _pyplot()
    t = ds["time"].to_numpy()
    starts, ends = event_windows(ds)
    s0, s1 = float(starts[event]), float(ends[event])
    dur = step_durations_s(ds)
    w = (t >= s0) & (t < s1)
    dw = np.minimum(dur[w], s1 - t[w])
    unserved = np.nan_to_num(ds["unserved_mw"].to_numpy())
    demand = ds["demand_mw"].to_numpy()
    phases = (
        trapezoid_phases(
            t[w],
            unserved[w],
            dw,
            tol_mw=float(ds.attrs.get("unserved_tol_mw", 1e-3)),
            recovery_fraction=float(ds.attrs.get("recovery_fraction", 0.9)),
        )
        if w.any()
        else None
    )
    span = max(s1 - s0, 600.0)
    pad = min(0.15 * span, 3600.0)
    view = (t >= s0 - pad) & (t <= min(s1 + pad, t[-1]))
    th = t[view] / 3600
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.4), sharex=True, gridspec_kw={"height_ratios": [1, 1.4]}
    )
    top.plot(th, demand[view], drawstyle="steps-post", color="0.4", lw=1, label="demand")
    top.plot(
        th,
        demand[view] - unserved[view],
        drawstyle="steps-post",
        color="k",
        lw=1.3,
        label="served = demand - unserved",
    )
    top.set_ylabel("power (MW)")
    bottom.plot(
        th,
        -unserved[view],
        drawstyle="steps-post",
        color="k",
        lw=1.3,
        label="served - demand = -unserved",
    )
    bottom.fill_between(
        th,
        -unserved[view],
        0,
        step="post",
        color="tab:red",
        alpha=0.2,
        where=(t[view] >= s0) & (t[view] < s1),
        label="area in the window"
        + (
            f" = {fmt(float(ds['event_served_area_mwh'][event]))} MWh"
            if "event_served_area_mwh" in ds
            else ""
        ),
    )
    bottom.axhline(0, color="0.5", lw=0.6)
    bottom.set_ylabel("served - demand (MW)")
    for ax in (top, bottom):
        ax.axvline(s0 / 3600, color="0.3", ls="-.", lw=0.8)
        ax.axvline(s1 / 3600, color="0.3", ls="-.", lw=0.8)
        ax.grid(alpha=0.3)
    for at, text, ha in ((s0, "window opens", "left"), (s1, "window closes", "right")):
        top.annotate(
            text,
            (at / 3600, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=7,
            va="bottom",
            ha=ha,
        )
    if phases is not None:
        metrics = {
            k: float(ds[f"event_served_{k}_{u}"][event])
            for k, u in (
                ("degradation_rate", "mw_per_h"),
                ("degraded_duration", "h"),
                ("recovery_rate", "mw_per_h"),
            )
            if f"event_served_{k}_{u}" in ds
        }
        _draw_phases(bottom, phases, metrics)
    top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    bottom.set_xlabel("time (h)")
    fig.text(
        0.805, 0.42, _trapezoid_text(ds, event, phases), fontsize=7.5, va="top", family="monospace"
    )
    kind = _event_label(ds, event)
    fig.suptitle(
        f"Resilience trapezoid of event {int(ds['event'][event])} ({kind}, onset "
        f"{s0 / 3600:.2f} h) on the served-load curve",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    return _save(fig, png)


def _draw_phases(ax, ph: dict[str, float], metrics: dict[str, float]) -> None:
    """The idealised trapezoid (dashed) through the phase instants, and the phases as bands
    above the curve: degradation, degraded, recovery (a zero-width band: a step)."""
    depth = ph["depth_mw"]
    xs = [ph["onset_h"], ph["deep_h"], ph["recovery_h"]]
    ys = [0.0, -depth, -depth]
    if np.isfinite(ph["done_h"]):
        xs.append(ph["done_h"])
        ys.append(-ph["left_mw"])
    ax.plot(
        xs, ys, color="tab:blue", ls="--", lw=1.6, marker="o", ms=4, label="idealised trapezoid"
    )
    spans = [
        ("degradation", ph["onset_h"], ph["deep_h"], "tab:orange", "Phi", "degradation_rate"),
        ("degraded", ph["deep_h"], ph["recovery_h"], "tab:purple", "E", "degraded_duration"),
        ("recovery", ph["recovery_h"], ph["done_h"], "tab:green", "Pi", "recovery_rate"),
    ]
    band = (0.1 * depth, 0.3 * depth)
    for name, a, b, colour, symbol, key in spans:
        value = metrics.get(key, math.nan)
        units = "h" if key == "degraded_duration" else "MW/h"
        label = f"{name}: {symbol} = {fmt(value)} {units}"
        if name == "recovery" and np.isfinite(a) and not np.isfinite(b) and a < ph["end_h"]:
            b = ph["end_h"]  # recovering, not recovered, when the window closes
            label += " (not done in the window)"
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if b > a:
            ax.fill_between([a, b], *band, color=colour, alpha=0.55, lw=0, label=label)
        else:  # instantaneous
            ax.plot([a, a], band, color=colour, lw=3, label=f"{label} (step)")
    ax.annotate(
        "",
        xy=(ph["deep_h"], -depth),
        xytext=(ph["deep_h"], 0),
        arrowprops={"arrowstyle": "<->", "color": "tab:blue", "lw": 1},
    )
    ax.annotate(
        f"depth Lambda\n{fmt(depth)} MW",
        (ph["deep_h"], -depth / 2),
        xytext=(4, 0),
        textcoords="offset points",
        fontsize=7,
        color="tab:blue",
        va="center",
    )
    ax.set_ylim(-1.2 * depth, 0.4 * depth)


def _trapezoid_text(ds: xr.Dataset, event: int, ph: dict[str, float] | None) -> str:
    names = {
        "degradation_rate_mw_per_h": ("Phi degradation", "MW/h"),
        "depth_mw": ("Lambda depth", "MW"),
        "degraded_duration_h": ("E degraded", "h"),
        "recovery_rate_mw_per_h": ("Pi recovery", "MW/h"),
        "area_mwh": ("area", "MWh"),
    }
    lines = ["served-load trapezoid", "(simgrid metrics):"]
    for key, (label, units) in names.items():
        name = f"event_served_{key}"
        if name in ds:
            lines.append(f"{label:16s}{fmt(float(ds[name][event])):>9s} {units}")
    if ph is None:
        lines += ["", "no unserved load", "in the window"]
    else:
        lines += [
            "",
            f"onset       {ph['onset_h']:7.3f} h",
            f"at depth    {ph['deep_h']:7.3f} h",
            f"recovering  {ph['recovery_h']:7.3f} h",
            f"recovered   {ph['done_h']:7.3f} h",
        ]
    lines += ["", "inf: a step change", "NaN: phase not within", "the window"]
    return "\n".join(lines)


# --- stress test -----------------------------------------------------------------------------


def _levels(ds: xr.Dataset) -> list[str]:
    """The CVaR level tags ('95', ...) the summary holds."""
    stats = ds["statistic"].to_numpy().astype(str) if "statistic" in ds else []
    return [m.group(1) for s in stats if (m := re.fullmatch(r"cvar_(\d+)", s))]


def _stat(ds: xr.Dataset, metric: str, statistic: str) -> float:
    try:
        return float(ds["summary"].sel(metric=metric, statistic=statistic))
    except KeyError:
        return math.nan


def stress_report(
    ds: xr.Dataset, path: Path, out_dir: Path, *, event: int | None = None
) -> tuple[list[Path], list[str]]:
    """`distributions.png` and the summary, reliability and failure tables of a stress
    test; the run report of `worst_episode.nc` beside it (files prefixed `worst_`)."""
    files = []
    n = ds.sizes.get("scenario", 0)
    status = ds["episode_status"].to_numpy() if "episode_status" in ds else np.zeros(n)
    a = ds.attrs
    lines = [
        f"{n} episodes ({int((status != 0).sum())} failed); scenarios `"
        f"{a.get('scenarios_file', '?')}`, config `{a.get('config', '?')}`, allocation `"
        f"{a.get('allocation_file') or 'from the config'}`.",
        "",
    ]
    if "summary" in ds and ds.sizes.get("metric", 0):
        files.append(plot_distributions(ds, out_dir / "distributions.png"))
        lines += [f"![distributions]({files[-1].name})", ""]
        lines += ["## Summary over scenarios", "", *_summary_table(ds)]
    reliability = [
        n for n, v in ds.data_vars.items() if v.ndim == 0 and not n.startswith("baseline_")
    ]
    if reliability:
        lines += ["## Reliability indices", ""]
        lines += md_table(
            ["index", "value", "units", "meaning"],
            [
                [k, ds[k].item(), _units(ds[k]), ds[k].attrs.get("long_name", "")]
                for k in reliability
            ],
        )
    lines += _failed_table(ds, status)
    lines += _worst_table(ds, status)
    worst = path.parent / WORST_EPISODE_FILE
    if worst.is_file():
        kind = _peek_worst(worst)
        wds = _read_run(worst, kind)
        wfiles, wlines = run_report(wds, out_dir, prefix="worst_", event=event, source=str(worst))
        files += wfiles
        index = wds.attrs.get("scenario_index")
        which = f"scenario {int(index)}" if index is not None else "scenario not recorded"
        lines += [f"## Worst episode ({which})", "", f"From `{worst}`.", "", *wlines]
    return files, lines


def _peek_worst(path: Path) -> DatasetKind:
    try:
        with xr.open_dataset(path) as ds:
            kind = kind_of(ds)
    except Exception:
        kind = None
    return kind if kind in (DatasetKind.RUN, DatasetKind.EPISODE) else DatasetKind.RUN


def _summary_table(ds: xr.Dataset) -> list[str]:
    tags = _levels(ds)
    header = ["metric", "units", "mean", "mean 95 % CI", "p50", "p95"]
    for tag in tags:
        header += [f"VaR{tag}", f"CVaR{tag}", f"CVaR{tag} 95 % CI"]
    rows = []
    for m in ds["metric"].to_numpy().astype(str):
        units = _units(ds[m]) if m in ds else ""
        row = [
            m,
            units,
            _stat(ds, m, "mean"),
            _interval(_stat(ds, m, "mean_ci_low"), _stat(ds, m, "mean_ci_high")),
            _stat(ds, m, "p50"),
            _stat(ds, m, "p95"),
        ]
        for tag in tags:
            row += [
                _stat(ds, m, f"var_{tag}"),
                _stat(ds, m, f"cvar_{tag}"),
                _interval(_stat(ds, m, f"cvar_{tag}_ci_low"), _stat(ds, m, f"cvar_{tag}_ci_high")),
            ]
        rows.append(row)
    note = (
        "Probability-weighted over the episodes that ran, NaN values (e.g. restoration time "
        "of an episode never restored) left out; CI: bootstrap 95 % intervals; CVaR: mean of "
        "the worst (100 - level) %."
    )
    return [note, "", *md_table(header, rows)]


def _failed_table(ds: xr.Dataset, status: np.ndarray) -> list[str]:
    failed = np.flatnonzero(status != 0)
    if failed.size == 0:
        return ["All episodes ran.", ""]
    errors = ds["episode_error"].to_numpy().astype(str) if "episode_error" in ds else None
    rows = [[int(ds["scenario"][i]), errors[i] if errors is not None else "?"] for i in failed]
    return ["## Failed episodes", "", *md_table(["scenario", "error"], rows)]


def _worst_table(ds: xr.Dataset, status: np.ndarray, n: int = 10) -> list[str]:
    by = next((m for m in ("closed_loop_cost", "unserved_energy_mwh") if m in ds), None)
    if by is None or ds.sizes.get("scenario", 0) == 0:
        return []
    cols = [m for m in EVALUATED if m in ds and ds[m].dims == ("scenario",)]
    value = np.where(status == 0, ds[by].fillna(-np.inf).to_numpy(), -np.inf)
    order = np.argsort(-value, kind="stable")[: min(n, len(value))]
    rows = [
        [int(ds["scenario"][i]), float(ds["probability"][i]), *(float(ds[m][i]) for m in cols)]
        for i in order
        if np.isfinite(value[i])
    ]
    header = ["scenario", "probability", *(f"{m} ({_units(ds[m])})" for m in cols)]
    return [f"## Worst scenarios by {by}", "", *md_table(header, rows)]


def _ecdf(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return values[order], cum / cum[-1]


def plot_distributions(ds: xr.Dataset, png: Path) -> Path:
    """Per summarised metric, the probability-weighted empirical CDF over the episodes that
    ran (it reads the same with 8 scenarios as with 8000), with the mean, VaR and CVaR
    (first level) as vertical lines and the CVaR's bootstrap interval shaded; their values
    in the panel's title. Metrics equal in every episode are named instead of drawn."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    p = ds["probability"].to_numpy().astype(float)
    ok = ds["episode_status"].to_numpy() == 0 if "episode_status" in ds else np.ones(len(p), bool)
    tag = (_levels(ds) or [""])[0]
    drawn, constant = [], []
    for m in ds["metric"].to_numpy().astype(str):
        x = ds[m].to_numpy().astype(float) if m in ds else np.array([])
        keep = ok & np.isfinite(x) if x.size else np.zeros(0, bool)
        if keep.sum() and np.ptp(x[keep]) > 0:
            drawn.append(m)
        elif keep.sum():
            constant.append(f"{m} = {fmt(x[keep][0])} {_units(ds[m])}")
        else:
            constant.append(f"{m}: no value")
    ncol = 3 if len(drawn) > 4 else max(len(drawn), 1)
    nrow = max(math.ceil(len(drawn) / ncol), 1)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.7 * ncol, 3.4 * nrow + 1.2), squeeze=False)
    for ax, m in zip(axes.ravel(), drawn, strict=False):
        _distribution_panel(ax, ds, m, ok, p, tag)
    for ax in axes.ravel()[len(drawn) :]:
        ax.axis("off")
    if not drawn:
        axes[0, 0].text(
            0.5,
            0.5,
            "no metric varies over the episodes",
            ha="center",
            va="center",
            transform=axes[0, 0].transAxes,
        )
    handles = [
        Line2D([], [], color="k", lw=1.2, drawstyle="steps-post", label="weighted CDF"),
        Line2D([], [], color="tab:blue", lw=1.2, label="mean"),
    ]
    if tag:
        handles += [
            Line2D([], [], color="tab:orange", ls="--", lw=1.4, label=f"VaR{tag}"),
            Line2D([], [], color="tab:red", ls=":", lw=1.8, label=f"CVaR{tag}"),
            Patch(color="tab:red", alpha=0.15, label=f"CVaR{tag} bootstrap 95 % interval"),
            Line2D([], [], color="0.6", ls="-.", lw=0.6, label=f"probability {int(tag) / 100:g}"),
        ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    title = (
        f"Stress test: {int(ok.sum())} of {len(p)} episodes ran; probability-weighted "
        "distributions over them"
    )
    if constant:
        title += "\nthe same in every episode: " + "; ".join(constant)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, png)


def _distribution_panel(ax, ds: xr.Dataset, m: str, ok, p, tag: str) -> None:
    x = ds[m].to_numpy().astype(float)
    keep = ok & np.isfinite(x)
    xs, cdf = _ecdf(x[keep], p[keep])
    margin = 0.04 * float(np.ptp(xs))
    ax.step(
        np.r_[xs[0] - margin, xs, xs[-1] + margin],
        np.r_[0.0, cdf, 1.0],
        where="post",
        color="k",
        lw=1.2,
    )
    ax.set_xlim(xs[0] - margin, xs[-1] + margin)
    mean = _stat(ds, m, "mean")
    ax.axvline(mean, color="tab:blue", lw=1.2)
    stats = f"mean {fmt(mean)}"
    if tag:
        var, cvar = _stat(ds, m, f"var_{tag}"), _stat(ds, m, f"cvar_{tag}")
        lo, hi = _stat(ds, m, f"cvar_{tag}_ci_low"), _stat(ds, m, f"cvar_{tag}_ci_high")
        if np.isfinite(lo) and np.isfinite(hi):
            ax.axvspan(lo, hi, color="tab:red", alpha=0.15, lw=0)
        ax.axvline(var, color="tab:orange", ls="--", lw=1.4)
        ax.axvline(cvar, color="tab:red", ls=":", lw=1.8)
        ax.axhline(int(tag) / 100, color="0.6", lw=0.6, ls="-.")
        stats += f", VaR{tag} {fmt(var)}\nCVaR{tag} {fmt(cvar)} {_interval(lo, hi)}"
    units = _units(ds[m])
    dropped = int((ok & ~np.isfinite(x)).sum())
    n = f"{int(keep.sum())} episodes" + (f" ({dropped} NaN left out)" if dropped else "")
    ax.set_title(f"{m}: {n}\n{stats}", fontsize=8)
    ax.set_xlabel(f"{m} ({units})" if units else m, fontsize=8)
    ax.set_ylabel("cumulative probability", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)


# --- evaluation ------------------------------------------------------------------------------


def evaluation_report(ds: xr.Dataset, out_dir: Path) -> tuple[list[Path], list[str]]:
    """`evaluation.png` and the table of per-allocation results."""
    png = plot_evaluation(ds, out_dir / "evaluation.png")
    allocations = ds["allocation"].to_numpy().astype(str)
    names = [n for n, v in ds.data_vars.items() if v.dims == ("allocation",)]
    first = [
        "investment_per_yr",
        "planned_recourse_per_yr",
        "closed_loop_recourse_per_yr",
        "total_cost_per_yr",
    ]
    names = [n for n in first if n in names] + [n for n in names if n not in first]
    rows = [[n, _units(ds[n]), *ds[n].to_numpy()] for n in names]
    n_sc = ds.sizes.get("scenario", 0)
    lines = [
        f"{len(allocations)} allocations judged on {n_sc} scenarios (probability-weighted; "
        "CVaR95: mean of the worst 5 %). Planned recourse is the Stage-I model's own estimate "
        "(NaN for allocations not from Stage-I); closed-loop recourse is what the simulated "
        "dispatch cost.",
        "",
        f"![evaluation]({png.name})",
        "",
        "## Results per allocation",
        "",
        *md_table(["quantity", "units", *allocations], rows),
    ]
    return [png], lines


def evaluation_panels(ds: xr.Dataset) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The panels of `plot_evaluation`: (title, units, [(variable, bar label), ...])."""
    panels = []
    for m, title in EVALUATED.items():
        bars = [
            (n, lab) for n, lab in ((f"mean_{m}", "mean"), (f"cvar95_{m}", "CVaR95")) if n in ds
        ]
        if bars:
            panels.append(
                (title, _units(ds[bars[0][0]]) or _units(ds.get(m, ds[bars[0][0]])), bars)
            )
    groups = (
        (
            "investment and total cost",
            (("investment_per_yr", "investment"), ("total_cost_per_yr", "total cost")),
        ),
        (
            "recourse: planned and closed loop",
            (
                ("planned_recourse_per_yr", "planned (Stage-I model)"),
                ("closed_loop_recourse_per_yr", "closed loop (simulated)"),
            ),
        ),
    )
    for title, candidates in groups:
        bars = [(n, lab) for n, lab in candidates if n in ds and np.isfinite(ds[n]).any()]
        if bars:
            panels.append((title, _units(ds[bars[0][0]]) or "$/yr", bars))
    return panels


def plot_evaluation(ds: xr.Dataset, png: Path) -> Path:
    """Grouped bars per allocation: mean and CVaR95 of each evaluated metric, investment
    beside total cost, planned beside closed-loop recourse (where planned exists)."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    allocations = ds["allocation"].to_numpy().astype(str)
    x = np.arange(len(allocations))
    panels = evaluation_panels(ds)
    ncol = min(4, max(len(panels), 1))
    nrow = max(math.ceil(len(panels) / ncol), 1)
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(max(4.2, 0.9 * len(allocations) + 1.4) * ncol, 3.3 * nrow + 0.6),
        squeeze=False,
    )
    colours = ["tab:blue", "tab:red", "tab:green", "tab:orange"]
    for ax, (title, units, bars) in zip(axes.ravel(), panels, strict=False):
        width = 0.8 / len(bars)
        top = 0.0
        for k, (name, bar_label) in enumerate(bars):
            v = ds[name].to_numpy().astype(float)
            pos = x - 0.4 + width * (k + 0.5)
            ax.bar(pos, np.nan_to_num(v), width, label=bar_label, color=colours[k % 4])
            for px, val in zip(pos, v, strict=True):
                ax.annotate(
                    fmt(val) if np.isfinite(val) else "n/a",
                    (px, np.nan_to_num(val)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    rotation=90 if len(bars) > 1 else 0,
                )
            top = max(top, float(np.nanmax(v, initial=0.0)))
        ax.set_ylim(0, 1.35 * top if top > 0 else 1.0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
        ax.set_xticks(x, allocations, fontsize=8, rotation=20 if len(allocations) > 4 else 0)
        ax.set_ylabel(units, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=len(bars), framealpha=0.85)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"Evaluation of {len(allocations)} allocations on {ds.sizes.get('scenario', 0)} "
        "scenarios (probability-weighted; CVaR95: mean of the worst 5 %)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, png)


# --- allocation ------------------------------------------------------------------------------


def _catalogue_types(ds: xr.Dataset) -> dict[str, dict]:
    """Module name -> its catalogue entry, from the catalogue text the file embeds."""
    text = ds.attrs.get("catalogue_toml")
    if not text:
        return {}
    try:
        modules = tomllib.loads(str(text)).get("module", [])
    except tomllib.TOMLDecodeError:
        return {}
    return {str(m.get("name")): m for m in modules if isinstance(m, dict)}


def allocation_report(ds: xr.Dataset, out_dir: Path) -> tuple[list[Path], list[str]]:
    """`allocation.png` and the tables of an allocation file."""
    png = plot_allocation(ds, out_dir / "allocation.png")
    catalogue = _catalogue_types(ds)
    rows = []
    for j in range(ds.sizes.get("unit", 0)):
        module = str(ds["module"][j].item())
        entry = catalogue.get(module, {})
        count = int(ds["count"][j]) if "count" in ds else 1
        rows.append(
            [
                module,
                str(entry.get("type", "?")),
                int(ds["bus"][j]),
                count,
                str(ds["supplier"][j].item()) if "supplier" in ds else "",
                count * float(entry.get("p_mw", np.nan)),
                float(ds["unit_cost"][j]) if "unit_cost" in ds else np.nan,
            ]
        )
    header = ["module", "type", "bus", "modules", "supplier", "P (MW)", "cost per module ($)"]
    a = ds.attrs
    scalars = [n for n, v in ds.data_vars.items() if v.ndim == 0]
    lines = [
        f"Ambiguity {a.get('ambiguity', '?')} (radius {fmt(a.get('radius', np.nan))}), alpha "
        f"{fmt(a.get('alpha', np.nan))}, beta {fmt(a.get('beta', np.nan))}, solver "
        f"{a.get('solver_status', '?')}; scenarios `{a.get('scenarios_file', '?')}`, "
        f"config `{a.get('config_source', '?')}`.",
        "",
        f"![allocation]({png.name})",
        "",
        "## Modules placed",
        "",
        *md_table(header, rows),
        "## Costs and risk",
        "",
        *md_table(
            ["quantity", "value", "units", "meaning"],
            [[n, ds[n].item(), _units(ds[n]), ds[n].attrs.get("long_name", "")] for n in scalars],
        ),
    ]
    return [png], lines


def plot_allocation(ds: xr.Dataset, png: Path) -> Path:
    """Modules by bus, stacked by module (type from the embedded catalogue), and the
    annual recourse cost's distribution over the scenarios (nominal and worst-case)."""
    plt = _pyplot()
    catalogue = _catalogue_types(ds)
    modules = ds["module"].to_numpy().astype(str)
    buses = ds["bus"].to_numpy().astype(int)
    count = ds["count"].to_numpy().astype(float) if "count" in ds else np.ones(len(buses))
    candidates = _candidates(ds, buses)
    has_risk = "recourse_cost" in ds and ds.sizes.get("scenario", 0) > 1
    fig, axes = plt.subplots(
        1, 2 if has_risk else 1, figsize=(12 if has_risk else 7, 4.4), squeeze=False
    )
    ax = axes[0, 0]
    xs = np.arange(len(candidates))
    bottom = np.zeros(len(candidates))
    for module in dict.fromkeys(modules):
        heights = np.array([count[(modules == module) & (buses == b)].sum() for b in candidates])
        kind = str(catalogue.get(module, {}).get("type", module))
        colour = UNIT_STYLE.get(kind, ("", None))[1]
        p = catalogue.get(module, {}).get("p_mw")
        label = f"{module} ({kind}" + (f", {fmt(p)} MW each)" if p else ")")
        ax.bar(xs, heights, 0.6, bottom=bottom, label=label, color=colour, edgecolor="k", lw=0.5)
        bottom += heights
    for xi, total in zip(xs, bottom, strict=True):
        if total:
            ax.annotate(
                fmt(total),
                (xi, total),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(xs, [str(b) for b in candidates])
    ax.set_xlabel("bus" + (" (planning candidates)" if "planning_candidates" in ds.attrs else ""))
    ax.set_ylabel("modules placed")
    ax.set_ylim(0, max(float(bottom.max(initial=0.0)), 1.0) * 1.35)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    ax.set_title("modules by bus and type", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if has_risk:
        _plot_recourse(ds, axes[0, 1])
    fig.suptitle(
        f"FCM allocation ({ds.attrs.get('ambiguity', '?')} ambiguity, "
        f"{ds.sizes.get('scenario', 0)} scenarios)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, png)


def _candidates(ds: xr.Dataset, buses: np.ndarray) -> list[int]:
    found = re.findall(r"\d+", str(ds.attrs.get("planning_candidates", "")))
    return sorted({int(b) for b in found} | {int(b) for b in buses})


def _plot_recourse(ds: xr.Dataset, ax) -> None:
    h = ds["recourse_cost"].to_numpy().astype(float)
    units = _units(ds["recourse_cost"]) or "$/yr"
    for name, label, colour in (
        ("probability", "nominal", "k"),
        ("worst_case_probability", "worst case (ambiguity set)", "tab:red"),
    ):
        if name in ds:
            xs, cdf = _ecdf(h, ds[name].to_numpy().astype(float))
            ax.step(
                np.r_[xs[0], xs],
                np.r_[0.0, cdf],
                where="post",
                color=colour,
                lw=1.2,
                label=f"{label} probability",
            )
    for name, label, style in (
        ("expected_recourse", "mean", {"color": "tab:blue"}),
        ("var", "VaR", {"color": "tab:orange", "ls": "--"}),
        ("cvar", "CVaR", {"color": "tab:red", "ls": ":", "lw": 1.8}),
    ):
        if name in ds and np.isfinite(ds[name]):
            ax.axvline(float(ds[name]), label=f"{label} {fmt(ds[name].item())}", **style)
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(f"annual recourse cost ({units}; k: thousand, M: million)")
    ax.set_ylabel("cumulative probability")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title(
        f"recourse over scenarios (alpha = {fmt(ds.attrs.get('alpha', np.nan))})", fontsize=9
    )
