"""AC power flow per step: a lightsim2grid Newton solver built once from the pandapower net.

The co-simulation changes only bus injections and line statuses between steps, so the solver
model is built once and updated in place (pandapower itself delegates to the same C++ solver);
`runpp_reference` solves the same step with plain `pandapower.runpp` for validation.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np

from simgrid.errors import PowerFlowError
from simgrid.network import Network


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """One solved step. Quantities at de-energised buses are NaN; dead lines carry 0 %."""

    converged: bool
    vm_pu: np.ndarray
    line_loading_percent: np.ndarray
    import_mw: float
    import_mvar: float
    losses_mw: float
    line_loss_mw: np.ndarray | None = None  # per line: P in at both ends (losses)
    line_loss_mvar: np.ndarray | None = None  # per line: Q in at both ends (net of charging)
    line_p_from_mw: np.ndarray | None = None  # per line: P entering at the from bus
    va_degree: np.ndarray | None = None  # per bus: voltage angle (the slack's as the case sets)

    @classmethod
    def failed(cls, n_bus: int, n_line: int) -> PowerFlowResult:
        """A step without a solution: everything NaN."""
        nan = np.nan
        return cls(False, np.full(n_bus, nan), np.full(n_line, nan), nan, nan, nan)


def net_demand(load_p_mw, load_q_mvar, keep, shed_p_mw, shed_q_mvar, inj_p_mw, inj_q_mvar):
    """Per bus, what it draws from the network (MW, Mvar; negative: net injection): the load
    still connected (`keep`: the fraction protection left), less the shedding (never below
    nothing; a bus with no active load left draws no reactive load either), less the units'
    injections. The plant solves this; the real-time layer predicts around it."""
    served_p = np.maximum(load_p_mw * keep - shed_p_mw, 0.0)
    served_q = np.where(served_p > 0, load_q_mvar * keep - shed_q_mvar, 0.0)
    return served_p - inj_p_mw, served_q - inj_q_mvar


def per_bus_load_net(network: Network):
    """A copy of the pandapower net whose loads are exactly one per bus, in bus order."""
    import pandapower as pp

    net = copy.deepcopy(network.net)
    net.load.drop(net.load.index, inplace=True)
    pp.create_loads(
        net,
        network.bus_index,
        p_mw=network.base_load_p_mw,
        q_mvar=network.base_load_q_mvar,
        index=np.arange(network.n_bus),
    )
    return net


_PICKUP_TOL = 1e-7  # the distributed slack's total agrees to this fraction of the demand
_PICKUP_ROUNDS = 20


def shares(total_mw: float, share: np.ndarray, down_mw: np.ndarray, up_mw: np.ndarray):
    """What each generator takes of `total_mw`: in proportion to `share` within how far it can
    move down or up, what a generator at its limit cannot take going to the others (as
    governors at their limits drop out). The multiplier is found by bisection: each one's
    take, clip(share x lambda), grows with lambda."""
    room = float(np.where(total_mw >= 0, up_mw, -down_mw).clip(0, None).sum())
    if not np.isfinite(room) or room > abs(total_mw):
        lo, hi = (0.0, abs(total_mw)) if total_mw >= 0 else (-abs(total_mw), 0.0)
        scale = float(share[share > 0].min()) if (share > 0).any() else 1.0
        lo, hi = lo / scale, hi / scale
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if np.clip(share * mid, down_mw, up_mw).sum() < total_mw:
                lo = mid
            else:
                hi = mid
        return np.clip(share * 0.5 * (lo + hi), down_mw, up_mw)
    return np.where(total_mw >= 0, up_mw, down_mw).clip(-1e30, 1e30) * (share > 0)


class PowerFlowEngine:
    """Solve the AC power flow for per-bus demand vectors, warm-starting from the last solution.

    Convergence is pandapower's criterion: the largest per-unit power mismatch below `tol_pu`
    (pandapower's `tolerance_mva`, 1e-8, is compared with per-unit mismatches despite its
    name), within `max_iter` Newton iterations (pandapower's default for Newton-Raphson, 10).
    """

    def __init__(self, network: Network, *, tol_pu: float = 1e-8, max_iter: int = 10) -> None:
        from lightsim2grid.network import init_from_pandapower

        self.network = network
        net = per_bus_load_net(network)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._grid = init_from_pandapower(net)
        except Exception as exc:  # lightsim2grid reports unsupported elements in many ways
            raise PowerFlowError(
                f"{network.name}: cannot build the power-flow model ({exc})"
            ) from None
        self._tol_pu = tol_pu
        self._max_iter = max_iter
        self._n_gen = len(net.gen)
        self._all_loads = np.ones(network.n_bus, dtype=bool)
        self._max_i_ka = network.line_max_i_ka
        self._v_flat = np.ones(self._grid.total_bus(), dtype=complex)
        self._v = self._v_flat.copy()
        self._line_active = network.line_in_service.copy()
        self._line_status = network.line_in_service.copy()
        self.energised = network.energised(self._line_status)
        self._apply_topology(self._line_status)
        self._pickup_mw = 0.0  # the distributed slack's last total (its next solve starts there)
        self._demand_mw = float(network.base_load_p_mw.sum())  # ... and the demand it met

    def reset(self) -> None:
        """The network's own line status and a flat start, as when built: a reused engine then
        gives bit-identical answers whatever it solved before."""
        self.set_line_status(self.network.line_in_service)
        self.flat_start()
        self._pickup_mw = 0.0
        self._demand_mw = float(self.network.base_load_p_mw.sum())

    def flat_start(self) -> None:
        """Start the next Newton solve from a flat voltage profile."""
        self._v = self._v_flat.copy()

    def set_line_status(self, line_in_service: np.ndarray) -> None:
        """Switch lines; buses cut off from the substation are taken out of the power flow."""
        if np.array_equal(line_in_service, self._line_status):
            return
        self._line_status = line_in_service.copy()
        self.energised = self.network.energised(self._line_status)
        self._apply_topology(self._line_status)

    def _apply_topology(self, line_in_service: np.ndarray) -> None:
        nw = self.network
        active = line_in_service & self.energised[nw.line_from] & self.energised[nw.line_to]
        for i in np.flatnonzero(active != self._line_active):
            if active[i]:
                self._grid.reactivate_powerline(int(i))
            else:
                self._grid.deactivate_powerline(int(i))
        for b in range(nw.n_bus):
            if self.energised[b]:
                self._grid.reactivate_load(b)
            else:
                self._grid.deactivate_load(b)
        self._line_active = active
        self._v = self._v_flat.copy()  # re-energised buses need a sane start

    def _newton(self) -> np.ndarray:
        """One Newton solve from the last solution (empty: no solution)."""
        g = self._grid
        v = g.ac_pf(self._v, self._max_iter, self._tol_pu)
        if v.size == 0 and not np.array_equal(self._v, self._v_flat):
            # a warm start far from the new operating point can fail where a flat start does
            # not: only a failure from the flat start is a collapse
            v = g.ac_pf(self._v_flat.copy(), self._max_iter, self._tol_pu)
        if v.size:
            self._v = v
        return v

    def _distributed(self, p_mw: np.ndarray) -> np.ndarray:
        """Newton solves with the generators taking up a change of demand by their shares
        (within their limits) until the total they take agrees with what they were set to:
        the reference takes only the losses' change of the last solve."""
        nw, g = self.network, self._grid
        share, p0 = nw.participation, nw.gen_p_mw
        n_gen = self._n_gen
        tol = max(_PICKUP_TOL * float(np.abs(p_mw).sum()), 1e-6)
        demand = float(p_mw.sum())
        # start from the last solve's total moved by the change of demand since (the
        # reference alone could not carry a GW change through the grid to a Newton solution)
        pickup = self._pickup_mw + demand - self._demand_mw
        v = np.zeros(0, complex)
        every = np.ones(n_gen, dtype=bool)
        for _ in range(_PICKUP_ROUNDS):
            target = p0 + shares(pickup, share, nw.gen_p_min_mw - p0, nw.gen_p_max_mw - p0)
            g.update_gens_p(every, target[:n_gen].astype(np.float32))
            v = self._newton()
            if v.size == 0:
                break
            total = float(np.asarray(g.get_gen_res()[0]).sum() - p0.sum())
            if abs(total - pickup) <= tol:
                break
            pickup = total
        if v.size:
            self._pickup_mw, self._demand_mw = pickup, demand
        return v

    def solve(self, p_mw: np.ndarray, q_mvar: np.ndarray) -> PowerFlowResult:
        """Solve for per-bus net demand (MW, Mvar; negative = net injection)."""
        g = self._grid
        g.update_loads_p(self._all_loads, p_mw.astype(np.float32))
        g.update_loads_q(self._all_loads, q_mvar.astype(np.float32))
        v = self._newton() if self.network.participation is None else self._distributed(p_mw)
        if v.size == 0:
            self._v = self._v_flat.copy()  # do not warm-start the next step from a failure
            return PowerFlowResult.failed(self.network.n_bus, self.network.n_line)
        vm = np.abs(v)
        vm[~self.energised] = np.nan
        p1, q1, _, a1 = g.get_line_res1()
        p2, q2, _, a2 = g.get_line_res2()
        loading = np.maximum(a1, a2) / self._max_i_ka * 100.0
        gp, gq, _ = g.get_gen_res()
        losses = float(np.sum(p1 + p2))
        trafo = g.get_trafo_res1()[0], g.get_trafo_res2()[0]
        if trafo[0].size:
            losses += float(np.sum(trafo[0] + trafo[1]))
        # the import: what the substation delivers, or every generator that takes up demand
        supply = slice(self._n_gen, None) if self.network.participation is None else slice(None)
        return PowerFlowResult(
            True,
            vm,
            loading,
            float(gp[supply].sum()),
            float(gq[supply].sum()),
            losses,
            p1 + p2,
            q1 + q2,
            p1.copy(),  # lightsim2grid hands out its buffer, which the next solve overwrites
            np.where(self.energised, np.angle(v[: len(vm)], deg=True), np.nan),
        )


def runpp_reference(
    network: Network,
    p_mw: np.ndarray,
    q_mvar: np.ndarray,
    line_in_service: np.ndarray | None = None,
    net=None,
) -> PowerFlowResult:
    """The same step through plain `pandapower.runpp` (validation and benchmarks only).

    Pass `net` from `per_bus_load_net` to reuse it across calls.
    """
    import pandapower as pp

    net = per_bus_load_net(network) if net is None else net
    net.load["p_mw"] = p_mw
    net.load["q_mvar"] = q_mvar
    if line_in_service is not None:
        net.line["in_service"] = line_in_service
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=True)
    except pp.LoadflowNotConverged:
        return PowerFlowResult.failed(network.n_bus, network.n_line)
    return PowerFlowResult(
        True,
        net.res_bus.vm_pu.to_numpy(),
        net.res_line.loading_percent.fillna(0).to_numpy(),
        float(net.res_ext_grid.p_mw.sum()),
        float(net.res_ext_grid.q_mvar.sum()),
        float(net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()),
    )
