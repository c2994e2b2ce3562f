"""A config's built inputs: its network, checked, and the load profiles -- what a closed-loop
run simulates on and what the Stage-I planner plans on, built in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from simgrid.config import RunConfig
from simgrid.errors import ConfigError
from simgrid.network import Network, build_network, check_placement
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile, campus_profile, load_profile
from simgrid.scenarios.scenarioset import check_scenario_network


class Plant(Protocol):
    """How the simulator builds the plant of a run: its AC power flow (one engine per role:
    the plant's, the import schedule's) and its protection around the plant's engine."""

    def engine(self, network: Network) -> PowerFlowEngine: ...

    def protection(self, cfg: RunConfig, engine: PowerFlowEngine) -> Any: ...


@dataclass(frozen=True, eq=False)
class SimulationInputs:
    """Everything the loop needs, already validated and built. `plant`: how the plant is
    built (None: the simulator's standard plant, cosim.simulation.StandardPlant)."""

    config: RunConfig
    network: Network
    profile: LoadProfile
    campus_profiles: tuple[LoadProfile, ...] = ()  # one per campus (read from the config if empty)
    plant: Plant | None = None


def prepare(cfg: RunConfig) -> SimulationInputs:
    """Build everything a run needs from its config (validates placements too)."""
    network = build_network(cfg.network, cfg.source)
    check_engine_base_case(network, cfg)
    check_scenario_network(cfg, network)
    placed_by = cfg.scenario.file if cfg.scenario else cfg.source
    check_placement(placed_by, cfg.campuses, cfg.events, network)
    profile = load_profile(cfg.network.load_profile, cfg.network.load_profile_file, cfg.source)
    campus_profiles = tuple(campus_profile(c, cfg.source) for c in cfg.campuses)
    return SimulationInputs(cfg, network, profile, campus_profiles)


def check_engine_base_case(network: Network, cfg: RunConfig) -> None:
    """The simulator's own engine must solve the base case too (it works in float32
    injections: absurd scales that pandapower still solves can fail here)."""
    res = PowerFlowEngine(network).solve(network.base_load_p_mw, network.base_load_q_mvar)
    if not res.converged:
        key = "network.file" if cfg.network.file else "network.case"
        value = str(cfg.network.file or cfg.network.case)
        raise ConfigError(
            cfg.source,
            key,
            value,
            f"the base case power flow of {network.name} has no solution in the simulator "
            f"({network.base_load_p_mw.sum():.6g} MW, loads x {network.scale:.6g}): check "
            "network.scale_to_peak_mw and the units of the network's loads",
        )
