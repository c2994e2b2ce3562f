"""Statistics over scenarios, weighted by their probabilities: what a stress test reports.

Every statistic takes the scenarios' values and probabilities (equal for a sampled set, the
cluster masses for a reduced one). VaR_a is the a-quantile and CVaR_a the mean of the worst
1 - a of the distribution (Rockafellar & Uryasev); confidence intervals come from a seeded
bootstrap that resamples scenarios with their probabilities, so a user sees whether the number
of episodes is enough. Reliability indices scale one day's outcome to a year.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20261129  # fixed: the same inputs give the same intervals


def normalised(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return p / p.sum()


def mean(x: np.ndarray, p: np.ndarray) -> float:
    return float(normalised(p) @ x)


def std(x: np.ndarray, p: np.ndarray) -> float:
    w = normalised(p)
    m = float(w @ x)
    return math.sqrt(max(float(w @ (x - m) ** 2), 0.0))


def quantile(x: np.ndarray, p: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative probability reaches q."""
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(normalised(p)[order])
    return float(np.asarray(x)[order][min(np.searchsorted(cum, q - 1e-12), len(x) - 1)])


def var_cvar(x: np.ndarray, p: np.ndarray, level: float) -> tuple[float, float]:
    """(VaR, CVaR) at `level`: the level-quantile and the mean of the worst 1 - level."""
    w = normalised(p)
    var = quantile(x, w, level)
    if level >= 1.0:
        return var, float(np.max(x))
    return var, var + float(w @ np.maximum(np.asarray(x) - var, 0.0)) / (1.0 - level)


def bootstrap(
    x: np.ndarray, p: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], float], level=0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval of fn(x, p): scenarios resampled with their
    probabilities, each resample weighted equally."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.choice(n, size=(BOOTSTRAP_SAMPLES, n), p=normalised(p))
    ones = np.full(n, 1.0 / n)
    values = np.array([fn(x[k], ones) for k in picks])
    tail = (1.0 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


# A bootstrap interval of fewer days says little (two days have three distinct resamples): a
# difference is established on at least this many common days.
MIN_PAIRED_DAYS = 10


@dataclass(frozen=True)
class PairedDifference:
    """a - b over common scenarios: its probability-weighted mean with a bootstrap interval,
    how often a is lower (wins) or higher (losses), and whether the interval excludes 0."""

    mean: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    n: int

    @property
    def established(self) -> bool:
        """The interval excludes zero, on enough days: the sign of the difference is
        supported."""
        return self.n >= MIN_PAIRED_DAYS and (self.ci_low > 0 or self.ci_high < 0)


def paired_difference(a: np.ndarray, b: np.ndarray, p: np.ndarray, level=0.95) -> PairedDifference:
    """a - b scenario by scenario (scenarios where either is NaN are left out)."""
    a, b, p = (np.asarray(v, dtype=float) for v in (a, b, p))
    ok = np.isfinite(a) & np.isfinite(b)
    d, w = a[ok] - b[ok], p[ok]
    if not ok.any():
        return PairedDifference(math.nan, math.nan, math.nan, 0, 0, 0)
    lo, hi = bootstrap(d, w, mean, level)
    return PairedDifference(mean(d, w), lo, hi, int((d < 0).sum()), int((d > 0).sum()), len(d))


STATISTICS = ("p_undefined", "mean", "std", "p05", "p50", "p95", "mean_ci_low", "mean_ci_high")


def summary(x: np.ndarray, p: np.ndarray, levels: tuple[float, ...]) -> dict[str, float]:
    """The probability of NaN values (`p_undefined`), then over the others: mean, standard
    deviation, percentiles, VaR and CVaR at each level, and bootstrap 95 % intervals of the
    mean and of each CVaR."""
    x, p = np.asarray(x, dtype=float), np.asarray(p, dtype=float)
    keep = np.isfinite(x)
    # NaN is a value without a number (restoration_time_s: not restored by the end of the
    # episode): its probability is reported, and the other statistics are over the rest
    undefined = float(p[~keep].sum() / p.sum())
    if not keep.any():
        return {"p_undefined": undefined}
    x, p = x[keep], p[keep]
    out = {
        "p_undefined": undefined,
        "mean": mean(x, p),
        "std": std(x, p),
        "p05": quantile(x, p, 0.05),
        "p50": quantile(x, p, 0.50),
        "p95": quantile(x, p, 0.95),
    }
    out["mean_ci_low"], out["mean_ci_high"] = bootstrap(x, p, mean)
    for a in levels:
        tag = f"{round(a * 100):02d}"
        out[f"var_{tag}"], out[f"cvar_{tag}"] = var_cvar(x, p, a)
        lo, hi = bootstrap(x, p, lambda v, w, a=a: var_cvar(v, w, a)[1])
        out[f"cvar_{tag}_ci_low"], out[f"cvar_{tag}_ci_high"] = lo, hi
    return out


def reliability(
    unserved_mwh: np.ndarray,
    interruptions: np.ndarray,
    minutes: np.ndarray,
    customers: float,
    p: np.ndarray,
    days_per_year: float,
    tol_mwh: float = 1e-6,
) -> dict[str, float]:
    """EENS (MWh/yr), LOLE (days/yr with any unserved energy) and IEEE 1366 SAIFI
    (interruptions per customer per year), SAIDI (hours per customer per year), CAIDI (hours
    per interruption), each scenario standing for one day of the year."""
    eens = days_per_year * mean(unserved_mwh, p)
    lole = days_per_year * mean((np.asarray(unserved_mwh) > tol_mwh).astype(float), p)
    saifi = days_per_year * mean(interruptions, p) / customers if customers else math.nan
    saidi = days_per_year * mean(minutes, p) / 60.0 / customers if customers else math.nan
    caidi = saidi / saifi if saifi else math.nan
    return {
        "eens_mwh_per_yr": eens,
        "lole_days_per_yr": lole,
        "saifi": saifi,
        "saidi_h": saidi,
        "caidi_h": caidi,
    }
