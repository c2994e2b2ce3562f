"""The report of an allocation: modules on the feeder, recourse per scenario."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.report.common import (
    UNIT_STYLE,
    _pyplot,
    _save,
    _units,
    fmt,
    md_code,
    md_table,
    md_text,
)
from simgrid.report.stress import _ecdf


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
        f"Ambiguity {md_text(a.get('ambiguity', '?'))} (radius {fmt(a.get('radius', np.nan))}), "
        f"alpha {fmt(a.get('alpha', np.nan))}, beta {fmt(a.get('beta', np.nan))}, solver "
        f"{md_text(a.get('solver_status', '?'))}; scenarios "
        f"{md_code(a.get('scenarios_file', '?'))}, config {md_code(a.get('config_source', '?'))}.",
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
