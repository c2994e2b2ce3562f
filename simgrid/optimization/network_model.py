"""The seam between the dispatch model and the network: what any linear network model offers
both stages (Stage-I's recourse, Stage-II's windows), and the choice of one for a network.

LinDistFlow (lindistflow.py) models a radial feeder. A model for meshed transmission grids
(linearised AC around the measured state) plugs in here: it implements the protocol, and
`network_model` chooses it by topology.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from simgrid.network import Network
from simgrid.optimization.blocks import BusData, ImportHandles, ScenarioData, ShedHandles, Weights
from simgrid.optimization.builder import Term
from simgrid.optimization.lindistflow import LinDistFlow, Losses, Sensitivity
from simgrid.powerflow import PowerFlowResult
from simgrid.types import Campus


class NetworkModel(Protocol):
    """A linear network model: its buses, its block, the bus balances, what it predicts, and
    how it takes the losses of an AC load flow in."""

    buses: BusData

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

    def losses(self, res: PowerFlowResult, live: np.ndarray, injection_mw) -> Losses:
        """The losses of an AC load flow at a point, as the model takes them in."""
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
    mlf: np.ndarray | None = None,
) -> NetworkModel:
    """The model of a network (LinDistFlow: every network simgrid models today)."""
    return LinDistFlow.of(nw, max_loading_percent, campuses, mlf)
