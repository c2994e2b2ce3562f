"""A meshed grid's AC power flow linearised around a solution: how bus voltages, line flows
and the losses move with injections (the sensitivities `linear_ac.py` builds its model on).

At a solution V of the AC power flow (MATPOWER's model of the grid, as pandapower built it:
admittance matrix, reference bus, buses whose voltage a generator holds), the Newton
Jacobian J relates small changes of the specified injections to changes of the state:
J [dVa; dVm] = [dP; dQ] (P at every bus but the reference, Q where no generator holds the
voltage). A change of demand is taken up by the generators in proportion to their shares (the
distributed slack of the AC solve, simgrid.powerflow): an injection dp at bus k specifies
dp e_k - share x dp at the generators' buses, the reference taking its share and the change
of the losses. From the state change follow each line's active flow at its from end
(dSf/dV), each bus's voltage magnitude, and the losses (the sum of all injections' change).
One sparse LU factorisation of J per solution serves every right-hand side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csc_matrix, hstack, vstack
from scipy.sparse.linalg import splu

_BR_STATUS = 10


@dataclass(frozen=True, eq=False)
class Grid:
    """MATPOWER's model of a network as pandapower built it for its base case (internal bus
    and branch tables), and where the network's buses and lines are in it."""

    base_mva: float
    bus: np.ndarray
    branch: np.ndarray
    bus_row: np.ndarray  # (N,) internal row of each bus of the network
    line_row: np.ndarray  # (L,) internal branch row of each line
    ref: int  # internal row of the reference bus
    pv: np.ndarray  # internal rows of buses whose voltage a generator holds
    share: np.ndarray  # (N,) each bus's share of a change of demand (distributed slack)

    @classmethod
    def of(cls, network) -> Grid:
        net = network.net
        internal = net._ppc["internal"]
        lookup = net._pd2ppc_lookups
        bus_row = np.asarray(lookup["bus"][net.bus.index.to_numpy()], dtype=int)
        start, end = lookup["branch"]["line"] if "line" in lookup["branch"] else (0, 0)
        share = np.zeros(network.n_bus)
        if network.participation is not None:
            gen_bus = np.concatenate([net.gen.bus.to_numpy(), net.ext_grid.bus.to_numpy()])
            pos = net.bus.index.get_indexer(gen_bus)
            np.add.at(share, pos, network.participation)
        else:
            share[network.slack_bus] = 1.0
        return cls(
            base_mva=float(internal["baseMVA"]),
            bus=np.array(internal["bus"]),
            branch=np.array(internal["branch"]),
            bus_row=bus_row,
            line_row=np.arange(start, end),
            ref=int(np.asarray(internal["ref"]).ravel()[0]),
            pv=np.asarray(internal["pv"], dtype=int),
            share=share,
        )


class Linearised:
    """The grid's AC power flow linearised at one solution `vm_pu`, `va_degree` (per bus of
    the network), with the lines in service `line_in_service` (see the module docstring)."""

    def __init__(self, grid: Grid, vm_pu, va_degree, line_in_service: np.ndarray) -> None:
        from pandapower.pypower.dSbr_dV import dSbr_dV
        from pandapower.pypower.dSbus_dV import dSbus_dV
        from pandapower.pypower.makeYbus import makeYbus

        self.grid = grid
        nb = grid.bus.shape[0]
        branch = grid.branch.copy()
        branch[grid.line_row, _BR_STATUS] = line_in_service.astype(float)
        live = branch[:, _BR_STATUS] > 0
        ybus, yf, _yt = makeYbus(grid.base_mva, grid.bus, branch)
        v = np.ones(nb, complex)
        vm = np.nan_to_num(np.asarray(vm_pu, float), nan=1.0)
        va = np.nan_to_num(np.asarray(va_degree, float), nan=0.0)
        v[grid.bus_row] = vm * np.exp(1j * np.deg2rad(va))
        ds_dvm, ds_dva = dSbus_dV(ybus, v)
        on = np.flatnonzero(live)
        dsf_dva, dsf_dvm, _, _, _, _ = dSbr_dV(branch[on], yf[on], _yt[on], v)
        self._dpf = (csc_matrix(dsf_dva).real, csc_matrix(dsf_dvm).real)
        self._on = on
        self._dref = (
            csc_matrix(ds_dva)[grid.ref, :].real.toarray().ravel(),
            csc_matrix(ds_dvm)[grid.ref, :].real.toarray().ravel(),
        )
        is_pv = np.zeros(nb, bool)
        is_pv[grid.pv] = True
        self._pvpq = np.array([b for b in range(nb) if b != grid.ref])
        self._pq = np.array([b for b in range(nb) if b != grid.ref and not is_pv[b]])
        a, m = csc_matrix(ds_dva), csc_matrix(ds_dvm)
        j11 = a[self._pvpq][:, self._pvpq].real
        j12 = m[self._pvpq][:, self._pq].real
        j21 = a[self._pq][:, self._pvpq].imag
        j22 = m[self._pq][:, self._pq].imag
        jac = vstack([hstack([j11, j12]), hstack([j21, j22])]).tocsc()
        self._lu = splu(jac)
        self.vm_pu = vm

    def response(self, dp_mw: np.ndarray, dq_mvar: np.ndarray):
        """For injection changes (N, m) in MW and Mvar (generation-positive; columns are
        independent cases): each bus's voltage change (N, m, pu), each line's flow change at
        its from end (L, m, MW) and the losses' change (m, MW)."""
        g = self.grid
        nb = g.bus.shape[0]
        dp = np.atleast_2d(np.asarray(dp_mw, float).T).T
        dq = np.atleast_2d(np.asarray(dq_mvar, float).T).T
        m = dp.shape[1]
        p = np.zeros((nb, m))
        q = np.zeros((nb, m))
        p[g.bus_row] = dp / g.base_mva
        q[g.bus_row] = dq / g.base_mva
        share = np.zeros(nb)
        share[g.bus_row] = g.share
        # the generators take up the change and the losses' change by their shares: the
        # response to `p` with `total` taken up, plus c times the response to taking up one
        # MW more, where c is the losses' change itself (c = L1 + c L2)
        p = np.hstack([p - share[:, None] * p.sum(axis=0)[None, :], share[:, None]])
        q = np.hstack([q, np.zeros((nb, 1))])
        dvm, flows, losses = self._solved(p, q)
        c = losses[:m] / (1.0 - losses[m])
        dvm = dvm[:, :m] + dvm[:, m:] * c
        flows = flows[:, :m] + flows[:, m:] * c
        return dvm[g.bus_row], flows[g.line_row] * g.base_mva, c * g.base_mva

    def _solved(self, p: np.ndarray, q: np.ndarray):
        """The state's, lines' and losses' response to specified injections (pu, internal)."""
        g = self.grid
        nb, m = p.shape
        x = self._lu.solve(np.vstack([p[self._pvpq], q[self._pq]]))
        dva = np.zeros((nb, m))
        dvm = np.zeros((nb, m))
        dva[self._pvpq] = x[: len(self._pvpq)]
        dvm[self._pq] = x[len(self._pvpq) :]
        flows = np.zeros((len(g.branch), m))
        flows[self._on] = self._dpf[0] @ dva + self._dpf[1] @ dvm
        ref = self._dref[0] @ dva + self._dref[1] @ dvm  # the reference's computed injection
        return dvm, flows, p[self._pvpq].sum(axis=0) + ref  # losses: every injection's change
