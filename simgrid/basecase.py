"""The network's base case and each campus's hosting capacity: what `validate` shows.

Base case: the feeder's own loads at their nominal (peak) values, no campus. Hosting capacity
of a bus: the additional load (MW, at the campus's power factor) the feeder carries there
before its first voltage or thermal limit, at the hour of the feeder's peak, on top of the
feeder's own load. A campus whose base load exceeds it cannot be hosted; one whose nameplate
exceeds it can be pushed past a limit by its shocks. The campuses together at their base
load are checked at the same hour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simgrid.config import NetworkConfig
from simgrid.network import Network
from simgrid.powerflow import PowerFlowEngine, PowerFlowResult
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.types import Campus

HOSTING_TOL_MW = 1e-4  # bisection resolution, relative to the feeder's load (x load)
_MAX_DOUBLINGS = 60
# A case file's stored solution is reproduced when every bus's voltage is within these
# (pandapower and MATPOWER agree to 1e-9 on the same model; the stored values carry the
# rounding of their file: case_ACTIVSg2000's generator outputs are truncated to 0.01 MW,
# which alone moves its angles by 0.04 degrees)
STORED_VM_TOL_PU = 1e-3
STORED_VA_TOL_DEG = 0.1
# ... and the stored solution is one of the case's own model when no bus is out of balance
# at it by more than this (MW or Mvar); else no solver can reproduce it
STORED_MISMATCH_TOL = 1.0


@dataclass(frozen=True)
class BaseCase:
    """The network at its nominal load, no campus."""

    n_bus: int
    n_line: int
    load_p_mw: float
    load_q_mvar: float
    import_mw: float
    losses_mw: float
    v_min_pu: float
    v_min_bus: int
    max_loading_percent: float
    max_loading_line: int
    stored_dvm_pu: float = math.nan  # largest difference from the case file's stored solution
    stored_dvm_bus: int = -1
    stored_dva_degree: float = math.nan
    stored_mismatch_mw: float = math.nan  # the stored solution's own imbalance (MW or Mvar)


@dataclass(frozen=True)
class Hosting:
    """How much more load a campus's bus takes at the peak hour, and what limits it."""

    campus: str
    bus: int
    peak_hour_s: float
    base_mw: float  # the campus's own base load at that hour
    p_nom_mw: float
    hosting_mw: float  # additional MW on top of the feeder's own load (-inf: none at all)
    limit: str  # what binds first: a voltage at a bus, a line's rating, or no solution


def base_case(network: Network) -> BaseCase:
    res = PowerFlowEngine(network).solve(network.base_load_p_mw, network.base_load_q_mvar)
    loading = np.nan_to_num(res.line_loading_percent)
    stored = {}
    if network.stored is not None:
        dvm = np.abs(res.vm_pu - network.stored.vm_pu)
        slack = network.slack_bus  # angles against the slack's: the reference is a choice
        va = res.va_degree - res.va_degree[slack]
        va_stored = network.stored.va_degree - network.stored.va_degree[slack]
        stored = {
            "stored_dvm_pu": float(np.nanmax(dvm)),
            "stored_dvm_bus": int(network.bus_index[np.nanargmax(dvm)]),
            "stored_dva_degree": float(np.nanmax(np.abs(va - va_stored))),
            "stored_mismatch_mw": max(network.stored.mismatch_p_mw, network.stored.mismatch_q_mvar),
        }
    return BaseCase(
        n_bus=network.n_bus,
        n_line=int(network.line_in_service.sum()),
        load_p_mw=float(network.base_load_p_mw.sum()),
        load_q_mvar=float(network.base_load_q_mvar.sum()),
        import_mw=res.import_mw,
        losses_mw=res.losses_mw,
        v_min_pu=float(np.nanmin(res.vm_pu)),
        v_min_bus=int(network.bus_index[np.nanargmin(res.vm_pu)]),
        max_loading_percent=float(loading.max(initial=0.0)),
        max_loading_line=int(np.argmax(loading)) if loading.size else -1,
        **stored,
    )


def reproduces_stored(base: BaseCase) -> bool:
    """The base case is the case file's stored solution, within the stated tolerances."""
    return base.stored_dvm_pu <= STORED_VM_TOL_PU and base.stored_dva_degree <= STORED_VA_TOL_DEG


def stored_line(base: BaseCase) -> str | None:
    """What validate says of the stored solution (None: the case stores none)."""
    if math.isnan(base.stored_dvm_pu):
        return None
    verdict = "reproduced" if reproduces_stored(base) else "NOT reproduced"
    text = (
        f"stored solution {verdict} (tolerance {STORED_VM_TOL_PU:g} pu, "
        f"{STORED_VA_TOL_DEG:g} deg): largest difference {base.stored_dvm_pu:.2e} pu at bus "
        f"{base.stored_dvm_bus}, {base.stored_dva_degree:.3f} deg"
    )
    if base.stored_mismatch_mw > STORED_MISMATCH_TOL:
        text += (
            f"; the stored voltages are no solution of the case's own data (a bus is "
            f"{base.stored_mismatch_mw:.1f} MW or Mvar out of balance at them)"
        )
    return text


def peak_hour_s(profile: LoadProfile) -> float:
    """When the feeder's conventional load peaks (the first such instant of the profile)."""
    t = profile.t_s if profile.period_s is None else np.arange(0.0, profile.period_s, 60.0)
    t = np.unique(np.concatenate([t, profile.t_s]))
    return float(t[np.argmax(profile.at(t))])


def _violation(res: PowerFlowResult, cfg: NetworkConfig) -> str | None:
    """The first limit broken by a solved step, or None."""
    if not res.converged:
        return "no solution (voltage collapse)"
    vm = res.vm_pu
    low, high = np.nanargmin(vm), np.nanargmax(vm)
    if vm[low] < cfg.v_min_pu:
        return f"voltage {vm[low]:.4f} pu < {cfg.v_min_pu:g} at bus {low}"
    if vm[high] > cfg.v_max_pu:
        return f"voltage {vm[high]:.4f} pu > {cfg.v_max_pu:g} at bus {high}"
    loading = np.nan_to_num(res.line_loading_percent)
    over = int(np.argmax(loading)) if loading.size else -1
    if over >= 0 and loading[over] > cfg.max_loading_percent:
        return f"line {over} at {loading[over]:.0f} % > {cfg.max_loading_percent:g} %"
    return None


def hosting(
    network: Network, cfg: NetworkConfig, profile: LoadProfile, campuses: Sequence[Campus]
) -> tuple[tuple[Hosting, ...], str | None]:
    """Each campus's hosting capacity at the feeder's peak hour (see the module docstring),
    and the first limit the feeder breaks with every campus at its base load (or None)."""
    t = peak_hour_s(profile)
    f = float(profile.at(t))
    base = np.array(
        [c.base_utilisation * c.p_nom_mw * float(campus_profile(c).at(t)) for c in campuses]
    )
    p0, q0 = network.base_load_p_mw * f, network.base_load_q_mvar * f
    engine = PowerFlowEngine(network)
    tol = HOSTING_TOL_MW * max(float(p0.sum()), 1e-3)
    out = []
    for k, c in enumerate(campuses):
        e = np.zeros(network.n_bus)
        e[c.bus] = 1.0

        def broken(extra_mw: float, e=e, c=c) -> str | None:
            return _violation(engine.solve(p0 + extra_mw * e, q0 + extra_mw * c.q_per_p * e), cfg)

        mw, why = _bisect(broken, tol)
        out.append(Hosting(c.name, c.bus, t, float(base[k]), c.p_nom_mw, mw, why))
    bus = np.array([c.bus for c in campuses], dtype=int)
    q_per_p = np.array([c.q_per_p for c in campuses])
    together = engine.solve(
        p0 + np.bincount(bus, base, minlength=network.n_bus),
        q0 + np.bincount(bus, base * q_per_p, minlength=network.n_bus),
    )
    return tuple(out), _violation(together, cfg) if campuses else None


def _bisect(broken, tol: float) -> tuple[float, str]:
    """The largest extra load within every limit (-inf: broken already without it)."""
    why = broken(0.0)
    if why is not None:
        return -math.inf, why
    lo, hi = 0.0, 1e3 * tol
    for _ in range(_MAX_DOUBLINGS):
        why = broken(hi)
        if why is not None:
            break
        lo, hi = hi, 2 * hi
    else:
        return math.inf, "none found"
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        reason = broken(mid)
        if reason is None:
            lo = mid
        else:
            hi, why = mid, reason
    return lo, why


def warnings_for(
    base: BaseCase, hostings: Sequence[Hosting], together: str | None, cfg: NetworkConfig
) -> list[str]:
    """What a planner must not miss: a base case outside the limits, a campus the feeder
    cannot host at its base load, one whose nameplate goes beyond what its bus can take, and
    campuses that break a limit together at their base load."""
    out = []
    if not math.isnan(base.stored_dvm_pu) and not reproduces_stored(base):
        out.append(f"the base case: {stored_line(base)}")
    if base.v_min_pu < cfg.v_min_pu:
        out.append(
            f"the base case voltage {base.v_min_pu:.4f} pu at bus {base.v_min_bus} is below "
            f"v_min_pu = {cfg.v_min_pu:g} without any campus"
        )
    for h in hostings:
        if h.base_mw > h.hosting_mw:
            out.append(
                f"campus {h.campus}: its {h.base_mw:.4g} MW base load exceeds the "
                f"{max(h.hosting_mw, 0.0):.4g} MW bus {h.bus} can host at the peak hour "
                f"({h.limit})"
            )
        elif h.p_nom_mw > h.hosting_mw:
            out.append(
                f"campus {h.campus}: its {h.p_nom_mw:.4g} MW nameplate exceeds the "
                f"{h.hosting_mw:.4g} MW bus {h.bus} can host at the peak hour ({h.limit}): "
                "shocks can push it past the limit"
            )
    if together is not None:
        out.append(f"every campus at its base load at the peak hour: {together}")
    return out
