"""Write the checkpoint and episode files of the bad-input corpus (kinds `checkpoint`, `episode`).

    .venv/bin/python tests/bad_inputs/make_checkpoints.py

A long run resumes from `.OUT.nc.parts/block_NNNNN.state.nc` and a stress test reuses
`OUT/episodes/ep_NNNNNN.nc`; tests/test_bad_inputs.py plants each file below there beside a
run of its wrapper config (kind `checkpoint`: a whole block of that very run is written next to
it) and expects the command to refuse it in one line. The attributes that tie a file to a run
(`input_*`: hashes of the config and its files, package versions) are all public, so a forger
can copy them: a file with the attribute `forge_key = "yes"` gets the run's own key planted by
the test, and must still be refused for what it holds. Every file lives in a folder of its own
under the name simgrid looks for. Deterministic (byte-identical on a rerun).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import xarray as xr

from simgrid.config import NetworkConfig, parse_config
from simgrid.cosim.simulation import Loop
from simgrid.inputs import SimulationInputs
from simgrid.network import build_network
from simgrid.profiles import LoadProfile
from simgrid.runner.blocks import _state_dataset
from simgrid.types import DoNothing

HERE = Path(__file__).resolve().parent
CHECKPOINT, EPISODE = HERE / "checkpoint", HERE / "episode"
STATE, EP = "block_00000.state.nc", "ep_000000.nc"

# the wrapper config of tests/test_bad_inputs.py (case33bw, flat, no campus, no dispatch)
WRAPPER = {
    "run": {"name": "probe", "horizon_s": 600, "dt_s": 60},
    "network": {"case": "case33bw", "load_profile": "flat"},
    "upstream": {"band_mw": 0.1, "ramp_mw_per_min": 0.05},
}
OTHER_KEY = {  # the key of a run of other inputs: the same names, other values
    "input_config_sha256": "0" * 64,
    "input_version_simgrid": "0.1.0",
}


class Payload:
    """What a forged pickle would run when loaded (harmless here: simgrid never loads it)."""

    def __reduce__(self):
        return (print, ("simgrid corpus: this pickle was loaded, which simgrid must never do",))


def _state() -> xr.Dataset:
    """The wrapper run's own checkpoint after three steps, as simgrid writes it."""
    cfg = parse_config(WRAPPER, source="wrapper.toml")
    network = build_network(NetworkConfig(load_profile="flat"))
    inputs = SimulationInputs(cfg, network, LoadProfile(np.array([0.0]), np.array([1.0])))
    loop = Loop(inputs, DoNothing(network.n_bus))
    for t in (0.0, 60.0, 120.0):
        loop.step(t, False)
    loop.rest()
    attrs = {"simgrid_kind": "checkpoint", "block": 0, "t_s": 86400.0}
    return _state_dataset(loop.snapshot()).assign_attrs(attrs)


def _write(ds: xr.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")


def main() -> None:
    state = _state()
    pickled = CHECKPOINT / "pickle_payload" / STATE  # the old format, forged
    pickled.parent.mkdir(parents=True, exist_ok=True)
    pickled.write_bytes(pickle.dumps(Payload(), protocol=4))
    _write(state.assign_attrs(OTHER_KEY), CHECKPOINT / "other_inputs" / STATE)
    forged = {"forge_key": "yes"}
    blocks = state["protection.blocks"]
    _write(
        state.assign({"protection.blocks": blocks.astype(float)}).assign_attrs(forged),
        CHECKPOINT / "float_relay_blocks" / STATE,
    )
    short = xr.Variable(("protection.last_shed_s.0",), np.zeros(7))
    _write(
        state.drop_vars("protection.last_shed_s")
        .assign({"protection.last_shed_s": short})
        .assign_attrs(forged),
        CHECKPOINT / "wrong_shape" / STATE,
    )
    text = xr.Variable((), np.array("__import__('os').system('id')"))
    _write(
        state.assign({"follower.follow_mw": text}).assign_attrs(forged), CHECKPOINT / "text" / STATE
    )
    _write(
        state.assign(
            {"policy.units.e": xr.Variable(("policy.units.e.0",), np.ones(3))}
        ).assign_attrs(forged),
        CHECKPOINT / "policy_state_for_do_nothing" / STATE,
    )
    _write(
        state.drop_vars("policy.last_dispatch_s").assign_attrs(forged),
        CHECKPOINT / "missing" / STATE,
    )
    episode = xr.Dataset(
        {"unserved_energy_mwh": 1.0, "episode_status": 0},
        attrs={"simgrid_kind": "episode", "scenario_index": 0, "probability": 1.0, **OTHER_KEY},
    )
    _write(episode, EPISODE / "other_inputs" / EP)


if __name__ == "__main__":
    main()
