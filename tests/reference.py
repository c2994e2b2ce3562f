"""Independent references the tests check simgrid against: closed forms and the dispatch model's
own network equations solved on their own. Test code, not part of simgrid."""

from __future__ import annotations

import numpy as np

from simgrid.network import Network
from simgrid.optimization.blocks import ModelOptions, ScenarioData, Weights
from simgrid.optimization.builder import ArrayBuilder
from simgrid.optimization.dispatch_model import (
    Sizes,
    assemble,
    idle_state,
    unit_data,
)
from simgrid.optimization.lindistflow import LinDistFlow, at_receiving_ends
from simgrid.optimization.solve import solve
from simgrid.powerflow import PowerFlowEngine

INF_MW = 1e9


def tv_worst_expectation(g: np.ndarray, p: np.ndarray, gamma: float) -> float:
    """sup of E_P[g] over 1/2 ||P - p||_1 <= gamma: gamma max g + (1 - gamma) CVaR_gamma,p(g)
    (Jiang & Guan 2018): mass gamma moves from the lowest outcomes to the highest."""
    order = np.argsort(-g)
    left, tail = 1.0 - gamma, 0.0
    for s in order:
        take = min(p[s], left)
        if take <= 0:
            break
        tail += take * g[s]
        left -= take
    return gamma * float(g.max()) + tail


def lindistflow_vm(
    network: Network,
    demand_p_mw: np.ndarray,
    demand_q_mvar: np.ndarray,
    line_in_service: np.ndarray | None = None,
    *,
    with_losses_of_ac: bool = False,
) -> np.ndarray:
    """|V| (pu) of the dispatch model's network equations for one period, no units, no shed.

    Solves the same LinDistFlow rows the MILP uses (an LP whose only freedom is the violation
    slacks), for validating the linearisation against the AC power flow. With
    `with_losses_of_ac`, the AC losses at this point enter as demand at each line's receiving
    end, as the dispatcher does.
    """
    status = network.line_in_service if line_in_service is None else line_in_service
    live = network.energised(status)
    p, q = demand_p_mw * live, demand_q_mvar * live
    if with_losses_of_ac:
        engine = PowerFlowEngine(network)
        engine.set_line_status(status)
        res = engine.solve(p, q)
        losses = at_receiving_ends(network, res, live, np.zeros(network.n_bus))
        p, q = p + losses.p_mw, q + losses.q_mvar
    data = ScenarioData(
        dt_h=1.0,
        demand_p=p[None],
        demand_q=q[None],
        conv_p=np.zeros((1, network.n_bus)),
        ai_p=np.zeros((1, 0)),
        energised=live[None],
        line_active=(status & live[network.line_from] & live[network.line_to])[None],
        schedule=np.zeros(1),
        band=INF_MW,
        ramp=INF_MW,
        v2_min=0.0,
        v2_max=4.0,
    )
    units = unit_data((), (), 300.0, 1)
    b = ArrayBuilder()
    hd, cost = assemble(
        b,
        LinDistFlow.of(network, 1e6),
        units,
        Sizes.fixed(units),
        data,
        idle_state(units, data),
        Weights(1e4, 0.0, 0.0, 0.0),
        ModelOptions(),
    )
    b.add_cost(cost)
    res = solve(b.build(), time_limit_s=60.0, mip_gap=0.0)
    v2 = res.x[hd.network.v2[0]]
    return np.where(live, np.sqrt(np.maximum(v2, 0.0)), np.nan)
