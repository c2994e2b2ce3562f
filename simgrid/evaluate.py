"""`simgrid evaluate`: allocations judged out of sample, in closed loop, on common scenarios.

Every allocation (and the do-nothing reference, `none`) runs the same held-out scenarios
(common random numbers: episode i is scenario i of the set for all of them) as a stress test
on one dask cluster. The table per allocation: annualised investment; mean and CVaR of
unserved energy, imbalance energy, peak imbalance, restoration time and the closed-loop cost;
total cost a year (investment + days_per_year x mean closed-loop cost); and for Stage-I
allocations the recourse their planning model predicts on these very scenarios (its Stage-I
recourse: by default the chained days of operation recourse) next to what rolling AC operation
cost, so a user sees how far the plan is from the plant.

Paired differences: every allocation against a named reference (`none` by default), day by day
on the common scenarios, with a bootstrap interval of the mean difference and how many days it
was cheaper or dearer; a difference is *established* when its interval excludes zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid import stats
from simgrid.config import RunConfig
from simgrid.errors import ConfigError
from simgrid.ncio import DatasetKind, package_versions
from simgrid.optimization.planner import Purchase
from simgrid.runner.episode import StressSpec

NONE = "none"
METRICS = {
    "unserved_energy_mwh": "MWh",
    "imbalance_energy_mwh": "MWh",
    "peak_imbalance_mw": "MW",
    "restoration_time_s": "s",
    "closed_loop_cost": "$",
    "voltage_violation_s": "s",
    "thermal_violation_s": "s",
}
# compared pair by pair against the reference: a day's total cost (its closed-loop cost and a
# day's share of the investment) first, then what it is made of and what operators see
PAIRED = (
    "total_cost",
    "closed_loop_cost",
    "unserved_energy_mwh",
    "imbalance_energy_mwh",
    "voltage_violation_s",
    "thermal_violation_s",
)
DIFFERENCE = ("mean", "ci_low", "ci_high", "wins", "losses", "days", "established")


@dataclass(frozen=True)
class Candidate:
    """One allocation under evaluation (`path` None: the do-nothing reference)."""

    label: str
    path: str | None
    investment_per_yr: float
    purchases: tuple[Purchase, ...]  # empty unless the file is Stage-I's (suppliers known)
    training_recourse_per_yr: float  # the file's own planned expected recourse (NaN if none)


def labels(paths: Sequence[str]) -> list[str]:
    """File stems as labels, made unique (`a`, `a_2`, ...); `none` is reserved."""
    out: list[str] = []
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(p).stem) or "allocation"
        label, k = stem, 2
        while label in out or label == NONE:
            label, k = f"{stem}_{k}", k + 1
        out.append(label)
    return out


def candidates(cfg: RunConfig, paths: Sequence[str]) -> list[Candidate]:
    """The do-nothing reference and each allocation file, read and priced."""
    from simgrid.allocate import purchases_in
    from simgrid.fcm import load_catalogue, read_allocation_dataset

    if cfg.dispatch.catalogue is None:
        raise ConfigError(cfg.source, "dispatch.catalogue", None, "is required to evaluate")
    catalogue = load_catalogue(cfg.dispatch.catalogue)
    prices = {s.module: s.unit_cost for s in reversed(catalogue.suppliers)}
    out = [Candidate(NONE, None, 0.0, (), math.nan)]
    for label, path in zip(labels(paths), paths, strict=True):
        ds = read_allocation_dataset(path, str(path), key="--allocations")
        for i, m in enumerate(ds["module"].to_numpy()):
            if str(m) not in prices:
                raise ConfigError(
                    str(path),
                    f"unit[{i}].module",
                    str(m),
                    f"is not a module of the catalogue {cfg.dispatch.catalogue} "
                    f"({', '.join(sorted(prices))})",
                )
        unit_cost = (
            ds["unit_cost"].to_numpy()
            if "unit_cost" in ds
            else np.array([prices.get(str(m), math.nan) for m in ds["module"].to_numpy()])
        )
        # priced with this config's annuity for every allocation alike (a Stage-I file's own
        # investment_cost used its config's discount rate and lifetime)
        invest = cfg.planning.annuity * float(ds["count"].to_numpy() @ unit_cost)
        purchases = purchases_in(ds, unit_cost) if "supplier" in ds else ()
        trained = float(ds["expected_recourse"]) if "expected_recourse" in ds else math.nan
        out.append(Candidate(label, str(path), invest, purchases, trained))
    return out


def specs(cfg_path: str, scenarios: str, out_dir: Path, cands: Sequence[Candidate]):
    """One stress-test spec per candidate, each in its own folder under `out_dir`."""
    return [
        StressSpec(
            config=cfg_path,
            scenarios=scenarios,
            out_dir=str(out_dir / c.label),
            allocation=c.path,
            no_dispatch=c.path is None,
        )
        for c in cands
    ]


def planned_recourse(
    cfg: RunConfig, scenarios: str, cand: Candidate, scenario_map=None
) -> np.ndarray:
    """The planning model's recourse ($/yr) of a Stage-I allocation on each of `scenarios`
    (NaN for other allocations; its buses added to the candidates, so every purchase has its
    column; `scenario_map`: how operation recourse maps its days, e.g. on dask)."""
    from simgrid.allocate import judge

    if not cand.purchases:
        return np.full(1, math.nan)
    buses = sorted(set(cfg.planning.candidates) | {p.bus for p in cand.purchases})
    planning = replace(cfg.planning, candidates=tuple(buses))
    return judge(cfg, scenarios, planning, cand.purchases, scenario_map).recourse


def evaluation_dataset(
    cfg: RunConfig,
    scenarios: str,
    cands: Sequence[Candidate],
    results: Sequence[xr.Dataset],
    planned: Sequence[np.ndarray],
    level: float = 0.95,
    reference: str = NONE,
) -> xr.Dataset:
    """The evaluation table over `allocation`, with every episode's metrics behind it and the
    paired differences against `reference`; `planned`: per allocation, the Stage-I model's
    recourse ($/yr) on each scenario (`planned_recourse`)."""
    tag = f"{round(level * 100):02d}"
    days = cfg.planning.days_per_year
    p = results[0]["probability"].to_numpy()
    data: dict[str, xr.Variable] = {
        "probability": xr.Variable("scenario", p, results[0]["probability"].attrs),
        "episode_status": xr.Variable(
            ("allocation", "scenario"),
            np.stack([r["episode_status"].to_numpy() for r in results]),
            {"units": "1", "long_name": "0: episode ran; 1: it failed"},
        ),
    }
    for name, units in METRICS.items():
        values = np.stack(
            [r[name].to_numpy() if name in r else np.full(len(p), np.nan) for r in results]
        )
        data[name] = xr.Variable(
            ("allocation", "scenario"), values, {"units": units, "long_name": f"{name} per episode"}
        )
        mean, cvar = [], []
        for row in values:
            ok = np.isfinite(row)
            mean.append(stats.mean(row[ok], p[ok]) if ok.any() else math.nan)
            cvar.append(stats.var_cvar(row[ok], p[ok], level)[1] if ok.any() else math.nan)
        data[f"mean_{name}"] = xr.Variable(
            "allocation",
            mean,
            {"units": units, "long_name": f"probability-weighted mean of {name}"},
        )
        data[f"cvar{tag}_{name}"] = xr.Variable(
            "allocation", cvar, {"units": units, "long_name": f"CVaR {level:g} of {name}"}
        )
    data["planned_cost"] = xr.Variable(
        ("allocation", "scenario"),
        np.stack([np.broadcast_to(np.asarray(r, float), len(p)) for r in planned]) / days,
        {"units": "$", "long_name": "the day's recourse in the Stage-I model (NaN: none)"},
    )
    invest = np.array([c.investment_per_yr for c in cands])
    data["total_cost"] = xr.Variable(
        ("allocation", "scenario"),
        data["closed_loop_cost"].values + (invest / days)[:, None],
        {"units": "$", "long_name": "closed-loop cost of the day + a day's investment"},
    )
    ran = data["episode_status"].values == 0
    not_restored = ~np.isfinite(data["restoration_time_s"].values) & ran
    data["p_not_restored"] = xr.Variable(
        "allocation",
        (not_restored * p).sum(axis=1) / p.sum(),
        {
            "units": "1",
            "long_name": "probability of not restoring by the end of the day (restoration "
            "time statistics are over the other episodes)",
        },
    )
    recourse = days * data["mean_closed_loop_cost"].values
    per_yr = {
        "investment_per_yr": (invest, "annualised investment"),
        "closed_loop_recourse_per_yr": (
            recourse,
            f"{days:g} days x mean closed-loop cost (rolling dispatch under AC power flow)",
        ),
        "total_cost_per_yr": (invest + recourse, "investment + closed-loop recourse"),
        "planned_recourse_per_yr": (
            days * np.array([stats.mean(row, p) for row in data["planned_cost"].values]),
            "expected recourse the Stage-I model predicts on these scenarios (the config's "
            "planning recourse: by default each day chained in blocks of the dispatcher's "
            "lookahead; NaN: not a Stage-I allocation)",
        ),
        "training_recourse_per_yr": (
            np.array([c.training_recourse_per_yr for c in cands]),
            "expected recourse the allocation file reports on its training scenarios",
        ),
    }
    for name, (values, long_name) in per_yr.items():
        data[name] = xr.Variable("allocation", values, {"units": "$/yr", "long_name": long_name})
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = data["planned_recourse_per_yr"].values / recourse
    data["planned_to_closed_loop"] = xr.Variable(
        "allocation",
        ratio,
        {"units": "1", "long_name": "planned recourse / closed-loop recourse on these scenarios"},
    )
    labels_ = [c.label for c in cands]
    if reference not in labels_:
        raise ConfigError(cfg.source, "--reference", reference, f"is not one of {labels_}")
    data.update(paired_variables(data, p, labels_.index(reference), reference))
    coords = {
        "allocation": ("allocation", np.array([c.label for c in cands], dtype=str)),
        "scenario": ("scenario", results[0]["scenario"].to_numpy()),
        "difference": ("difference", np.array(DIFFERENCE, dtype=str)),
        "allocation_file": ("allocation", np.array([c.path or "" for c in cands], dtype=str)),
    }
    attrs = {
        "title": "simgrid out-of-sample evaluation",
        "simgrid_kind": DatasetKind.EVALUATION.value,
        "config": cfg.source,
        "config_sha256": cfg.text_sha256,
        "scenarios_file": scenarios,
        "level": level,
        "days_per_year": days,
        "reference": reference,
    }
    attrs.update({f"version_{k}": v for k, v in package_versions().items()})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def paired_variables(data: dict, p: np.ndarray, ref: int, reference: str) -> dict:
    """`diff_<metric>` (allocation, difference): each allocation minus the reference, day by
    day (NaN for the reference itself)."""
    out = {}
    for m in PAIRED:
        values = data[m].values
        rows = []
        for a, row in enumerate(values):
            if a == ref:
                rows.append([math.nan] * len(DIFFERENCE))
                continue
            d = stats.paired_difference(row, values[ref], p)
            rows.append([d.mean, d.ci_low, d.ci_high, d.wins, d.losses, d.n, d.established])
        units = data[m].attrs["units"]
        out[f"diff_{m}"] = xr.Variable(
            ("allocation", "difference"),
            np.array(rows, dtype=float),
            {
                "units": units,
                "long_name": f"{m} minus {reference}'s, day by day: mean, bootstrap 95 % interval, "
                "days lower (wins) and higher (losses), days compared, established (1: the "
                "interval excludes 0)",
            },
        )
    return out


def difference(ds: xr.Dataset, metric: str, allocation: str) -> stats.PairedDifference:
    """The paired difference of `metric` of `allocation` against the dataset's reference."""
    v = ds[f"diff_{metric}"].sel(allocation=allocation).to_numpy()
    return stats.PairedDifference(v[0], v[1], v[2], int(v[3]), int(v[4]), int(v[5]))


def settled(ds: xr.Dataset, metric: str = "total_cost") -> bool:
    """Every allocation's difference of `metric` against the reference is established."""
    others = [str(a) for a in ds["allocation"].to_numpy() if str(a) != ds.attrs["reference"]]
    return all(difference(ds, metric, a).established for a in others)


COLUMNS = (
    ("investment_per_yr", "invest $/yr", "{:,.0f}"),
    ("mean_unserved_energy_mwh", "EENS MWh/d", "{:.4f}"),
    ("cvar{tag}_unserved_energy_mwh", "CVaR MWh", "{:.4f}"),
    ("mean_imbalance_energy_mwh", "imb MWh/d", "{:.4f}"),
    ("cvar{tag}_imbalance_energy_mwh", "CVaR MWh", "{:.4f}"),
    ("p_not_restored", "not restored", "{:.0%}"),
    ("mean_restoration_time_s", "restore s", "{:,.0f}"),
    ("cvar{tag}_restoration_time_s", "CVaR s", "{:,.0f}"),
    ("total_cost_per_yr", "total $/yr", "{:,.0f}"),
    ("planned_recourse_per_yr", "planned $/yr", "{:,.0f}"),
    ("closed_loop_recourse_per_yr", "closed $/yr", "{:,.0f}"),
    ("planned_to_closed_loop", "planned/closed", "{:.2f}"),
)
PAIRED_COLUMNS = (
    ("total_cost", "total cost $/day", "{:+,.0f}"),
    ("closed_loop_cost", "closed-loop $/day", "{:+,.0f}"),
    ("unserved_energy_mwh", "unserved MWh/day", "{:+.4f}"),
    ("imbalance_energy_mwh", "imbalance MWh/day", "{:+.4f}"),
    ("voltage_violation_s", "voltage viol. s/day", "{:+,.0f}"),
    ("thermal_violation_s", "thermal viol. s/day", "{:+,.0f}"),
)


def table(ds: xr.Dataset) -> str:
    """The evaluation as a Markdown table (NaN as '-')."""
    tag = f"{round(float(ds.attrs['level']) * 100):02d}"
    head = ["allocation", *(label for _, label, _ in COLUMNS)]
    rows = []
    for a in ds["allocation"].to_numpy():
        cells = [str(a)]
        for name, _, fmt in COLUMNS:
            v = float(ds[name.format(tag=tag)].sel(allocation=a))
            cells.append("-" if math.isnan(v) else fmt.format(v))
        rows.append(cells)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + paired_table(ds)


def paired_table(ds: xr.Dataset) -> str:
    """The paired differences against the reference as Markdown, and which are established."""
    ref = str(ds.attrs["reference"])
    n = ds.sizes["scenario"]
    head = ["allocation", *(label for _, label, _ in PAIRED_COLUMNS)]
    lines = [
        f"Paired differences against `{ref}` on the same {n} days (allocation minus {ref}; "
        "mean, bootstrap 95 % interval, days lower/higher; **bold**: the interval excludes 0, "
        "the difference is established):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    established = []
    for a in (str(a) for a in ds["allocation"].to_numpy()):
        if a == ref:
            continue
        cells = [a]
        for m, label, f in PAIRED_COLUMNS:
            d = difference(ds, m, a)
            if not math.isfinite(d.mean):
                cells.append("-")
                continue
            text = f"{f.format(d.mean)} [{f.format(d.ci_low)}, {f.format(d.ci_high)}] "
            text += f"{d.wins}/{d.losses}"
            cells.append(f"**{text}**" if d.established else text)
            if d.established:
                sign = "lower" if d.mean < 0 else "higher"
                established.append(f"{a}: {label.split(' ')[0]} {sign}")
        lines.append("| " + " | ".join(cells) + " |")
    few = (
        f" (fewer than {stats.MIN_PAIRED_DAYS} days: too few to establish any)"
        if n < stats.MIN_PAIRED_DAYS
        else ""
    )
    lines += [
        "",
        "Established: " + ("; ".join(established) if established else "none") + few + ".",
    ]
    return "\n".join(lines)
