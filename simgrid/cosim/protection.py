"""The plant's protection around the AC power flow: under-voltage load shedding or a feeder trip.

Under-voltage load shedding (UVLS) acts as distributed definite-time relays do: every bus whose
voltage stays below the pick-up level for the relay delay sheds a block (a fraction of its
load); blocks are shed at the weakest buses until the power flow solves and every voltage is
back above the pick-up. When the power flow has no solution (voltage collapse in progress),
the relays at the buses that were weakest at the last solved state act. Shed blocks stay off
(latched) and are reconnected one per bus and step after a restoration delay, when a trial
power flow with the block back keeps every voltage at or above the restoration level (the
delay counts from the bus's last shedding; then one block comes back per step).

With `feeder_trip`, a power flow without a solution opens the feeder breaker for that step:
all load is lost (the behaviour before UVLS, kept as an option).

The relay delay is compared with the time the low voltage will have lasted by the end of the
step (the state at a step holds until the next one): at QSTS resolution (60 s) a low voltage
at a step is a pick-up within that step, and the step records the state after the relays act.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.config import ProtectionConfig, ProtectionMode
from simgrid.errors import ConfigError
from simgrid.powerflow import PowerFlowEngine, PowerFlowResult, net_demand
from simgrid.types import Snapshot

_MAX_ROUNDS = 200  # shedding rounds per step; each sheds at least one block
_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class Protected:
    """The power flow of a step after protection acted.

    `uvls_p_mw` / `uvls_q_mvar`: load shed by UVLS per bus (latched blocks included);
    `shed_p_mw`: the dispatcher's shedding as applied (never more than the load left);
    `collapsed`: no solution even after protection (all load counts as lost this step);
    `net_p_mw` / `net_q_mvar`: what each bus drew in the solved step (`net_demand`).
    """

    pf: PowerFlowResult
    uvls_p_mw: np.ndarray
    uvls_q_mvar: np.ndarray
    shed_p_mw: np.ndarray
    collapsed: bool
    net_p_mw: np.ndarray  # per bus: what was solved (`net_demand`)
    net_q_mvar: np.ndarray


class Protection:
    """Wraps the power-flow engine with the plant's protection; keeps the relays' state."""

    def __init__(self, cfg: ProtectionConfig, engine: PowerFlowEngine, hold_s: float) -> None:
        self.cfg, self.engine = cfg, engine
        self.hold_s = hold_s  # how long a step's state holds (the base grid step)
        n = engine.network.n_bus
        self.blocks = np.zeros(n, dtype=int)  # latched UVLS blocks per bus
        self.last_shed_s = np.full(n, -np.inf)  # last shedding at the bus (restoration delay)
        self.below_since_s = np.full(n, np.nan)  # relay timers
        self._last_vm: np.ndarray | None = None

    def snapshot(self) -> Snapshot:
        """The relays' state: latched blocks, last shedding, timers, last solved voltages."""
        return Snapshot.join(
            blocks=self.blocks,
            last_shed_s=self.last_shed_s,
            below_since_s=self.below_since_s,
            last_vm=self._last_vm,
        )

    def restore(self, snap: Snapshot) -> None:
        self.blocks = snap.like("blocks", self.blocks)
        if np.any(self.blocks < 0):
            raise ConfigError(
                snap.source, snap.prefix + "blocks", int(self.blocks.min()), "must be >= 0"
            )
        self.last_shed_s = snap.like("last_shed_s", self.last_shed_s)
        self.below_since_s = snap.like("below_since_s", self.below_since_s)
        has_vm = "last_vm" in snap.arrays
        self._last_vm = snap.like("last_vm", self.last_shed_s) if has_vm else None

    @property
    def shed_fraction(self) -> np.ndarray:
        """Per bus, the fraction of its load the latched blocks disconnect."""
        return self._fraction(self.blocks)

    def _fraction(self, blocks: np.ndarray) -> np.ndarray:
        return np.minimum(blocks * self.cfg.uvls_block_fraction, 1.0)

    def solve(
        self,
        t_s: float,
        load_p_mw: np.ndarray,
        load_q_mvar: np.ndarray,
        shed_p_mw: np.ndarray,
        shed_q_mvar: np.ndarray,
        inj_p_mw: np.ndarray,
        inj_q_mvar: np.ndarray,
    ) -> Protected:
        """Solve the step for the buses' loads, the dispatcher's shedding and the injections.

        Protection disconnects a fraction of each bus's load; the dispatcher's shedding acts
        on what is left (it saw the disconnected fraction and planned for the rest).
        """
        loads = (load_p_mw, load_q_mvar, shed_p_mw, shed_q_mvar, inj_p_mw, inj_q_mvar)
        if self.cfg.mode is ProtectionMode.FEEDER_TRIP:
            pf = self._solve(self.blocks, *loads)
            return self._result(pf, *loads)
        self._restore(t_s, *loads)
        pf = self._solve(self.blocks, *loads)
        for _ in range(_MAX_ROUNDS):
            low = self._low_buses(t_s, pf, load_p_mw)
            if low is None:
                break
            self.blocks[low] += 1
            self.last_shed_s[low] = t_s
            pf = self._solve(self.blocks, *loads)
        if pf.converged:
            self._last_vm = pf.vm_pu
            self.below_since_s[~(pf.vm_pu < self.cfg.uvls_pickup_pu)] = np.nan
        return self._result(pf, *loads)

    def _solve(self, blocks, *loads) -> PowerFlowResult:
        return self.engine.solve(*self._net(blocks, *loads))

    def _net(self, blocks, load_p, load_q, shed_p, shed_q, inj_p, inj_q):
        keep = 1.0 - self._fraction(blocks)
        return net_demand(load_p, load_q, keep, shed_p, shed_q, inj_p, inj_q)

    def _result(self, pf, *loads) -> Protected:
        f = self.shed_fraction
        load_p, load_q, shed_p = loads[:3]
        shed = np.minimum(shed_p, load_p * (1.0 - f))
        net_p, net_q = self._net(self.blocks, *loads)
        return Protected(pf, load_p * f, load_q * f, shed, not pf.converged, net_p, net_q)

    def _low_buses(self, t_s: float, pf: PowerFlowResult, load_p: np.ndarray) -> np.ndarray | None:
        """Buses whose relays trip now (None: nothing left to do or nobody may act yet)."""
        sheddable = (load_p > _EPS) & (self.shed_fraction < 1.0) & self.engine.energised
        pickup = self.cfg.uvls_pickup_pu
        if pf.converged:
            low = np.nan_to_num(pf.vm_pu, nan=np.inf) < pickup
            if not low.any():
                return None
        elif self._last_vm is not None:
            # collapse in progress: the relays see every voltage fall; the weakest act first
            vm = np.where(sheddable, np.nan_to_num(self._last_vm, nan=np.inf), np.inf)
            low = vm < pickup
            if not low.any() and np.isfinite(vm).any():
                low = vm <= vm.min()
        else:
            low = np.ones_like(sheddable)
        timing = np.isnan(self.below_since_s) & low
        self.below_since_s[timing] = t_s
        # the low voltage lasts until the next step: the relay acts if its delay ends by then
        due = low & (t_s + self.hold_s - self.below_since_s >= self.cfg.uvls_delay_s - _EPS)
        act = np.flatnonzero(due & sheddable)
        return act if act.size else None

    def _restore(self, t_s, *loads) -> None:
        """Reconnect one block per bus whose delay has passed, if voltages stay healthy."""
        waiting = (self.blocks > 0) & (t_s - self.last_shed_s >= self.cfg.restore_delay_s)
        for b in np.flatnonzero(waiting):
            trial = self.blocks.copy()
            # a bus fully shed by blocks that overshoot 100 % comes back from 100 %
            trial[b] = min(trial[b], int(np.ceil(1.0 / self.cfg.uvls_block_fraction - 1e-9))) - 1
            pf = self._solve(trial, *loads)
            if pf.converged and np.nanmin(pf.vm_pu, initial=np.inf) >= self.cfg.restore_pu:
                self.blocks = trial
