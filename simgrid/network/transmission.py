"""What a transmission case needs beyond a feeder before it can be solved as its data mean it.

* Transformers. pandapower's from_ppc makes a MATPOWER transformer without a tap ratio (TAP
  0 between buses of different nominal voltage: all 847 of case_ACTIVSg2000's) an `impedance`
  element, which lightsim2grid refuses. Each becomes the equivalent two-winding transformer
  (ratio of its buses' nominal voltages, the same series impedance, no magnetising branch):
  the admittance matrix is unchanged (tests/test_transmission.py checks it to 1e-9).
* Generators' reactive limits. A solved case's voltages come from a power flow in which
  generators that reached a reactive limit stopped holding their voltage; MATPOWER's and
  pandapower's `enforce_q_lims` switch every violating generator at once and never back, which
  on case_ACTIVSg2000 leaves 31 generators at a limit with the voltage on the wrong side of
  their set-point (0.031 pu off the stored solution). `solve_with_reactive_limits` switches
  with back-off, as PowerWorld and PSS/E do: a generator at its upper limit must see a voltage
  at or below its set-point, one at its lower limit at or above. The generators limited in the
  base case are then frozen as fixed injections at their limit, so that every later solve
  (lightsim2grid has no reactive limits) starts from that base case; a generator reaching its
  limit during a run is not modelled (each step records how many stand beyond theirs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

_Q_TOL_MVAR = 1e-3  # beyond a limit by more than this: switch to the limit
_V_TOL_PU = 1e-6  # on the wrong side of the set-point by more than this: release
_MAX_ROUNDS = 50


def transformers_from_impedances(net) -> int:
    """Replace `impedance` elements by equivalent transformers in place (their shunt parts, a
    MATPOWER branch's charging, by shunts at their ends); how many there were. Only symmetric
    ones, what from_ppc makes, are accepted."""
    import pandapower as pp

    imp = net.impedance
    if len(imp) == 0:
        return 0
    if not (np.allclose(imp.rft_pu, imp.rtf_pu) and np.allclose(imp.xft_pu, imp.xtf_pu)):
        raise ValueError("an impedance element is not symmetric (no transformer's)")
    for end, g_col, b_col in (("from_bus", "gf_pu", "bf_pu"), ("to_bus", "gt_pu", "bt_pu")):
        g = imp[g_col].fillna(0.0).to_numpy() if g_col in imp else np.zeros(len(imp))
        b = imp[b_col].fillna(0.0).to_numpy() if b_col in imp else np.zeros(len(imp))
        has = (g != 0) | (b != 0)
        for i in np.flatnonzero(has):  # admittance y on the impedance's base: S = conj(y)|V|^2
            sn = float(imp.sn_mva.iloc[i])
            bus = int(imp[end].iloc[i])
            pp.create_shunt(
                net,
                bus,
                q_mvar=-b[i] * sn,
                p_mw=g[i] * sn,
                vn_kv=float(net.bus.vn_kv.at[bus]),
                in_service=bool(imp.in_service.iloc[i]),
            )
    base = float(net.sn_mva)
    r = imp.rft_pu.to_numpy() * base / imp.sn_mva.to_numpy()  # on the system base
    x = imp.xft_pu.to_numpy() * base / imp.sn_mva.to_numpy()
    kv = net.bus.vn_kv
    f_kv, t_kv = kv.loc[imp.from_bus].to_numpy(), kv.loc[imp.to_bus].to_numpy()
    high = np.where(f_kv >= t_kv, imp.from_bus, imp.to_bus)
    low = np.where(f_kv >= t_kv, imp.to_bus, imp.from_bus)
    pp.create_transformers_from_parameters(
        net,
        hv_buses=high,
        lv_buses=low,
        sn_mva=np.full(len(imp), base),
        vn_hv_kv=kv.loc[high].to_numpy(),
        vn_lv_kv=kv.loc[low].to_numpy(),
        vk_percent=np.hypot(r, x) * 100,
        vkr_percent=r * 100,
        pfe_kw=0.0,
        i0_percent=0.0,
        shift_degree=0.0,
        in_service=imp.in_service.to_numpy(),
        name=imp.name.to_numpy(),
    )
    net.impedance.drop(net.impedance.index, inplace=True)
    return len(r)


def limited(net) -> np.ndarray:
    """The voltage-controlling generators (net.gen rows) with reactive limits to respect."""
    g = net.gen
    if len(g) == 0:
        return np.zeros(0, bool)
    finite = np.isfinite(g.min_q_mvar.to_numpy(float)) | np.isfinite(g.max_q_mvar.to_numpy(float))
    return g.in_service.to_numpy(bool) & finite


def solve_with_reactive_limits(net, **runpp_kwargs) -> int:
    """Solve `net` in place with its generators' reactive limits (switching with back-off, see
    the module docstring) and freeze the generators at a limit as fixed injections there;
    returns how many. Raises what pandapower raises when a solve fails."""
    import pandapower as pp

    g = net.gen
    candidates = [i for i, on in zip(g.index, limited(net), strict=True) if on]
    state = dict.fromkeys(candidates, 0)  # 0 holds its voltage, +1 at its upper limit, -1 lower
    seen: set[tuple] = set()
    for _ in range(_MAX_ROUNDS):
        _run(net, state, runpp_kwargs)
        changes = _violations(net, state)
        if not changes:
            break
        key = tuple(sorted((i, s) for i, s in state.items() if s))
        if key in seen:  # cycling: one change at a time from here
            changes = changes[:1]
        seen.add(key)
        for _, i, s in changes:
            state[i] = s
    else:
        raise pp.LoadflowNotConverged("the generators' reactive limits did not settle")
    frozen = [i for i, s in state.items() if s]
    _freeze(net, frozen, state)
    if frozen:
        _run(net, {}, runpp_kwargs)
    return len(frozen)


def _run(net, state: dict, kwargs: dict) -> None:
    """One power flow with the generators in `state` at their limits (as fixed injections)."""
    import pandapower as pp

    g = net.gen
    keep = g.in_service.copy()
    at_limit = [i for i, s in state.items() if s]
    added = []
    for i in at_limit:
        q = g.at[i, "max_q_mvar"] if state[i] > 0 else g.at[i, "min_q_mvar"]
        added.append(pp.create_sgen(net, g.at[i, "bus"], p_mw=g.at[i, "p_mw"], q_mvar=q))
        g.at[i, "in_service"] = False
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            pp.runpp(net, calculate_voltage_angles=True, **kwargs)
    finally:
        g["in_service"] = keep
        net.sgen.drop(added, inplace=True)
    if at_limit:  # what the limited ones do: their fixed injection's result
        net.res_gen.loc[at_limit, "q_mvar"] = [
            g.at[i, "max_q_mvar"] if state[i] > 0 else g.at[i, "min_q_mvar"] for i in at_limit
        ]


def _violations(net, state: dict) -> list[tuple[float, int, int]]:
    """(how far, generator, new state) of every generator to switch, the farthest first."""
    g, q, vm = net.gen, net.res_gen.q_mvar, net.res_bus.vm_pu
    out = []
    for i, s in state.items():
        if s == 0:
            if q[i] > g.at[i, "max_q_mvar"] + _Q_TOL_MVAR:
                out.append((q[i] - g.at[i, "max_q_mvar"], i, 1))
            elif q[i] < g.at[i, "min_q_mvar"] - _Q_TOL_MVAR:
                out.append((g.at[i, "min_q_mvar"] - q[i], i, -1))
        else:
            v, v_set = vm[g.at[i, "bus"]], g.at[i, "vm_pu"]
            if (s > 0 and v > v_set + _V_TOL_PU) or (s < 0 and v < v_set - _V_TOL_PU):
                out.append((abs(v - v_set) * 1e3, i, 0))  # released: holds its voltage again
    return sorted(out, reverse=True)


def _freeze(net, frozen: list, state: dict) -> None:
    """The generators at a limit become fixed injections (sgen) at it; removed as gens."""
    import pandapower as pp

    g = net.gen
    for i in frozen:
        q = g.at[i, "max_q_mvar"] if state[i] > 0 else g.at[i, "min_q_mvar"]
        pp.create_sgen(
            net,
            g.at[i, "bus"],
            p_mw=g.at[i, "p_mw"],
            q_mvar=q,
            name=f"{g.at[i, 'name']} (at its reactive limit)",
            max_p_mw=g.at[i, "max_p_mw"] if "max_p_mw" in g else np.nan,
            min_p_mw=g.at[i, "min_p_mw"] if "min_p_mw" in g else np.nan,
        )
    net.gen.drop(frozen, inplace=True)


@dataclass(frozen=True, eq=False)
class StoredSolution:
    """The solution a case file stores (bus VM, VA; per bus in the network's order) and how
    well it solves the case's own model: the largest active and reactive power mismatch at a
    bus (MW, Mvar; reactive at buses whose voltage no generator holds), at that solution."""

    vm_pu: np.ndarray
    va_degree: np.ndarray
    mismatch_p_mw: float
    mismatch_q_mvar: float


def stored_solution(net) -> StoredSolution | None:
    """The case's stored solution, checked in the model pandapower built for its last solve
    (None if the case stores none)."""
    from pandapower.pypower.makeSbus import makeSbus

    if "stored_vm_pu" not in net.bus or not np.isfinite(net.bus.stored_vm_pu).all():
        return None
    vm = net.bus.stored_vm_pu.to_numpy(float)
    va = net.bus.stored_va_degree.to_numpy(float)
    internal = net._ppc["internal"]
    pos = net._pd2ppc_lookups["bus"][net.bus.index.to_numpy()]
    ybus, bus = internal["Ybus"], internal["bus"]
    v = np.zeros(ybus.shape[0], complex)
    v[pos] = vm * np.exp(1j * np.deg2rad(va))
    base = internal["baseMVA"]
    mismatch = (v * np.conj(ybus @ v) - makeSbus(base, bus, internal["gen"])) * base
    free_q = bus[:, 1] == 1  # PQ buses: their reactive balance is data, not a free variable
    not_slack = bus[:, 1] != 3
    return StoredSolution(
        vm,
        va,
        float(np.abs(mismatch.real[not_slack]).max(initial=0.0)),
        float(np.abs(mismatch.imag[free_q]).max(initial=0.0)),
    )
