"""Bounded distributions for shock parameters, sampled by inverse CDF.

Every family is truncated to [low, high], so samples never leave the bounds a planner wrote;
sampling is u ~ U(F(low), F(high)), x = F^-1(u), which also gives the exact CDF used by the
statistical tests.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from simgrid.config import Table


class Family(enum.StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    TRIANGULAR = "triangular"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"
    EXPONENTIAL = "exponential"


# the parameters each family takes besides low/high
_PARAMS = {
    Family.FIXED: ("value",),
    Family.UNIFORM: (),
    Family.TRIANGULAR: ("mode",),
    Family.NORMAL: ("mean", "std"),
    Family.LOGNORMAL: ("median", "sigma"),
    Family.EXPONENTIAL: ("mean",),
}


@dataclass(frozen=True)
class Dist:
    """A distribution on [low, high]; `a`, `b` are the family's parameters (see `_PARAMS`)."""

    family: Family
    low: float
    high: float
    a: float = math.nan
    b: float = math.nan

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        """Untruncated CDF."""
        f, lo, hi = self.family, self.low, self.high
        if f is Family.UNIFORM:
            return np.clip((x - lo) / (hi - lo), 0, 1)
        if f is Family.TRIANGULAR:
            c = self.a
            left = (x - lo) ** 2 / ((hi - lo) * (c - lo)) if c > lo else np.zeros_like(x)
            right = 1 - (hi - x) ** 2 / ((hi - lo) * (hi - c)) if hi > c else np.ones_like(x)
            return np.clip(np.where(x <= c, left, right), 0, 1)
        if f is Family.NORMAL:
            return ndtr((x - self.a) / self.b)
        if f is Family.LOGNORMAL:
            with np.errstate(divide="ignore"):
                return ndtr((np.log(np.maximum(x, 0)) - math.log(self.a)) / self.b)
        return 1 - np.exp(-np.maximum(x, 0) / self.a)  # exponential

    def _ppf(self, u: np.ndarray) -> np.ndarray:
        f, lo, hi = self.family, self.low, self.high
        if f is Family.UNIFORM:
            return lo + u * (hi - lo)
        if f is Family.TRIANGULAR:
            c = self.a
            fc = (c - lo) / (hi - lo)
            return np.where(
                u <= fc,
                lo + np.sqrt(u * (hi - lo) * (c - lo)),
                hi - np.sqrt((1 - u) * (hi - lo) * (hi - c)),
            )
        if f is Family.NORMAL:
            return self.a + self.b * ndtri(u)
        if f is Family.LOGNORMAL:
            return self.a * np.exp(self.b * ndtri(u))
        return -self.a * np.log1p(-u)  # exponential

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the truncated distribution."""
        x = np.asarray(x, dtype=float)
        if self.family is Family.FIXED:
            return (x >= self.a).astype(float)
        f_lo, f_hi = self._cdf_bounds
        return np.clip((self._cdf(x) - f_lo) / (f_hi - f_lo), 0, 1)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.from_uniforms(rng.random(n))

    @functools.cached_property
    def _cdf_bounds(self) -> tuple[float, float]:
        """Untruncated CDF at low and high (cached: sampling is a hot path)."""
        return float(self._cdf(np.array(self.low))), float(self._cdf(np.array(self.high)))

    def from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """Map U(0,1) draws through the truncated inverse CDF (also used by copulas)."""
        if self.family is Family.FIXED:
            return np.full(np.shape(u), self.a)
        f_lo, f_hi = self._cdf_bounds
        x = self._ppf(f_lo + np.asarray(u, dtype=float) * (f_hi - f_lo))
        return np.clip(x, self.low, self.high)  # guard the last ulp at the bounds


def fixed(value: float) -> Dist:
    return Dist(Family.FIXED, value, value, value)


def parse_dist(
    parent: Table,
    key: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    default: Dist | None = None,
) -> Dist:
    """Read `key = { dist = "...", low = .., high = .., <params> }` or a bare number (fixed).

    `lo`/`hi` are the physical bounds of the quantity (e.g. a fraction lies in (0, 1]).
    """
    if not parent.has(key):
        if default is None:
            raise parent.missing(key, "a number or a { dist = ... } table")
        parent.used.add(key)
        return default
    raw = parent.data[key]
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = parent.number(
            key,
            lo=None if math.isinf(lo) else lo,
            lo_open=lo_open,
            hi=None if math.isinf(hi) else hi,
        )
        return fixed(value)
    t = parent.table(key)
    family = Family(t.string("dist", choices=tuple(f.value for f in Family)))
    names = _PARAMS[family]
    if family is Family.FIXED:
        v = t.number(
            "value",
            lo=None if math.isinf(lo) else lo,
            lo_open=lo_open,
            hi=None if math.isinf(hi) else hi,
        )
        t.done()
        return fixed(v)
    low = t.number(
        "low",
        0.0 if family is Family.EXPONENTIAL else None,
        lo=None if math.isinf(lo) else lo,
        lo_open=lo_open,
        hi=None if math.isinf(hi) else hi,
    )
    high = t.number(
        "high",
        lo=None if math.isinf(lo) else lo,
        lo_open=lo_open,
        hi=None if math.isinf(hi) else hi,
    )
    if high <= low:
        raise t.fail("high", f"must be greater than low ({low:g})")
    params = []
    for name in names:
        positive = name in ("std", "sigma", "median") or (
            name == "mean" and family is Family.EXPONENTIAL
        )
        params.append(t.number(name, lo=0 if positive else None, lo_open=positive))
    if family is Family.TRIANGULAR and not low <= params[0] <= high:
        raise t.fail("mode", f"must lie within [low, high] = [{low:g}, {high:g}]")
    if family is Family.LOGNORMAL and low < 0:
        raise t.fail("low", "must be >= 0 for a lognormal")
    t.done()
    dist = Dist(family, low, high, *params)
    with np.errstate(all="ignore"):
        f_low, f_high = dist._cdf_bounds
    if not f_high - f_low > MIN_MASS:
        name = names[0] if names else "high"
        raise t.fail(
            name,
            f"leaves (almost) no probability within [low, high] = [{low:g}, {high:g}]: are the "
            "parameters in the units of the bounds?",
        )
    return dist


MIN_MASS = 1e-6  # a truncated distribution needs some probability left between its bounds
