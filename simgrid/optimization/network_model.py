"""The seam between the dispatch model and the network: what any linear network model offers
both stages (Stage-I's recourse, Stage-II's windows), and the choice of one for a network.

LinDistFlow (lindistflow.py) models a radial feeder; linearised AC (linear_ac.py) a meshed
grid, around the measured state. `network_model` chooses by topology unless the config says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from simgrid.network import Network
from simgrid.optimization.blocks import BusData, ImportHandles, ScenarioData, ShedHandles, Weights
from simgrid.optimization.builder import Term
from simgrid.optimization.lindistflow import (
    LinDistFlow,
    Losses,
    Sensitivity,
    marginal_loss_factors,
)
from simgrid.optimization.linear_ac import LinearAC
from simgrid.powerflow import PowerFlowResult
from simgrid.types import Campus


class NetworkModel(Protocol):
    """A linear network model: its buses, its block, the bus balances, what it predicts, and
    how it takes the losses of an AC load flow in."""

    buses: BusData
    # True: a window's matrix is the same call after call (only bounds change: a persistent
    # solver updates them); False: it is rebuilt (its coefficients follow the point)
    fixed_matrix: bool

    def define(self, b, d: ScenarioData, wt: Weights, disc: np.ndarray) -> tuple[Any, list[Term]]:
        """The network's columns and rows for a window; its handles and cost terms."""
        ...

    def balance(
        self,
        b,
        d: ScenarioData,
        handles: Any,
        shed: ShedHandles,
        imports: ImportHandles,
        injections: Sequence[tuple[np.ndarray, np.ndarray, float]],
    ) -> None:
        """Per bus and period: the network's flows, import, shedding and the units'
        injections = demand."""
        ...

    def planned_vm(self, x: np.ndarray, handles: Any, energised: np.ndarray) -> np.ndarray:
        """The voltages (pu) it predicts in period 0 of a solved window."""
        ...

    def planned_flows_mw(self, x: np.ndarray, handles: Any) -> np.ndarray:
        """The active power on each line it predicts in period 0 of a solved window."""
        ...

    def losses(
        self, res: PowerFlowResult, live: np.ndarray, injection_mw, injection_mvar=None
    ) -> Any:
        """The losses of an AC load flow at a point (and the decisions' injections there), as
        the model takes them in."""
        ...

    def monitor(self, x: np.ndarray, handles: Any, data: ScenarioData) -> bool:
        """After a solve: whether the plan breaks a limit the window did not model (then the
        model now does, and the window is solved again)."""
        ...

    def with_losses(self, data: ScenarioData, losses: Losses) -> ScenarioData:
        """A window's data with the measured losses."""
        ...

    def expected_losses_mw(self, losses: Losses, injection_mw: np.ndarray) -> float:
        """The losses the model expects at other injections than those measured."""
        ...

    def sensitivity(self, line_in_service: np.ndarray) -> Sensitivity:
        """How bus voltages and line flows move with injections (for the real-time layer's
        limits between calls)."""
        ...


def network_model(
    nw: Network,
    max_loading_percent: float,
    campuses: Sequence[Campus] = (),
    loss_point: tuple[np.ndarray, np.ndarray] | None = None,
    kind: str = "auto",
) -> NetworkModel:
    """The model of a network: `kind` "lindistflow", "linear_ac", or "auto" (LinDistFlow for
    a radial network, linearised AC for a meshed one). LinDistFlow's marginal loss factors are
    taken at `loss_point` (per-bus demand P, Q; None: none)."""
    if kind == "linear_ac" or (kind == "auto" and meshed(nw)):
        return LinearAC.of(nw, max_loading_percent, campuses)
    mlf = None if loss_point is None else marginal_loss_factors(nw, *loss_point)
    return LinDistFlow.of(nw, max_loading_percent, campuses, mlf)


def meshed(nw: Network) -> bool:
    """The branches in service (lines, transformers) close a loop among the energised buses."""
    live = nw.energised(nw.line_in_service)
    lines = int((nw.line_in_service & live[nw.line_from] & live[nw.line_to]).sum())
    trafos = len(nw._trafo_from)
    return lines + trafos > int(live.sum()) - 1
