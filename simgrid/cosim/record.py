"""Per-step measurements, preallocated and turned into the run Dataset at the end."""

from __future__ import annotations

import numpy as np
import xarray as xr

from simgrid.cosim.step import Step
from simgrid.inputs import SimulationInputs
from simgrid.ncio import variables
from simgrid.types import SolveStatus

# name -> (dims beyond time, units, long_name)
_SERIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "is_event_step": ((), "1", "an event changed the system at this instant"),
    "ai_load_mw": ((), "MW", "total AI campus load"),
    "campus_load_mw": (("campus",), "MW", "AI campus load"),
    "demand_mw": ((), "MW", "total demand (conventional + AI) before shedding"),
    "bus_demand_mw": (("bus",), "MW", "demand at each bus (conventional + AI) before shedding"),
    "import_mw": ((), "MW", "substation import (0 after a collapse trip)"),
    "planned_import_mw": (
        (),
        "MW",
        "import the dispatcher's network model predicts for its set-points (NaN: no call)",
    ),
    "import_schedule_mw": ((), "MW", "day-ahead import schedule (no shocks, no outages)"),
    "imbalance_mw": ((), "MW", "import deviation from schedule the upstream grid cannot follow"),
    "unserved_mw": (
        (),
        "MW",
        "unserved load: islanded + dispatcher shed + protection (UVLS) shed + lost to collapse",
    ),
    "islanded_mw": ((), "MW", "unserved because cut off from the substation"),
    "shed_mw": (("bus",), "MW", "unserved because shed by the dispatcher (planned shedding)"),
    "uvls_shed_mw": (("bus",), "MW", "unserved because shed by under-voltage load shedding"),
    "collapse_mw": (
        (),
        "MW",
        "unserved because the power flow had no solution even under protection (feeder trip)",
    ),
    "injection_mw": ((), "MW", "total flexible-resource injection set-point"),
    "losses_mw": ((), "MW", "active power losses"),
    "pf_converged": ((), "1", "AC power flow solved (after protection acted)"),
    "vm_pu": (("bus",), "pu", "bus voltage magnitude (NaN when de-energised or collapsed)"),
    "planned_vm_pu": (
        ("bus",),
        "pu",
        "voltage the dispatcher's network model predicts for its set-points (NaN: no call)",
    ),
    "line_loading_percent": (("line",), "%", "line current in % of its thermal rating"),
    "line_in_service": (("line",), "1", "line switched in (not out for outage)"),
    "energised": (("bus",), "1", "bus connected to the substation"),
    "dispatch_status": (
        (),
        "1",
        "dispatch outcome: 0 optimal, 1 feasible (time limit), "
        "2 fallback held last plan, 3 fallback emergency shed, 4 no dispatch",
    ),
    "dispatch_solve_s": ((), "s", "wall time of the dispatch decision at this step"),
}
_UNIT_SERIES: dict[str, tuple[str, str]] = {
    "fcm_p_mw": ("MW", "flexible unit power (generation-positive; storage: discharge - charge)"),
    "soc_mwh": ("MWh", "stored energy (NaN for non-storage units)"),
    "unit_on": ("1", "unit committed / active"),
    "dr_curtail_mw": ("MW", "demand-response curtailment"),
}
_BOOLS = {"is_event_step", "pf_converged", "line_in_service", "energised"}


class Recorder:
    """Fills preallocated arrays step by step; `to_dataset` trims them to the steps taken."""

    def __init__(
        self, inputs: SimulationInputs, capacity: int, unit_names: tuple[str, ...] = ()
    ) -> None:
        self.inputs = inputs
        nw = inputs.network
        size = {"campus": len(inputs.config.campuses), "bus": nw.n_bus, "line": nw.n_line}
        self.t = np.empty(capacity)
        self.data = {
            name: np.zeros(
                (capacity, *(size[d] for d in dims)), dtype=bool if name in _BOOLS else float
            )
            for name, (dims, _, _) in _SERIES.items()
        }
        self.unit_names = unit_names
        self.units = {name: np.zeros((capacity, len(unit_names))) for name in _UNIT_SERIES}
        self.n = 0

    def record(self, s: Step) -> None:
        k, d = self.n, self.data
        sp, pf = s.setpoints, s.protected.pf
        self.t[k] = s.t_s
        d["is_event_step"][k] = s.is_event
        d["ai_load_mw"][k] = s.ai_p_mw.sum()
        d["campus_load_mw"][k] = s.ai_p_mw
        d["demand_mw"][k] = s.demand_p_mw.sum()
        d["bus_demand_mw"][k] = s.demand_p_mw
        d["import_mw"][k] = s.import_mw
        d["planned_import_mw"][k] = sp.planned_import_mw if s.dispatched else np.nan
        d["import_schedule_mw"][k] = s.schedule_mw
        d["imbalance_mw"][k] = s.imbalance_mw
        d["unserved_mw"][k] = s.unserved_mw
        d["islanded_mw"][k] = s.islanded_mw
        d["shed_mw"][k] = s.shed_mw
        d["uvls_shed_mw"][k] = s.protected.uvls_p_mw
        d["collapse_mw"][k] = s.collapse_mw
        d["injection_mw"][k] = sp.p_injection_mw.sum()
        d["losses_mw"][k] = pf.losses_mw
        d["pf_converged"][k] = not s.protected.collapsed
        d["vm_pu"][k] = pf.vm_pu
        planned = sp.planned_vm_pu if s.dispatched else None
        d["planned_vm_pu"][k] = np.nan if planned is None else planned
        d["line_loading_percent"][k] = pf.line_loading_percent
        d["line_in_service"][k] = s.line_in_service
        d["energised"][k] = s.energised
        d["dispatch_status"][k] = sp.status if s.dispatched else SolveStatus.IDLE
        d["dispatch_solve_s"][k] = sp.solve_s if s.dispatched else 0.0
        if s.units is not None:
            self.units["fcm_p_mw"][k] = s.units.p_mw
            self.units["soc_mwh"][k] = s.units.soc_mwh
            self.units["unit_on"][k] = s.units.on
            self.units["dr_curtail_mw"][k] = s.units.dr_curtail_mw
        self.n += 1

    def clear(self) -> None:
        """Start a new block: the arrays are reused."""
        self.n = 0

    def to_dataset(self) -> xr.Dataset:
        cfg, nw = self.inputs.config, self.inputs.network
        n = self.n
        data_vars = {}
        for name, (dims, units, long_name) in _SERIES.items():
            row = (self.data[name][:n].copy(), units, long_name)
            data_vars.update(variables(("time", *dims), {name: row}))
        if self.unit_names:
            rows = {k: (self.units[k][:n].copy(), *about) for k, about in _UNIT_SERIES.items()}
            data_vars.update(variables(("time", "unit"), rows))
        events = cfg.events
        ev = {
            "event_kind": (np.array([e.kind.value for e in events], dtype=str), "1", "event kind"),
            "event_start_s": (np.array([e.start_s for e in events]), "s", "event onset"),
            "event_end_s": (
                np.array([e.end_s for e in events]),
                "s",
                "end of the disturbance (inf: lasts past the horizon)",
            ),
            "event_campus": (
                np.array([e.campus or "" for e in events], dtype=str),
                "1",
                "campus hit by the event ('' for a line outage)",
            ),
            "event_line": (
                np.array([-1 if e.line is None else e.line for e in events]),
                "1",
                "line taken out (-1 for an AI event)",
            ),
            "event_magnitude_mw": (
                np.array([e.magnitude_mw for e in events]),
                "MW",
                "ramp / surge size or oscillation amplitude",
            ),
            "event_fraction": (
                np.array([e.fraction for e in events]),
                "1",
                "fraction of campus load lost in a trip",
            ),
        }
        data_vars.update(variables("event", ev))
        statics = {
            "bus_vn_kv": (("bus",), nw.vn_kv, "kV", "bus nominal voltage"),
            "bus_load_mw": (("bus",), nw.base_load_p_mw, "MW", "nominal conventional load"),
            "line_from_bus": (("line",), nw.bus_index[nw.line_from], "1", "line from bus"),
            "line_to_bus": (("line",), nw.bus_index[nw.line_to], "1", "line to bus"),
            "line_max_i_ka": (("line",), nw.line_max_i_ka, "kA", "line thermal rating"),
            "campus_bus": (
                ("campus",),
                np.array([c.bus for c in cfg.campuses], dtype=int),
                "1",
                "bus of the AI campus",
            ),
            "campus_p_nom_mw": (
                ("campus",),
                np.array([c.p_nom_mw for c in cfg.campuses]),
                "MW",
                "AI campus nameplate",
            ),
        }
        for name, (dims, *row) in statics.items():
            data_vars.update(variables(dims, {name: row}))
        coords = {
            "time": (
                "time",
                self.t[:n].copy(),
                {"units": "s", "long_name": "seconds since the start of the run"},
            ),
            "bus": ("bus", nw.bus_index, {"long_name": "pandapower bus index (0-based)"}),
            "line": ("line", np.arange(nw.n_line), {"long_name": "pandapower line index"}),
            "campus": (
                "campus",
                np.array([c.name for c in cfg.campuses], dtype=str),
                {"long_name": "AI campus name"},
            ),
            "event": ("event", np.arange(len(events)), {"long_name": "event number in config"}),
            **(
                {
                    "unit": (
                        "unit",
                        np.array(self.unit_names, dtype=str),
                        {"long_name": "flexible unit (module@bus)"},
                    )
                }
                if self.unit_names
                else {}
            ),
        }
        return xr.Dataset(data_vars, coords=coords)
