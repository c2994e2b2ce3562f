"""The network's losses in the linear model: measured by an AC load flow, placed as demand at
each line's receiving end, with marginal loss factors for how they change with decisions.

LinDistFlow with sending-end flows drops only the (r^2 + x^2) l term of DistFlow, which makes it
conservative (the AC voltage is at or above the linear one); without the losses in the flows it
is optimistic and its import misses the losses the schedule carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.network import Network
from simgrid.optimization.blocks import ScenarioData
from simgrid.powerflow import PowerFlowEngine, PowerFlowResult


@dataclass(frozen=True, eq=False)
class Losses:
    """Network losses measured at a point, as demand at each line's receiving bus (MW, Mvar),
    the injections (units and shedding, per bus) of that point, and each line's lower end
    voltage there (pu; 1 for a dead line)."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    injection_mw: np.ndarray
    line_v_pu: np.ndarray

    @property
    def total_mw(self) -> float:
        return float(self.p_mw.sum())


def at_receiving_ends(nw: Network, res: PowerFlowResult, live: np.ndarray, injection_mw):
    """A solved load flow's line losses as demand at each line's receiving end."""
    recv = np.where(res.line_p_from_mw >= 0, nw.line_to, nw.line_from)
    ends = np.fmin(res.vm_pu[nw.line_from], res.vm_pu[nw.line_to])
    return Losses(
        np.bincount(recv, res.line_loss_mw, minlength=nw.n_bus) * live,
        np.bincount(recv, res.line_loss_mvar, minlength=nw.n_bus) * live,
        injection_mw,
        np.where(np.isfinite(ends) & (ends > 0), ends, 1.0),
    )


def marginal_loss_factors(nw: Network, p_mw: np.ndarray, q_mvar: np.ndarray) -> np.ndarray:
    """d(losses)/d(active injection) per bus at an operating point, by the AC load flow.

    A central difference of 1e-3 of the load (at least 1 kW) per bus; 0 at the slack and where
    the perturbed load flow has no solution.
    """
    engine = PowerFlowEngine(nw)
    delta = max(1e-3 * float(p_mw.sum()), 1e-3)
    mlf = np.zeros(nw.n_bus)
    for b in range(nw.n_bus):
        if b == nw.slack_bus:
            continue
        e = np.zeros(nw.n_bus)
        e[b] = delta
        up, down = engine.solve(p_mw - e, q_mvar), engine.solve(p_mw + e, q_mvar)
        if up.converged and down.converged:
            mlf[b] = (up.losses_mw - down.losses_mw) / (2 * delta)
    return mlf


def with_losses(data: ScenarioData, losses: Losses, slack: int, mlf: np.ndarray) -> ScenarioData:
    """The window's demand with `losses` at the receiving ends (scaled through the window with
    the square of the load), the marginal-loss reference at the substation, and line ratings
    at the measured voltages."""
    dp, dq = data.demand_p, data.demand_q
    grow = (dp.sum(axis=1) / max(dp[0].sum(), 1e-9))[:, None] ** 2
    dp = dp + grow * losses.p_mw
    dq = dq + grow * losses.q_mvar
    dp = dp.copy()
    dp[:, slack] -= mlf @ losses.injection_mw
    return ScenarioData(
        **{**data.__dict__, "demand_p": dp, "demand_q": dq, "line_v_pu": losses.line_v_pu}
    )
