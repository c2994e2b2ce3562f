"""What every family of flexible units shares: the module record, its catalogue keys, the
window a model block is built for, the size of a unit, and the `Family` interface.

A family (storage, fast generation, demand response, ...) is one module of `simgrid.units`:
its catalogue keys, its model data and `define` block, what its units carry from step to step
and what that allows in the next window, how its binaries are rounded, what it can do between
dispatch calls, and what it reports. Everything else (the catalogue, the planner's sizing, the
dispatcher, the plan's read-back, the run's report columns) loops over the registry
(`simgrid.units.FAMILIES`), so a new family is one file and one line there.

Model blocks add columns and rows through a builder's methods (`add_vars`, `add_rows`,
`add_sum_rows`; simgrid.optimization.builder) and return their cost as terms (coef, cols).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from simgrid.errors import ConfigError
from simgrid.types import Snapshot

INF = np.inf
COL = np.newaxis
Term = tuple[np.ndarray | float, np.ndarray]


class Regulariser(NamedTuple):
    """A cost term that steers the dispatcher (restoring a unit's energy or the rebound it
    owes) but is no money the plant pays: the closed loop's cost leaves it out, and so does a
    planned day's (simgrid.optimization.operation)."""

    coef: np.ndarray | float
    cols: np.ndarray


def value_of(terms: Sequence[Term], x: np.ndarray) -> float:
    """What cost terms add up to at solution x."""
    return float(sum(np.sum(np.broadcast_to(c, np.shape(ids)) * x[ids]) for c, ids in terms))


# ---- modules and their catalogue keys ----------------------------------------------------------


@dataclass(frozen=True)
class Module:
    """One catalogue module type: its name, type (a family's catalogue type), power rating and
    price; a family's module adds its own fields. `SCALED` lists the fields that add up when
    modules at one bus act as one unit (`times`)."""

    name: str
    type: str
    p_mw: float
    capex: float = 0.0

    SCALED: ClassVar[tuple[str, ...]] = ("p_mw", "capex")

    def times(self, count: int) -> Module:
        """`count` modules acting as one: the scaled fields multiply."""
        return replace(self, **{k: getattr(self, k) * count for k in self.SCALED})


@dataclass(frozen=True)
class Key:
    """A catalogue key of a module type: number >= 0 (`lo_open`: > 0), at most `hi`, inf
    allowed where it means no limit (`unbounded`), required where there is no default."""

    name: str
    required: bool = False
    lo_open: bool = False
    hi: float | None = None
    unbounded: bool = False


# ---- a window and a unit's size ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Window:
    """What a family's block needs of the window: period length, number of periods, the
    periods whose binaries stay integral (`head`), the price of the restoration terms, and
    whether commitment binaries are integral in every period (`commitment`: a planned day's
    generators and demand response run as the plant runs them: a generator at least at its
    minimum output once started, a DR unit curtailing or paying back, never both)."""

    dt_h: float
    periods: int
    head: np.ndarray
    restoration_per_mwh: float
    commitment: bool = False

    @property
    def committed(self) -> np.ndarray:
        """The periods whose commitment binaries are integral."""
        return np.ones_like(self.head) if self.commitment else self.head


@dataclass(frozen=True, eq=False)
class Capacity:
    """Modules per unit: fixed `count`, or first-stage columns `cols` of at most `count`.

    Limits that scale with the size are column bounds for fixed counts and rows with the
    first-stage column otherwise; limits gated by a binary use the largest size allowed as
    their big-M when the size is a column, so the same physics holds exactly for fixed sizes
    and as its tightest linear form for chosen ones."""

    count: np.ndarray
    cols: np.ndarray | None = None

    @classmethod
    def fixed(cls, count) -> Capacity:
        return cls(np.asarray(count, dtype=float))

    @property
    def chosen(self) -> bool:
        return self.cols is not None

    def upper(self, per_module) -> np.ndarray:
        """The largest value of per_module x size: (U, 1) for per-unit values, (U, H) for
        per-period ones."""
        per = np.asarray(per_module, dtype=float)
        return per * self.count[:, COL] if per.ndim == 2 else (per * self.count)[:, COL]

    def size_terms(self, per_module, h: int, sign: float = -1.0) -> list[Term]:
        """sign * per_module x size, as a row term (none for fixed sizes)."""
        if not self.chosen:
            return []
        per = np.asarray(per_module, dtype=float)
        per = per if per.ndim == 2 else per[:, COL]
        coef = np.broadcast_to(sign * per, (len(self.count), h))
        return [(coef, np.broadcast_to(self.cols[:, COL], (len(self.count), h)))]

    def limit(self, b, terms: list[Term], per_module, h: int, *, below: bool, extra=0.0):
        """sum(terms) <= per_module x size + extra (or >= with `below=False`)."""
        if self.chosen:
            rows = [*terms, *self.size_terms(per_module, h)]
            bound = extra
        else:
            rows, bound = terms, self.upper(np.asarray(per_module)) + extra
        if below:
            return b.add_rows(rows, hi=bound)
        return b.add_rows(rows, lo=bound)

    def gated(self, b, x: np.ndarray, per_module, gate: np.ndarray, *, on: bool = True):
        """x <= per_module x size x gate (`on`) or x (1 - gate) (not `on`)."""
        m = self.upper(np.asarray(per_module))
        if on:
            b.add_rows([(1.0, x), (-m, gate)], hi=0.0)
        else:
            b.add_rows([(1.0, x), (m, gate)], hi=m)
        if self.chosen:
            self.limit(b, [(1.0, x)], per_module, x.shape[-1], below=True)

    def gated_floor(self, b, x: np.ndarray, per_module, gate: np.ndarray):
        """x >= per_module x size x gate (a minimum output when on)."""
        m = self.upper(np.asarray(per_module))
        if not self.chosen:
            return b.add_rows([(1.0, x), (-m, gate)], lo=0.0)
        # chosen size N: x >= k N - k N_max (1 - gate)
        terms = [(1.0, x), (-m, gate), *self.size_terms(per_module, x.shape[-1])]
        return b.add_rows(terms, lo=-m)

    def budget(self, b, x: np.ndarray, dt_h: float, per_module: np.ndarray, absolute=None) -> None:
        """sum over the window of dt x x <= per_module x size (an energy budget left), or
        <= `absolute` (MWh) where a planned day carries what is left from block to block."""
        n, h = x.shape
        if n == 0:
            return
        terms = [(np.full(n, dt_h), x[:, t]) for t in range(h)]
        if absolute is not None:
            b.add_rows(terms, hi=absolute)
        elif self.chosen:
            b.add_rows([*terms, (-per_module, self.cols)], hi=0.0)
        else:
            b.add_rows(terms, hi=per_module * self.count)


# ---- helpers of the blocks -------------------------------------------------------------------


def lagged(ids: np.ndarray, lag: int, within: np.ndarray) -> Term:
    """The term x[..., t - lag] (along the last axis), counted where t >= lag and `within`."""
    t = np.arange(ids.shape[-1])
    return (t >= lag) * within * np.ones(ids.shape), ids[..., np.maximum(t - lag, 0)]


def held_s(flags: np.ndarray, dt_h: float, before_s: np.ndarray) -> np.ndarray:
    """Per row of a (U, H) boolean array over a window of periods dt_h, the seconds it has been
    True at the window's end: its trailing True periods, plus `before_s` (held at the window's
    start) where the whole window is True."""
    padded = np.concatenate([flags[:, ::-1], np.zeros((len(flags), 1), bool)], axis=1)
    n = np.argmin(padded, axis=1)
    return n * dt_h * 3600 + np.where(n == flags.shape[1], before_s, 0.0)


def previous(ids: np.ndarray) -> np.ndarray:
    """x[..., t-1]; period 0 points at itself and is masked out by a zero coefficient."""
    return ids[..., np.maximum(np.arange(ids.shape[-1]) - 1, 0)]


def at_start(values: np.ndarray, h: int) -> np.ndarray:
    """(U, H) zeros with `values` in period 0: the right-hand side of a state equation."""
    out = np.zeros((len(values), h))
    out[:, 0] = values
    return out


def later(h: int) -> np.ndarray:
    """1 from period 1 on, 0 in period 0 (whose "previous" is the state)."""
    return (np.arange(h) > 0).astype(float)


def periods(seconds, period_s: float) -> np.ndarray:
    """Whole periods of `period_s` that cover `seconds` (delays, minimum times)."""
    return np.ceil(np.asarray(seconds, dtype=float) / period_s - 1e-9)


def period(plan: np.ndarray, k: int) -> np.ndarray:
    """Period k of a (U, H) plan (held when a solve fails: the last period repeats)."""
    return np.take(plan, min(k, plan.shape[1] - 1), axis=1)


def after_delay(delay_s, period_s: float, h: int) -> np.ndarray:
    """(N, H) 1 where a command given now may take effect: from each unit's delay (a
    generator's start-up, a DR notice) on, in periods of period_s."""
    return (np.arange(h)[None, :] >= periods(delay_s, period_s)[:, None]).astype(float)


def command_after_delay(
    on: np.ndarray,
    pending_at: np.ndarray,
    delay_s: np.ndarray,
    period_s: float,
    h: int,
    decided: np.ndarray,
    t_s: float,
) -> None:
    """A unit off with nothing pending whose plan acts (`decided` (U, H) > 0.5) in the first
    period its delay allows is commanded now: it may act at t_s + delay (`pending_at`)."""
    k = periods(delay_s, period_s).astype(int)
    for i in range(len(delay_s)):
        if not on[i] and np.isnan(pending_at[i]) and 0 < k[i] < h and decided[i, k[i]] > 0.5:
            pending_at[i] = t_s + delay_s[i]


def pick(modules: Sequence[Module], attr: str) -> np.ndarray:
    return np.array([getattr(m, attr) for m in modules], float)


# ---- the family interface ----------------------------------------------------------------------

Put = Callable[[np.ndarray, np.ndarray], None]  # set binaries of the integral head
Report = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # p, stored energy, on, DR


class Family(ABC):
    """One family of flexible units (see the module). Subclasses set `name` (its name in the
    state and in messages), `module` (its catalogue record) and `types` (the catalogue types
    it models, each with its keys), and implement the model, its state and its plant."""

    name: ClassVar[str]
    module: ClassVar[type[Module]]
    types: ClassVar[dict[str, tuple[Key, ...]]]

    # -- catalogue ------------------------------------------------------------------------
    def check(self, m: Module, fail: Callable[[str, str], ConfigError]) -> None:
        """Cross-key checks of a parsed module (`fail(key, why)`)."""
        return None  # none, unless the family has some

    def default(self, key: str) -> Any:
        return next(f.default for f in fields(self.module) if f.name == key)

    # -- model ----------------------------------------------------------------------------
    @abstractmethod
    def data(self, modules: Sequence[Module], buses: Sequence[int], period_s: float, h: int):
        """Model data of modules at buses (ratings per module; times in periods of period_s)."""

    @abstractmethod
    def define(self, b, data, cap: Capacity, start, w: Window) -> tuple[Any, list[Term]]:
        """Add the family's block for a window; return its handles and its cost terms."""

    @abstractmethod
    def injections(self, data, handles) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(bus of each unit, its (U, H) columns, sign) of the active power it injects."""

    # -- state, window start, plan ------------------------------------------------------------
    @abstractmethod
    def idle_start(self, data, period_s: float, h: int):
        """The window start of units at rest, at their targets, budgets full (Stage-I)."""

    @abstractmethod
    def next_start(
        self, start, x, handles, data, size, w: Window, nxt, period_s: float, h: int, news: bool
    ):
        """The start of the next block of a planned day (operation recourse): where the
        solved block `x` left the units (per module of `size`), within what the next block's
        data `nxt` (periods of `period_s`, h of them) allows; `news`: the block begins with an
        event, so what it decides cannot have been decided before (delays bind from its start)."""

    def absolute(self, start, data, size: np.ndarray):
        """`start` with what it states per module of a unit (energy, budgets) in MWh for units
        of `size` modules: a planned day's blocks then differ only in bounds (see benders)."""
        return start

    @abstractmethod
    def initial(self, data):
        """The state of units at rest at the start of a run."""

    @abstractmethod
    def advance(self, state, applied, data, since_s: float, t_s: float) -> None:
        """Move `state` forward `since_s` seconds (to `t_s`) under the `applied` powers."""

    @abstractmethod
    def window_start(self, state, data, t_s: float, period_s: float, h: int, since_s: float):
        """The window's start: what the units have and what their state forbids."""

    def issue_commands(self, state, data, x, handles, t_s: float, period_s: float, h: int) -> None:
        """Start commands and notices the plan needs now (delays are real)."""
        return None  # none, unless the family has some

    def restore(self, snap: Snapshot, data):
        """The state stored in `snap`, checked against the units."""
        return snap.fields_like(self.initial(data))

    @abstractmethod
    def plan_of(self, x: np.ndarray, handles):
        """The solved window's decisions (arrays per unit and period)."""

    @abstractmethod
    def plan_zeros(self, data, h: int):
        """A plan of h periods doing nothing (the shapes a stored plan must have)."""

    @abstractmethod
    def at(self, plan, k: int):
        """Period k's decisions as applied set-points."""

    @abstractmethod
    def idle(self, data):
        """Applied set-points of units doing nothing."""

    @abstractmethod
    def injection_mw(self, applied) -> np.ndarray:
        """Per unit, the active power the applied set-points inject (generation-positive)."""

    # -- LP-first rounding ------------------------------------------------------------------
    def round(self, x: np.ndarray, put: Put, lb: np.ndarray, handles, start, data) -> None:
        """Round the integral head's binaries by what they mean (`put(ids, values)`)."""
        return None  # none, unless the family has some

    # -- what is reported -----------------------------------------------------------------
    @abstractmethod
    def report(self, applied, state, data) -> Report:
        """Per unit: power (generation-positive), stored energy (NaN if none), committed or
        active (1/0), DR curtailment."""

    @abstractmethod
    def cost_per_mwh(self, m: Module) -> float:
        """The marginal, curtailment or degradation cost per MWh (the run's unit table)."""

    def energy_mwh(self, m: Module) -> float:
        return 0.0

    def start_cost(self, m: Module) -> float:
        return 0.0


def unit_arrays(n: int) -> Report:
    """Report arrays of n units: power 0, no stored energy, off, no curtailment."""
    return np.zeros(n), np.full(n, math.nan), np.zeros(n), np.zeros(n)


class Follower(Family):
    """A family whose units follow the residual deviation between dispatch calls (the real-time
    layer's): storage and generators; demand response, committed ahead, does not."""

    @abstractmethod
    def limits(self, state, data, hold_h: float, since_s: float) -> tuple[np.ndarray, np.ndarray]:
        """What the units can inject (net, generation-positive) at this step: (lo, hi)."""

    @abstractmethod
    def followed(self, p_mw: np.ndarray, base, state, data):
        """Applied set-points at net powers `p_mw` (from `limits`), the rest as in `base`."""
