"""The report of a stress test: metric distributions with VaR/CVaR, summary tables, the
worst episode's run report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.ncio import DatasetKind, declared_kind
from simgrid.report.common import (
    WORST_EPISODE_FILE,
    _interval,
    _pyplot,
    _save,
    _units,
    fmt,
    md_code,
    md_table,
)
from simgrid.report.evaluation import EVALUATED
from simgrid.report.run import _read_run, run_report


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
        f"{n} episodes ({int((status != 0).sum())} failed); scenarios "
        f"{md_code(a.get('scenarios_file', '?'))}, config {md_code(a.get('config', '?'))}, "
        f"allocation {md_code(a.get('allocation_file') or 'from the config')}.",
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
        lines += [f"## Worst episode ({which})", "", f"From {md_code(worst)}.", "", *wlines]
    return files, lines


def _peek_worst(path: Path) -> DatasetKind:
    kind = (declared_kind(path) or (None, None))[0]
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
