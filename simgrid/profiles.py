"""Load profiles of the feeder's conventional load: a factor of its nominal (peak) load."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simgrid.errors import ConfigError
from simgrid.types import Campus

# IEEE Reliability Test System (1979), Table 4: hourly load in % of daily peak, winter weekday.
# A standard, citable daily shape; the case's own loads are taken as the daily peak.
_RTS_WINTER_WEEKDAY_PCT = (
    67,
    63,
    60,
    59,
    59,
    60,
    74,
    86,
    95,
    96,
    96,
    95,
    95,
    95,
    93,
    94,
    99,
    100,
    100,
    96,
    91,
    83,
    73,
    63,
)
DAY_S = 86400.0
# A feeder's load as a fraction of its case's nominal (peak) load: up to 2 allows growth above
# the nominal; a campus's utilisation is a fraction of its nameplate: at most 1.
MAX_LOAD_FACTOR = 2.0
MAX_UTILISATION = 1.0


@dataclass(frozen=True, eq=False)
class LoadProfile:
    """Piecewise-linear factor(t); periodic with `period_s` if it is set."""

    t_s: np.ndarray
    factor: np.ndarray
    period_s: float | None = None

    def at(self, t_s: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t_s, dtype=float)
        if self.period_s is not None:
            return np.interp(t % self.period_s, self.t_s, self.factor, period=self.period_s)
        return np.interp(t, self.t_s, self.factor)


def flat() -> LoadProfile:
    return LoadProfile(np.array([0.0]), np.array([1.0]))


def diurnal() -> LoadProfile:
    """IEEE RTS winter-weekday shape, hourly values at the middle of each hour, periodic daily."""
    t = (np.arange(24) + 0.5) * 3600.0
    return LoadProfile(t, np.array(_RTS_WINTER_WEEKDAY_PCT, dtype=float) / 100.0, DAY_S)


def from_csv(
    path: Path,
    source: str = "<config>",
    key: str = "network.load_profile",
    max_factor: float = MAX_LOAD_FACTOR,
) -> LoadProfile:
    """Read `t_s,factor` rows (a header line is allowed); linear in between, held at the ends.

    Every value must be a finite number, times strictly increasing, factors in [0,
    `max_factor`] (fractions, not percent).
    """

    def bad(allowed: str) -> ConfigError:
        return ConfigError(source, key, str(path), allowed)

    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise bad("is not UTF-8 text: a CSV file t_s,factor is") from None
    rows = []
    for n, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != 2:
            raise bad(f"line {n} has {len(cells)} columns: it must hold two, t_s,factor")
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            if rows or n > 1:  # only a first line may be a header
                raise bad(f"line {n} holds {cells!r}: t_s,factor must be numbers") from None
    if not rows:
        raise bad("holds no rows t_s,factor")
    values = np.array(rows)
    if not np.isfinite(values).all():
        row = values[~np.isfinite(values).all(axis=1)][0]
        raise bad(f"holds the row {row.tolist()}: every value must be a finite number")
    t, f = values[:, 0], values[:, 1]
    if np.any(np.diff(t) <= 0):
        raise bad("t_s must increase strictly")
    if np.any(f < 0) or np.any(f > max_factor):
        raise bad(
            f"factors must lie in [0, {max_factor:g}] (fractions of the nominal load, not "
            f"percent; found {f.min():g}..{f.max():g})"
        )
    return LoadProfile(t, f)


def load_profile(
    name: str,
    file: Path | None,
    source: str = "<config>",
    key: str = "network.load_profile",
    max_factor: float = MAX_LOAD_FACTOR,
) -> LoadProfile:
    if file is not None:
        return from_csv(file, source, key, max_factor)
    return {"flat": flat, "diurnal": diurnal}[name]()


def campus_profile(campus: Campus, source: str = "<config>") -> LoadProfile:
    """The base utilisation shape of an AI campus."""
    return load_profile(
        campus.profile,
        campus.profile_file,
        source,
        f"campus {campus.name}: utilisation_profile",
        MAX_UTILISATION,
    )
