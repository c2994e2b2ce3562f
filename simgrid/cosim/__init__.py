"""Co-simulation layer: the simpy clock, event processes and the closed loop (simpy lives here only)."""

from simgrid.cosim.simulation import SimulationInputs, simulate

__all__ = ["SimulationInputs", "simulate"]
