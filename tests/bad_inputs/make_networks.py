"""Write the pandapower .json networks of the bad-input corpus (kind `network`).

    .venv/bin/python tests/bad_inputs/make_networks.py

Each is a three-bus 11 kV feeder (an external grid, two lines, two loads; bus 2 exists, where
the test's wrapper spec puts its campus) built with pandapower and damaged before it is written
(`compact_json`: a few kB); planted_module.json names a module for pandapower to import; one
more is a MATLAB .mat file without a case in it. MANIFEST.toml lists the cases and the message
each must give. The MATPOWER cases of the corpus are text copies of
tests/data/matpower/case33bw.m with one mistake each, or short hand-written files (matrix
bombs, a file that is no case), and need no script.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandapower as pp

NETWORK = Path(__file__).resolve().parent / "network"


def feeder(load_mw: float = 1.0, load_mvar: float = 0.2):
    """A sound radial 11 kV feeder: an external grid at bus 0, 2 km lines 0-1 and 1-2, half
    the load at bus 1 and half at bus 2."""
    net = pp.create_empty_network(name="feeder", f_hz=50.0)
    buses = [pp.create_bus(net, vn_kv=11.0, name=f"bus {i}") for i in range(3)]
    pp.create_ext_grid(net, buses[0], vm_pu=1.0)
    for a, b in zip(buses[:-1], buses[1:], strict=True):
        pp.create_line(net, a, b, length_km=2.0, std_type="NA2XS2Y 1x240 RM/25 12/20 kV")
        pp.create_load(net, b, p_mw=load_mw / 2, q_mvar=load_mvar / 2)
    return net


def gw_load():
    """18 GW on an 11 kV feeder: loads entered in kW where pandapower wants MW."""
    return feeder(load_mw=18000.0, load_mvar=3600.0)


def no_ext_grid():
    """The substation forgotten: no slack."""
    net = feeder()
    net.ext_grid = net.ext_grid.iloc[0:0]
    return net


def line_to_missing_bus():
    """A hand-edited table: the line ends at a bus the net does not have."""
    net = feeder()
    net.line.loc[1, "to_bus"] = 7
    return net


def load_at_missing_bus():
    """A hand-edited table: the load sits at a bus the net does not have."""
    net = feeder()
    net.load.loc[1, "bus"] = 7
    return net


def zero_length_line():
    """A bus coupler or switch drawn as a line of length 0 (zero impedance)."""
    net = feeder()
    net.line.loc[1, "length_km"] = 0.0
    return net


def nan_impedance():
    """A line whose resistance was lost on export (NaN)."""
    net = feeder()
    net.line.loc[0, "r_ohm_per_km"] = float("nan")
    return net


def compact_json(net) -> str:
    """`pandapower.to_json` without the standard-type library and the empty element tables
    (about 100 kB of a two-bus net): `pandapower.from_json` recreates both."""
    for kind in net.std_types:
        net.std_types[kind] = {}
    doc = json.loads(pp.to_json(net))
    doc["_object"] = {
        name: table
        for name, table in doc["_object"].items()
        if not (
            isinstance(table, dict)
            and table.get("_class") == "DataFrame"
            and not json.loads(table["_object"]).get("data")
        )
    }
    return json.dumps(doc, indent=1)


CASES = {
    "gw_load": gw_load,
    "no_ext_grid": no_ext_grid,
    "line_to_missing_bus": line_to_missing_bus,
    "load_at_missing_bus": load_at_missing_bus,
    "nan_impedance": nan_impedance,
    "zero_length_line": zero_length_line,
}

# A module name no installed package has: pandapower's from_json imports whatever module an
# object names, before its own checks, so a file of this name next to the network (the current
# folder is on sys.path under `python -m`) would run.
PLANTED_MODULE = "simgrid_planted_module"


def planted_module() -> str:
    """The sound feeder with one load's name replaced by an object of PLANTED_MODULE.

    The object sits inside the load table, which pandapower keeps as a JSON string and decodes
    with the hook that imports `_module`: a check must look inside such strings too.
    """
    doc = json.loads(compact_json(feeder()))
    table = json.loads(doc["_object"]["load"]["_object"])
    name = table["columns"].index("name")
    table["data"][0][name] = {"_module": PLANTED_MODULE, "_class": "Payload", "_object": "{}"}
    doc["_object"]["load"]["_object"] = json.dumps(table)
    return json.dumps(doc, indent=1)


# Cases written as JSON text (damaged after pandapower wrote them).
JSON_CASES = {"planted_module": planted_module}


def mat_without_case(path: Path) -> None:
    """A MATLAB file holding other variables than a MATPOWER case `mpc` (the header's creation
    time fixed, so the file is the same on every run)."""
    import numpy as np
    from scipy.io import savemat

    savemat(path, {"bus": np.arange(3.0), "load_mw": np.array([0.5, 0.5])})
    data = bytearray(path.read_bytes())
    data[:116] = b"MATLAB 5.0 MAT-file, written by make_networks.py".ljust(116)
    path.write_bytes(bytes(data))


if __name__ == "__main__":
    NETWORK.mkdir(exist_ok=True)
    for name, make in CASES.items():
        path = NETWORK / f"{name}.json"
        path.write_text(compact_json(make()))
        print(f"{path}: {path.stat().st_size:,} bytes")
    for name, write in JSON_CASES.items():
        path = NETWORK / f"{name}.json"
        path.write_text(write())
        print(f"{path}: {path.stat().st_size:,} bytes")
    path = NETWORK / "mat_without_case.mat"
    mat_without_case(path)
    print(f"{path}: {path.stat().st_size:,} bytes")
