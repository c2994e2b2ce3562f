"""Co-simulation layer: simpy clock, event processes, closed loop (the only simpy user)."""

from simgrid.cosim.simulation import simulate

__all__ = ["simulate"]
