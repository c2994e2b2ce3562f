"""The report of an out-of-sample evaluation: the allocations compared."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.report.common import _pyplot, _save, _units, fmt, md_table

EVALUATED = {
    "unserved_energy_mwh": "unserved energy",
    "imbalance_energy_mwh": "imbalance energy",
    "restoration_time_s": "restoration time",
    "peak_imbalance_mw": "peak imbalance",
    "closed_loop_cost": "closed-loop cost",
}


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
