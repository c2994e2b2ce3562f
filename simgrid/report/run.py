"""The report of a run: feeder graph, time series, resilience trapezoid, tables."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.errors import ConfigError
from simgrid.metrics import (
    TrapezoidPhases,
    event_windows,
    step_durations_s,
    trapezoid_phases,
)
from simgrid.ncio import DatasetKind, read_dataset
from simgrid.report.common import (
    EVENT_COLOURS,
    UNIT_STYLE,
    _pyplot,
    _save,
    _units,
    fmt,
    md_code,
    md_table,
    md_text,
)

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


def _read_run(path: Path, kind: DatasetKind = DatasetKind.RUN) -> xr.Dataset:
    return read_dataset(
        path, kind, source=str(path), key="RESULT", required=RUN_REQUIRED, drop=RUN_UNUSED
    )


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
        f"Network {md_text(a.get('network', '?'))}, {ds.sizes.get('bus', 0)} buses, "
        f"horizon {fmt(float(a.get('horizon_s', np.nan)) / 3600)} h at "
        f"dt = {fmt(a.get('dt_s', np.nan))} s, "
        f"dispatch: {md_text(a.get('dispatch_policy', '?'))}, "
        f"config {md_code(a.get('config_source', '?'))}.",
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


def _focus(ds: xr.Dataset) -> np.ndarray:
    """Buses a map of a large grid must show: campuses, units, and any bus below v_min."""
    buses = [ds[name].to_numpy().astype(int) for name in ("campus_bus", "unit_bus") if name in ds]
    v_min_pu = float(ds.attrs.get("v_min_pu", 0.9))
    low = np.flatnonzero(ds["vm_pu"].min("time").to_numpy() < v_min_pu)
    return np.unique(np.concatenate([*buses, low, np.zeros(0, int)]).astype(int))


GRID_HOPS = 2  # a meshed grid's map: the buses within this many lines of the focus buses


def grid_layout(
    n_bus: int,
    from_bus: np.ndarray,
    to_bus: np.ndarray,
    in_service: np.ndarray,
    focus: np.ndarray,
    hops: int = GRID_HOPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, shown) of a meshed grid's neighbourhood of `focus` (buses within `hops` lines
    in service; all buses if none is given): a Kamada-Kawai drawing (networkx; deterministic)
    scaled to about 1.6 between neighbours, as the feeder's tree drawing."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n_bus))
    g.add_edges_from(
        (int(a), int(b)) for a, b, on in zip(from_bus, to_bus, in_service, strict=True) if on
    )
    shown = np.zeros(n_bus, dtype=bool)
    for b in focus if len(focus) else range(n_bus):
        shown[list(nx.single_source_shortest_path_length(g, int(b), cutoff=hops))] = True
    pos = nx.kamada_kawai_layout(g.subgraph(np.flatnonzero(shown).tolist()))
    x, y = np.zeros(n_bus), np.zeros(n_bus)
    for b, (px, py) in pos.items():
        x[b], y[b] = px, py
    edges = [(a, b) for a, b in g.subgraph(pos).edges()]
    if edges:
        length = np.median([math.hypot(x[a] - x[b], y[a] - y[b]) for a, b in edges])
        x, y = x * 1.6 / max(length, 1e-9), y * 1.6 / max(length, 1e-9)
    return x, y, shown


def plot_feeder(ds: xr.Dataset, png: Path) -> Path:
    """The feeder as a tree (a meshed grid: the neighbourhood of its campuses, units and low
    buses): buses coloured by their lowest voltage over the run, dashed lines out of service
    at the start, campuses and flexible units at their buses."""
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
    meshed = int(on0.sum()) >= n_bus  # more lines in service than a tree has: a loop
    if meshed:
        x, y, shown = grid_layout(n_bus, f, t, on0, _focus(ds))
    else:
        depth, row = feeder_layout(n_bus, f, t, on0)
        gap = 1.6  # vertical distance between rows (room for unit markers)
        x, y, shown = depth.astype(float), -gap * row.astype(float), np.ones(n_bus, dtype=bool)
    span_x, span_y = np.ptp(x[shown]), np.ptp(y[shown])
    width = float(np.clip(0.42 * span_x + 4, 8, 22))
    height = float(np.clip(0.75 * (span_y + 1.6) + 2.2, 4, 16))
    fig, ax = plt.subplots(figsize=(width, height))
    handles = []
    for k, (a, b) in enumerate(zip(f, t, strict=True)):
        if not (shown[a] and shown[b]):
            continue
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
    alive = np.isfinite(vmin) & shown
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
    dead = shown & ~alive
    if dead.any():
        ax.scatter(x[dead], y[dead], c="0.7", marker="X", s=70, zorder=3)
        handles.append(Line2D([], [], color="0.7", marker="X", ls="", label="never energised"))
    bar = fig.colorbar(sc, ax=ax, pad=0.01, fraction=0.03)
    bar.set_label("lowest |V| over the run (pu); black line: v_min_pu")
    bar.ax.axhline(v_min_pu, color="k", lw=1.5)
    if shown.sum() <= 150:
        for b in np.flatnonzero(shown):
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
    if meshed:
        ax.set_xticks([])
        what = (
            f"{int(shown.sum())} of {n_bus} buses:\nwithin {GRID_HOPS} lines of the campuses, "
            "the units and the buses below v_min"
        )
    else:
        ax.set_xlabel("lines from the substation (bus 0)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        what = "units above their bus: marker by type, label and area by MW"
    ax.set_yticks([])
    ax.set_xlim(x[shown].min() - 0.8, x[shown].max() + 0.8)
    ax.set_ylim(y[shown].min() - 0.9, y[shown].max() + 1.3)
    for side in ("top", "right", "left") + (("bottom",) if meshed else ()):
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
        f"{ds.attrs.get('run_name', 'run')}: {'grid' if meshed else 'feeder'} "
        f"{ds.attrs.get('network', '')} ({what})",
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


def _draw_phases(ax, ph: TrapezoidPhases, metrics: dict[str, float]) -> None:
    """The idealised trapezoid (dashed) through the phase instants, and the phases as bands
    above the curve: degradation, degraded, recovery (a zero-width band: a step)."""
    depth = ph.depth_mw
    xs = [ph.onset_h, ph.deep_h, ph.recovery_h]
    ys = [0.0, -depth, -depth]
    if np.isfinite(ph.done_h):
        xs.append(ph.done_h)
        ys.append(-ph.left_mw)
    ax.plot(
        xs, ys, color="tab:blue", ls="--", lw=1.6, marker="o", ms=4, label="idealised trapezoid"
    )
    spans = [
        ("degradation", ph.onset_h, ph.deep_h, "tab:orange", "Phi", "degradation_rate"),
        ("degraded", ph.deep_h, ph.recovery_h, "tab:purple", "E", "degraded_duration"),
        ("recovery", ph.recovery_h, ph.done_h, "tab:green", "Pi", "recovery_rate"),
    ]
    band = (0.1 * depth, 0.3 * depth)
    for name, a, b, colour, symbol, key in spans:
        value = metrics.get(key, math.nan)
        units = "h" if key == "degraded_duration" else "MW/h"
        label = f"{name}: {symbol} = {fmt(value)} {units}"
        if name == "recovery" and np.isfinite(a) and not np.isfinite(b) and a < ph.end_h:
            b = ph.end_h  # recovering, not recovered, when the window closes
            label += " (not done in the window)"
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if b > a:
            ax.fill_between([a, b], *band, color=colour, alpha=0.55, lw=0, label=label)
        else:  # instantaneous
            ax.plot([a, a], band, color=colour, lw=3, label=f"{label} (step)")
    ax.annotate(
        "",
        xy=(ph.deep_h, -depth),
        xytext=(ph.deep_h, 0),
        arrowprops={"arrowstyle": "<->", "color": "tab:blue", "lw": 1},
    )
    ax.annotate(
        f"depth Lambda\n{fmt(depth)} MW",
        (ph.deep_h, -depth / 2),
        xytext=(4, 0),
        textcoords="offset points",
        fontsize=7,
        color="tab:blue",
        va="center",
    )
    ax.set_ylim(-1.2 * depth, 0.4 * depth)


def _trapezoid_text(ds: xr.Dataset, event: int, ph: TrapezoidPhases | None) -> str:
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
            f"onset       {ph.onset_h:7.3f} h",
            f"at depth    {ph.deep_h:7.3f} h",
            f"recovering  {ph.recovery_h:7.3f} h",
            f"recovered   {ph.done_h:7.3f} h",
        ]
    lines += ["", "inf: a step change", "NaN: phase not within", "the window"]
    return "\n".join(lines)
