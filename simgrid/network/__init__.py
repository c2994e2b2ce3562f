"""Network: load a pandapower net, scale it, rate its lines, and derive the arrays others use.

The pandapower net is owned here and in the power-flow adapter; other layers see `Network`'s
numpy arrays (bus order = position in `bus_index`).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simgrid.config import NetworkConfig
from simgrid.errors import ConfigError, DataError
from simgrid.matpower import read_matpower, to_ppc
from simgrid.network.transmission import (
    StoredSolution,
    limited,
    solve_with_reactive_limits,
    stored_solution,
    transformers_from_impedances,
)
from simgrid.types import Campus, Event

# pandapower writes this (or similar huge numbers) when a case carries no thermal rating.
_NO_RATING_KA = 1e4
_AT_LIMIT_MW = 1e-3  # a generator this close to a limit of its output has no room there


@dataclass(frozen=True, eq=False)
class Network:
    """A conditioned network and the arrays derived from it.

    `scale` is the factor applied to loads (and divided into impedances); `base_load_*` are the
    feeder's nominal (peak) conventional loads per bus after scaling.
    """

    name: str
    scale: float
    net: object  # pandapower net; only network/powerflow touch it
    bus_index: np.ndarray
    vn_kv: np.ndarray
    slack_bus: int
    line_from: np.ndarray
    line_to: np.ndarray
    line_in_service: np.ndarray
    line_max_i_ka: np.ndarray
    line_rated_by_margin: np.ndarray
    line_r_ohm: np.ndarray
    line_x_ohm: np.ndarray
    base_load_p_mw: np.ndarray
    base_load_q_mvar: np.ndarray
    stored: StoredSolution | None = None  # the solution a MATPOWER case file stores
    # the AC solve's slack: None (the substation alone) or each generator's (net.gen rows, then
    # the ext_grids) share of a change of demand, with their scheduled output and limits (MW)
    participation: np.ndarray | None = None
    gen_p_mw: np.ndarray | None = None
    gen_p_min_mw: np.ndarray | None = None
    gen_p_max_mw: np.ndarray | None = None

    @property
    def n_bus(self) -> int:
        return len(self.bus_index)

    @property
    def n_line(self) -> int:
        return len(self.line_from)

    def energised(self, line_in_service: np.ndarray) -> np.ndarray:
        """Buses connected to the slack through in-service lines (and trafos)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        f = np.concatenate([self.line_from[line_in_service], self._trafo_from])
        t = np.concatenate([self.line_to[line_in_service], self._trafo_to])
        graph = coo_matrix((np.ones(len(f)), (f, t)), shape=(self.n_bus, self.n_bus))
        _, labels = connected_components(graph, directed=False)
        return labels == labels[self.slack_bus]

    @property
    def _trafo_from(self) -> np.ndarray:
        return _positions(self.net, self.net.trafo.hv_bus[self.net.trafo.in_service].to_numpy())

    @property
    def _trafo_to(self) -> np.ndarray:
        return _positions(self.net, self.net.trafo.lv_bus[self.net.trafo.in_service].to_numpy())


def lower_end_pu(vm_pu: np.ndarray, line_from: np.ndarray, line_to: np.ndarray) -> np.ndarray:
    """Each line's lower end voltage (pu; 1 where unknown: a dead or unsolved bus). A line's
    rating is a current: in MVA it is this times its rating at 1 pu."""
    low = np.fmin(vm_pu[line_from], vm_pu[line_to])
    return np.where(np.isfinite(low) & (low > 0), low, 1.0)


def _positions(net, buses: np.ndarray) -> np.ndarray:
    return net.bus.index.get_indexer(buses).astype(np.int64)


def load_pandapower_net(cfg: NetworkConfig, source: str = "<config>"):
    """Read the pandapower net named by the config (built-in case, JSON or MATPOWER)."""
    import pandapower as pp
    import pandapower.networks as pn

    if cfg.file is None:
        return getattr(pn, cfg.case)(), cfg.case
    path = Path(cfg.file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".json":
                # the text checked is the text read: the file is not opened a second time
                net = pp.from_json_string(_pandapower_json(path, source), convert=True)
            elif path.suffix.lower() == ".m":
                net = _from_matpower_m(path, source)
            else:
                from pandapower.converter.matpower.from_mpc import from_mpc

                net = from_mpc(str(path), f_hz=50)
    except ConfigError:
        raise
    except Exception as exc:  # a foreign file can fail in many ways inside the readers
        if path.suffix.lower() == ".json" and isinstance(
            exc, AttributeError | KeyError | TypeError
        ):
            raise ConfigError(
                source, "network.file", str(path), "is not a pandapower network saved as JSON"
            ) from None
        raise ConfigError(
            source,
            "network.file",
            str(path),
            f"cannot be read as a network ({type(exc).__name__}: {exc})",
        ) from None
    if len(net.ext_grid) == 0:
        raise ConfigError(
            source, "network.file", str(path), "must contain an ext_grid (the substation / slack)"
        )
    return net, path.stem


# A pandapower JSON network larger than this is refused unread: json.loads holds the whole
# document as Python objects, up to 30 times the text (a list of empty objects `{}`). pp.to_json
# of the largest network known here, MATPOWER's case_SyntheticUSA (82,000 buses), is 22.8 MB:
# checking it takes 1.4 s and 0.12 GB, pandapower's reading it 0.53 GB. At the cap, 1.4 x that,
# a hostile file's check peaks near 1 GB; without it pandapower read any size.
_MAX_JSON_BYTES = 32 * 2**20

# The modules a pandapower JSON network may name (`"_module"`) for its objects. pandapower's
# from_json imports the module first and checks it against its own list after (3.5.6), so a
# module planted next to the file, or anywhere on sys.path, runs on load. Its own saved nets
# name pandapower.auxiliary (the net), pandas.core.frame (each table) and, with controllers or
# other objects, pandapower.* classes, pandas Index/Series, numpy arrays and scalars, and the
# builtins below; it writes shapely geometries too. Nothing else is read.
_JSON_MODULES = ("pandapower", "pandas", "numpy", "shapely")
_JSON_BUILTINS = frozenset({"tuple", "set", "frozenset", "complex"})


def _pandapower_json(path: Path, source: str) -> str:
    """The text of a pandapower JSON network, refused (ConfigError) if it is too large, is no
    JSON, or names an object pandapower would import from a module outside _JSON_MODULES."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(source, "network.file", str(path), why)

    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > _MAX_JSON_BYTES:
                raise refuse(f"is {size:,} bytes, more than a network may be ({_MAX_JSON_BYTES:,})")
            # one byte more than the file holds shows it growing (read(n) reserves n bytes)
            raw = fh.read(size + 1)
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > size:
        raise refuse("cannot be read (it grew while read: a /proc-like file, not a network)")
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, RecursionError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
        raise refuse(f"is not a pandapower network saved as JSON ({why})") from None
    except ValueError as exc:
        raise refuse(f"is not a pandapower network saved as JSON ({exc})") from None
    problem = _foreign_json_object(doc)
    if problem:
        raise refuse(problem)
    return text


def _foreign_json_object(doc: object) -> str | None:
    """Why pandapower must not read the parsed JSON `doc`, or None.

    Every nested dict is looked at, and every string that is itself JSON: pandapower keeps each
    table as a JSON string (and geodata as JSON strings inside those) and decodes them with the
    same hook that imports `_module`.
    """
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "_module" in item:
                module, cls = item["_module"], item.get("_class")
                if not _allowed_json_object(module, cls):
                    shown = f"{module}.{cls}" if module == "builtins" else module
                    return (
                        f"names the Python module {str(shown)[:80]!r} for an object, which "
                        "pandapower would import (running its code) before checking it; a "
                        f"network may hold objects of {', '.join(_JSON_MODULES)} only"
                    )
                obj = item.get("_object")
                if isinstance(obj, str) and os.path.isabs(obj) and obj.endswith(".json"):
                    # pandapower reads such a table's "_object" as the path of another file
                    return f"names another file for pandapower to read ({obj[:120]!r})"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.lstrip()[:1] in ("{", "[", '"'):
            try:
                stack.append(json.loads(item))
            except RecursionError:
                return "is not a pandapower network saved as JSON (nested too deeply)"
            except ValueError:
                pass  # text that only looks like JSON: pandapower does not decode it either
    return None


def _allowed_json_object(module: object, cls: object) -> bool:
    if not isinstance(module, str):
        return False
    if module == "builtins":
        return isinstance(cls, str) and cls in _JSON_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in _JSON_MODULES)


def _from_matpower_m(path: Path, source: str):
    """A MATPOWER .m case as its authors meant it: the data blocks with the unit conversions
    its trailing statements perform applied (simgrid.matpower), then pandapower's converter.
    The solution the case stores (bus VM, VA) rides along as bus columns `stored_vm_pu` and
    `stored_va_degree` (what the base case is checked against)."""
    from pandapower.converter.pypower.from_ppc import from_ppc

    case = read_matpower(path, source)
    ppc = to_ppc(case)
    net = from_ppc(ppc, f_hz=50)
    ids = ppc["bus"][:, 0].astype(int)
    net.bus.loc[ids, "stored_vm_pu"] = ppc["bus"][:, 7]
    net.bus.loc[ids, "stored_va_degree"] = ppc["bus"][:, 8]
    return net


def scale_net(net, k: float) -> None:
    """Scale loads and generation by k and impedances by 1/k, in place.

    Per-unit voltages are unchanged: S_pu scales by k and Z_pu by 1/k, so every branch's
    voltage drop I*Z (I ~ k) is the same. Currents, flows and losses scale by k, so thermal
    ratings (kA) scale by k too.
    """
    for table in ("load", "sgen", "storage", "shunt"):
        df = getattr(net, table)
        for col in ("p_mw", "q_mvar", "sn_mva"):
            if col in df:
                df[col] = df[col] * k
    if "p_mw" in net.gen:
        net.gen["p_mw"] = net.gen["p_mw"] * k
    line = net.line
    line["r_ohm_per_km"] = line["r_ohm_per_km"] / k
    line["x_ohm_per_km"] = line["x_ohm_per_km"] / k
    line["c_nf_per_km"] = line["c_nf_per_km"] * k
    if "g_us_per_km" in line:
        line["g_us_per_km"] = line["g_us_per_km"] * k
    rated = line["max_i_ka"] < _NO_RATING_KA
    line.loc[rated, "max_i_ka"] = line.loc[rated, "max_i_ka"] * k
    # A transformer's per-unit impedance on the system base is vk% * S_base / sn_mva.
    net.trafo["sn_mva"] = net.trafo["sn_mva"] * k


def build_network(cfg: NetworkConfig, source: str = "<config>") -> Network:
    """Load, scale and rate the network of a config."""
    import pandapower.toolbox as tb

    net, name = load_pandapower_net(cfg, source)
    net = copy.deepcopy(net)
    _check_elements(net, _network_key(cfg), source)
    transformers_from_impedances(net)
    # lightsim2grid would keep a generator out of service holding its bus's voltage
    net.gen.drop(net.gen.index[~net.gen.in_service.astype(bool)], inplace=True)
    tb.create_continuous_bus_index(net, start=0)
    nominal_p_mw = float(net.load.p_mw[net.load.in_service].sum())
    k = 1.0
    if cfg.scale_to_peak_mw is not None:
        if nominal_p_mw <= 0:
            raise DataError(f"{name}: the network has no load to scale")
        k = cfg.scale_to_peak_mw / nominal_p_mw
        scale_net(net, k)

    _solve_base_case(net, cfg, name, source)
    # Lines with no rating get margin x max(base-case current, median line current)
    # (case33bw has none: every line carries 99999 kA).
    unrated = (net.line.max_i_ka >= _NO_RATING_KA).to_numpy()
    if unrated.any():
        i_base = net.res_line[["i_from_ka", "i_to_ka"]].max(axis=1).fillna(0).to_numpy()
        live = net.line.in_service.to_numpy() & (i_base > 0)
        # floor at the feeder's median line current: a lateral's end line would otherwise be
        # rated for its tiny base load and overload on any new connection there
        floor = float(np.median(i_base[live])) if live.any() else 1.0
        rating = np.maximum(np.where(live, i_base, 0.0), floor) * cfg.line_rating_margin
        net.line.loc[unrated, "max_i_ka"] = rating[unrated]

    bus_of_load = _positions(net, net.load.bus.to_numpy())
    scaling = net.load.scaling.to_numpy() * net.load.in_service.to_numpy()
    n_bus = len(net.bus)
    base_p = np.bincount(bus_of_load, net.load.p_mw.to_numpy() * scaling, minlength=n_bus)
    base_q = np.bincount(bus_of_load, net.load.q_mvar.to_numpy() * scaling, minlength=n_bus)
    line = net.line
    return Network(
        name=name,
        scale=k,
        net=net,
        bus_index=net.bus.index.to_numpy(),
        vn_kv=net.bus.vn_kv.to_numpy(dtype=float),
        slack_bus=int(_positions(net, net.ext_grid.bus.to_numpy()[:1])[0]),
        line_from=_positions(net, line.from_bus.to_numpy()),
        line_to=_positions(net, line.to_bus.to_numpy()),
        line_in_service=line.in_service.to_numpy(dtype=bool),
        line_max_i_ka=(line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float),
        line_rated_by_margin=unrated,
        line_r_ohm=(line.r_ohm_per_km * line.length_km / line.parallel).to_numpy(dtype=float),
        line_x_ohm=(line.x_ohm_per_km * line.length_km / line.parallel).to_numpy(dtype=float),
        base_load_p_mw=base_p,
        base_load_q_mvar=base_q,
        stored=stored_solution(net) if k == 1.0 else None,  # a scaled case is another case
        **_participation(net, cfg),
    )


def _participation(net, cfg: NetworkConfig) -> dict:
    """The distributed slack (see NetworkConfig.slack): generators in proportion to their
    rating (the band a governor's droop acts over); those at a limit of their output in the
    base case (Pmax = Pmin, nuclear in case_ACTIVSg2000; or run at Pmax, 28 of the 34 units of
    case_ACTIVSg200), which have no headroom to respond with, not at all; the reference
    (ext_grid) by its own rating, or its base-case output where it has none."""
    distributed = cfg.slack == "distributed" or (cfg.slack == "auto" and len(net.gen) > 0)
    if not distributed:
        return {}
    g, e = net.gen, net.ext_grid
    p = np.concatenate([net.res_gen.p_mw.to_numpy(float), net.res_ext_grid.p_mw.to_numpy(float)])
    lo = np.concatenate([_column(g, "min_p_mw", -np.inf), _column(e, "min_p_mw", -np.inf)])
    hi = np.concatenate([_column(g, "max_p_mw", np.inf), _column(e, "max_p_mw", np.inf)])
    rating = np.where(np.isfinite(hi), hi, np.abs(p))
    movable = (p > lo + _AT_LIMIT_MW) & (p < hi - _AT_LIMIT_MW)
    w = np.where(movable, np.maximum(rating, 0.0), 0.0)
    if w.sum() <= 0:
        return {}
    return {
        "participation": w / w.sum(),
        "gen_p_mw": p,
        "gen_p_min_mw": lo,
        "gen_p_max_mw": hi,
    }


def _column(df, name: str, default: float) -> np.ndarray:
    if name not in df:
        return np.full(len(df), default)
    return df[name].astype(float).fillna(default).to_numpy()


def _network_key(cfg: NetworkConfig) -> tuple[str, str]:
    return ("network.file", str(cfg.file)) if cfg.file else ("network.case", str(cfg.case))


def _check_elements(net, key: tuple[str, str], source: str) -> None:
    """What a power flow cannot make sense of: elements at buses the net lacks, non-finite or
    zero impedances, non-positive base voltages, non-finite loads."""

    def bad(why: str) -> ConfigError:
        return ConfigError(source, key[0], key[1], why)

    buses = set(net.bus.index)
    for table, cols in _BUS_COLUMNS.items():
        df = getattr(net, table)
        for col in cols:
            missing = sorted(set(df[col]) - buses) if len(df) else []
            if missing:
                raise bad(
                    f"{table} {df.index[df[col] == missing[0]][0]} is at bus {missing[0]}, "
                    "which the network does not have"
                )
    kv = net.bus.vn_kv.to_numpy(dtype=float)
    if not np.all(np.isfinite(kv) & (kv > 0)):
        raise bad(
            f"bus {net.bus.index[~(np.isfinite(kv) & (kv > 0))][0]} has base voltage "
            "vn_kv <= 0 or not a number: base voltages are positive kV"
        )
    line = net.line
    r = (line.r_ohm_per_km * line.length_km).to_numpy(dtype=float)
    x = (line.x_ohm_per_km * line.length_km).to_numpy(dtype=float)
    broken = ~(np.isfinite(r) & np.isfinite(x)) | (np.hypot(r, x) <= 0)
    if broken.any():
        raise bad(
            f"line {line.index[broken][0]} has zero or non-finite impedance "
            "(r, x, length): a branch needs a finite, non-zero impedance"
        )
    for table in ("load", "sgen"):
        df = getattr(net, table)
        values = df[["p_mw", "q_mvar"]].to_numpy(dtype=float) if len(df) else np.zeros((0, 2))
        if not np.isfinite(values).all():
            raise bad(f"a {table} has a non-finite p_mw or q_mvar")


_BUS_COLUMNS = {
    "line": ("from_bus", "to_bus"),
    "trafo": ("hv_bus", "lv_bus"),
    "load": ("bus",),
    "sgen": ("bus",),
    "gen": ("bus",),
    "ext_grid": ("bus",),
}


def _solve_base_case(net, cfg: NetworkConfig, name: str, source: str) -> None:
    """Solve the base case in place; a network whose base case has no solution, or whose loads
    are not all connected to the substation, is an error."""
    import pandapower as pp

    key, value = _network_key(cfg)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if limited(net).any():  # generators with reactive limits (a transmission case)
                solve_with_reactive_limits(net, numba=False)
            else:
                pp.runpp(net, numba=False)  # one solve: not worth numba's ~9 s compilation
    except Exception:  # LoadflowNotConverged, or the numerics of a network that cannot solve
        live = net.load.in_service
        p, q = float(net.load.p_mw[live].sum()), float(net.load.q_mvar[live].sum())
        kv = float(net.bus.vn_kv.max())
        raise ConfigError(
            source,
            key,
            value,
            f"the base case power flow of {name} has no solution ({p:.6g} MW / {q:.6g} Mvar "
            f"on a {kv:g} kV network): check the units of its loads (kW or MW) and "
            "impedances (ohm or per unit), and network.scale_to_peak_mw",
        ) from None
    cut_off = net.res_bus.vm_pu.isna() & net.bus.index.isin(net.load.bus[net.load.p_mw > 0])
    if cut_off.any():
        raise ConfigError(
            source,
            key,
            value,
            f"{int(cut_off.sum())} of {len(net.bus)} buses with load are not connected to the "
            "substation in the base case (open branches?): the base case must supply every load",
        )


def check_placement(
    source: str,
    campuses: Sequence[Campus],
    events: Sequence[Event],
    network: Network,
    event_key: str = "event",
) -> None:
    """Reject campus buses and event lines that the network does not have."""
    for i, c in enumerate(campuses):
        if not 0 <= c.bus < network.n_bus:
            raise ConfigError(
                source,
                f"campus[{i}].bus",
                c.bus,
                f"must be a bus index of {network.name} (0..{network.n_bus - 1})",
            )
    for i, e in enumerate(events):
        if e.line is not None and not 0 <= e.line < network.n_line:
            raise ConfigError(
                source,
                f"{event_key}[{i}].line",
                e.line,
                f"must be a line index of {network.name} (0..{network.n_line - 1})",
            )
        if e.line is not None and not network.line_in_service[e.line]:
            raise ConfigError(
                source,
                f"{event_key}[{i}].line",
                e.line,
                f"is normally open in {network.name} (a tie switch): an outage must take out "
                "an in-service line",
            )
