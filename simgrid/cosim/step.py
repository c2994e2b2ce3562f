"""What one step of the closed loop knows, filled phase by phase and then recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simgrid.cosim.protection import Protected
from simgrid.types import SetPoints, UnitReport


@dataclass(eq=False)
class Step:
    """What one step knows, filled phase by phase (inject, schedule, dispatch or follow,
    protection and power flow, settle) and then recorded."""

    t_s: float
    is_event: bool
    ai_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    demand_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    demand_q_mvar: np.ndarray = field(default_factory=lambda: np.zeros(0))
    schedule_mw: float = 0.0
    line_in_service: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    energised: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    setpoints: SetPoints | None = None
    dispatched: bool = False
    protected: Protected | None = None
    import_mw: float = 0.0
    imbalance_mw: float = 0.0
    islanded_mw: float = 0.0
    shed_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    collapse_mw: float = 0.0
    units: UnitReport | None = None

    @property
    def unserved_mw(self) -> float:
        """Islanded + shed by the dispatcher + shed by protection + lost to collapse."""
        uvls = float(self.protected.uvls_p_mw.sum()) if self.protected is not None else 0.0
        return self.islanded_mw + float(self.shed_mw.sum()) + uvls + self.collapse_mw
