"""Network and AC power flow against Baran & Wu, pandapower's runpp, and the scaling identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simgrid.config import NetworkConfig
from simgrid.network import build_network
from simgrid.powerflow import PowerFlowEngine, per_bus_load_net, runpp_reference

from conftest import network

# Baran & Wu (1989) base case, REFERENCE.md: losses 202.68 kW, V_min 0.91309 pu at bus 18
# (index 17), slack 3.9177 MW / 2.4351 Mvar.
LOSSES_KW, LOSSES_TOL_KW = 202.68, 0.01
VMIN_PU, VMIN_TOL_PU = 0.91309, 1e-5
SLACK_MW, SLACK_MVAR, SLACK_TOL = 3.9177, 2.4351, 1e-4
RUNPP_TOL_PU = 1e-6


def _base_case(nw):
    return PowerFlowEngine(nw).solve(nw.base_load_p_mw, nw.base_load_q_mvar)


def test_baran_wu_base_case():
    nw = network()
    res = _base_case(nw)
    assert res.converged
    assert abs(res.losses_mw * 1e3 - LOSSES_KW) < LOSSES_TOL_KW
    assert abs(np.nanmin(res.vm_pu) - VMIN_PU) < VMIN_TOL_PU
    assert int(np.nanargmin(res.vm_pu)) == 17
    assert abs(res.import_mw - SLACK_MW) < SLACK_TOL
    assert abs(res.import_mvar - SLACK_MVAR) < SLACK_TOL
    assert nw.n_bus == 33 and nw.n_line == 37 and nw.line_in_service.sum() == 32


@pytest.mark.parametrize("peak_mw", [37.15, 2000.0])
def test_scaled_feeder_is_the_same_in_per_unit(peak_mw):
    base, scaled = network(), network(peak_mw)
    k = peak_mw / 3.715
    assert scaled.scale == pytest.approx(k)
    r0, r1 = _base_case(base), _base_case(scaled)
    assert r1.converged
    # float32 injections in the solver: per-unit identity to ~1e-8
    np.testing.assert_allclose(r1.vm_pu, r0.vm_pu, atol=1e-7)
    assert r1.losses_mw == pytest.approx(k * LOSSES_KW / 1e3, rel=1e-4)
    assert abs(np.nanmin(r1.vm_pu) - VMIN_PU) < VMIN_TOL_PU
    np.testing.assert_allclose(r1.line_loading_percent, r0.line_loading_percent, atol=1e-3)


def test_engine_matches_runpp_on_perturbed_steps():
    nw = network()
    engine = PowerFlowEngine(nw)
    rng = np.random.default_rng(7)
    for _ in range(5):
        f = rng.uniform(0.5, 1.3, nw.n_bus)
        p, q = nw.base_load_p_mw * f, nw.base_load_q_mvar * f
        mine, ref = engine.solve(p, q), runpp_reference(nw, p, q)
        assert np.max(np.abs(mine.vm_pu - ref.vm_pu)) < RUNPP_TOL_PU
        assert mine.import_mw == pytest.approx(ref.import_mw, abs=1e-5)
        np.testing.assert_allclose(mine.line_loading_percent, ref.line_loading_percent, atol=1e-3)


def test_line_outage_islands_downstream_buses():
    nw = network()
    engine = PowerFlowEngine(nw)
    status = nw.line_in_service.copy()
    status[27] = False  # line 27 -> 28 on the lateral 25..32
    engine.set_line_status(status)
    dead = set(np.flatnonzero(~engine.energised))
    assert dead == {28, 29, 30, 31, 32}
    p = nw.base_load_p_mw * engine.energised
    q = nw.base_load_q_mvar * engine.energised
    res = engine.solve(p, q)
    assert res.converged
    assert np.isnan(res.vm_pu[sorted(dead)]).all()
    ref = runpp_reference(nw, p, q, status)
    live = engine.energised
    assert np.max(np.abs(res.vm_pu[live] - ref.vm_pu[live])) < RUNPP_TOL_PU
    # repair restores the base case
    engine.set_line_status(nw.line_in_service)
    assert engine.energised.all()
    assert _base_case(nw).losses_mw == pytest.approx(
        engine.solve(nw.base_load_p_mw, nw.base_load_q_mvar).losses_mw, abs=1e-7
    )


def test_tie_line_closing_keeps_everyone_energised():
    nw = network()
    status = nw.line_in_service.copy()
    status[27] = False
    status[36] = True  # tie line 24 -> 28 re-feeds the lateral
    assert nw.energised(status).all()


def test_unrated_lines_get_margin_times_base_current_floored_at_the_median():
    nw = network()
    res = _base_case(nw)
    live = nw.line_in_service
    assert nw.line_rated_by_margin.all()
    loading = res.line_loading_percent[live]
    # lines at or above the median current sit at 1 / margin = 50 %, the others below
    assert np.sum(np.isclose(loading, 50.0, atol=1e-3)) == int(np.ceil(live.sum() / 2))
    assert loading.max() == pytest.approx(50.0, abs=1e-3) and loading.min() < 50.0


def _write_matpower_m(mpc: dict, path) -> None:
    """A MATPOWER version-2 .m case file from a pandapower-made mpc dict."""

    def matrix(a) -> str:
        return "\n".join("\t" + "\t".join(repr(float(x)) for x in row) + ";" for row in a)

    path.write_text(
        f"function mpc = {path.stem}\nmpc.version = '2';\nmpc.baseMVA = {mpc['baseMVA']};\n"
        + "".join(
            f"mpc.{k} = [\n{matrix(mpc[k][:, :ncol])}\n];\n"
            for k, ncol in (("bus", 13), ("gen", 21), ("branch", 13))  # the standard columns
        )
    )


def test_json_and_matpower_files_load(tmp_path):
    import pandapower as pp
    import pandapower.networks as pn
    from pandapower.converter.matpower.to_mpc import to_mpc

    net = pn.case33bw()
    js = tmp_path / "feeder.json"
    pp.to_json(net, str(js))
    mat = tmp_path / "feeder.mat"
    mpc = to_mpc(net, str(mat), init="flat")["mpc"]
    m = tmp_path / "feeder_m.m"
    _write_matpower_m(mpc, m)
    for path in (js, mat, m):
        nw = build_network(NetworkConfig(case=None, file=path))
        res = _base_case(nw)
        assert abs(res.losses_mw * 1e3 - LOSSES_KW) < LOSSES_TOL_KW, path.suffix
        assert abs(np.nanmin(res.vm_pu) - VMIN_PU) < VMIN_TOL_PU, path.suffix


MATPOWER = Path(__file__).parent / "data" / "matpower"


def matpower_network(case: str):
    cfg = NetworkConfig(case=None, file=MATPOWER / f"{case}.m", load_profile="flat")
    return build_network(cfg)


@pytest.mark.parametrize(("case", "nose"), [("case33bw", 3.6), ("case141", 4.2)])
def test_engine_and_runpp_agree_on_convergence_up_to_and_past_the_nose(case, nose):
    # case141 has near-zero-impedance branches: a tolerance stricter than pandapower's made
    # the engine report collapse at 0.6x load where runpp converges
    nw = matpower_network(case)
    engine = PowerFlowEngine(nw)
    net = per_bus_load_net(nw)
    agree = []
    for lam in np.round(np.arange(0.2, 1.6 * nose, 0.2), 2):
        p, q = nw.base_load_p_mw * lam, nw.base_load_q_mvar * lam
        mine = engine.solve(p, q).converged
        ref = runpp_reference(nw, p, q, net=net).converged
        agree.append((lam, mine, ref))
    assert [a for a in agree if a[1] != a[2]] == []
    assert all(m for lam, m, _ in agree if lam <= nose) and not any(
        m for lam, m, _ in agree if lam >= 1.1 * nose
    )


def test_hosting_capacity_is_the_load_at_the_first_limit():
    from simgrid.basecase import HOSTING_TOL_MW, hosting, peak_hour_s
    from simgrid.profiles import diurnal
    from simgrid.types import Campus

    nw = network()
    cfg = NetworkConfig()
    campus = Campus("far", bus=17, p_nom_mw=1.0, base_utilisation=0.0)
    (h,), together = hosting(nw, cfg, diurnal(), (campus,))
    assert together is None
    f = float(diurnal().at(peak_hour_s(diurnal())))
    assert f == 1.0  # the RTS shape peaks at 100 % of the case's load
    engine = PowerFlowEngine(nw)
    e = np.zeros(nw.n_bus)
    e[17] = 1.0
    tol = HOSTING_TOL_MW * nw.base_load_p_mw.sum()

    def v_min(extra):
        res = engine.solve(
            nw.base_load_p_mw + extra * e, nw.base_load_q_mvar + extra * campus.q_per_p * e
        )
        return np.nanmin(res.vm_pu)

    assert 0.1 < h.hosting_mw < 0.2 and "bus 17" in h.limit
    assert v_min(h.hosting_mw) >= cfg.v_min_pu > v_min(h.hosting_mw + 2 * tol)


# ------------------------------------------------------------------------------------------
# pandapower JSON networks: objects of foreign modules are refused before pandapower imports


def _feeder_json() -> dict:
    """A sound three-bus feeder as pandapower writes it (the corpus' generator)."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "bad_inputs"))
    try:
        import make_networks
    finally:
        sys.path.pop(0)
    return json.loads(make_networks.compact_json(make_networks.feeder()))


def _plant(doc: dict, where: str, obj: dict) -> dict:
    """Put `obj` in the net itself, in a table's JSON string, or in a string inside that."""
    import json

    if where == "net":
        doc["_object"]["planted"] = obj
        return doc
    table = json.loads(doc["_object"]["load"]["_object"])
    name = table["columns"].index("name")
    # "string-in-table": a JSON string in a table cell, as pandapower keeps geodata
    table["data"][0][name] = obj if where == "table" else json.dumps({"x": obj})
    doc["_object"]["load"]["_object"] = json.dumps(table)
    return doc


@pytest.mark.parametrize("where", ["net", "table", "string-in-table"])
@pytest.mark.parametrize(
    ("module", "cls", "shown"),
    [
        ("planted_by_test", "Payload", "'planted_by_test'"),
        ("os", "system", "'os'"),
        ("builtins", "eval", "'builtins.eval'"),
        ("pandas_evil", "DataFrame", "'pandas_evil'"),  # a prefix of an allowed name is not one
    ],
)
def test_json_network_naming_a_foreign_module_is_refused_before_import(
    tmp_path, monkeypatch, where, module, cls, shown
):
    import json

    from simgrid.errors import ConfigError

    # a module next to the file, as on sys.path when simgrid runs with `python -m` there
    (tmp_path / "planted_by_test.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('IMPORTED').write_text('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "net.json"
    obj = {"_module": module, "_class": cls, "_object": "{}"}
    path.write_text(json.dumps(_plant(_feeder_json(), where, obj)))
    with pytest.raises(ConfigError) as info:
        build_network(NetworkConfig(case=None, file=path), source="net.toml")
    message = str(info.value)
    assert message.startswith(f"net.toml: network.file = '{path}': names the Python module ")
    assert shown in message and "\n" not in message, message
    assert not (tmp_path / "IMPORTED").exists()


def test_json_networks_pandapower_writes_load(tmp_path):
    """The allow-list admits what pandapower's own saved nets hold: tables, a controller with
    its data source, numpy scalars and arrays, pandas Index and Series, tuples and sets."""
    import numpy as np
    import pandapower as pp
    import pandapower.control as control
    import pandapower.networks as pn
    import pandas as pd
    from pandapower.timeseries import DFData

    from simgrid.network import load_pandapower_net

    net = pn.case33bw()
    data = DFData(pd.DataFrame({"p": np.linspace(0.1, 0.2, 4)}))
    control.ConstControl(
        net, "load", "p_mw", element_index=[0], data_source=data, profile_name=["p"]
    )
    net["extra"] = {
        "pair": (1, 2),
        "set": {3},
        "f": np.float64(1.5),
        "i": np.int64(3),
        "a": np.arange(3),
        "index": pd.Index([1, 2]),
        "series": pd.Series([1.0, 2.0]),
    }
    path = tmp_path / "with_objects.json"
    pp.to_json(net, str(path))
    loaded, name = load_pandapower_net(NetworkConfig(case=None, file=path))
    assert name == "with_objects" and len(loaded.bus) == 33 and len(loaded.controller) == 1


def test_json_network_size_cap(tmp_path, monkeypatch):
    import json

    import simgrid.network as network_module
    from simgrid.errors import ConfigError

    path = tmp_path / "net.json"
    path.write_text(json.dumps(_feeder_json()))
    monkeypatch.setattr(network_module, "_MAX_JSON_BYTES", path.stat().st_size - 1)
    with pytest.raises(ConfigError, match="more than a network may be"):
        build_network(NetworkConfig(case=None, file=path))


# ------------------------------------------------------------------------------------------
# Files a config names: symbolic links stay within the config's folder, only regular files


def _config_naming(folder: Path, network_file: str):
    from conftest import config_from_toml

    text = MINIMAL_NETWORK_FILE.format(file=network_file)
    return config_from_toml(text, folder, "run.toml")


MINIMAL_NETWORK_FILE = """
[run]
name = "t"
horizon_s = 3600
dt_s = 60
[network]
file = "{file}"
load_profile = "flat"
[upstream]
band_mw = 0.1
ramp_mw_per_min = 0.05
"""


def _folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """configs/ (the config's folder), configs/data/case.m, and outside/case.m beside it."""
    configs, outside = tmp_path / "configs", tmp_path / "outside"
    (configs / "data").mkdir(parents=True)
    outside.mkdir()
    case = (MATPOWER / "case33bw.m").read_text()
    (configs / "data" / "case.m").write_text(case)
    (outside / "case.m").write_text(case)
    return configs, configs / "data" / "case.m", outside / "case.m"


def test_a_link_out_of_the_config_folder_is_refused_naming_its_target(tmp_path):
    from simgrid.errors import ConfigError

    configs, _, outside_case = _folders(tmp_path)
    (configs / "link.m").symlink_to(outside_case)
    (configs / "outdir").symlink_to(outside_case.parent, target_is_directory=True)
    for named in ("link.m", "outdir/case.m", "data/../link.m"):
        with pytest.raises(ConfigError) as info:
            _config_naming(configs, named)
        message = str(info.value)
        assert "network.file" in message and "symbolic link" in message, message
        assert f"to {outside_case}, outside the folder of" in message, message


def test_plain_paths_and_links_within_the_folder_are_read(tmp_path):
    configs, inside_case, outside_case = _folders(tmp_path)
    (configs / "link.m").symlink_to(inside_case)  # a link within the tree
    (configs / "data" / "up.m").symlink_to("../link.m")  # and a chain of them
    for named in ("link.m", "data/up.m", "../outside/case.m", str(outside_case)):
        cfg = _config_naming(configs, named)
        assert cfg.network.file == configs / named


def test_a_link_to_proc_is_refused_and_its_content_never_read(tmp_path, monkeypatch, capsys):
    from simgrid.cli import main

    monkeypatch.setenv("SIMGRID_PROBE", "visible")
    configs, _, _ = _folders(tmp_path)
    (configs / "environ.m").symlink_to("/proc/self/environ")
    cfg = configs / "run.toml"
    cfg.write_text(MINIMAL_NETWORK_FILE.format(file="environ.m"))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "symbolic link" in err, err
    assert "/proc/" in err and "visible" not in err and "SIMGRID_PROBE" not in err, err


def test_non_regular_files_a_config_names_are_refused(tmp_path):
    import os

    from simgrid.errors import ConfigError

    configs, _, _ = _folders(tmp_path)
    os.mkfifo(configs / "pipe.m")
    (configs / "folder.m").mkdir()
    for named in ("pipe.m", "folder.m"):
        with pytest.raises(ConfigError, match="is not a regular file"):
            _config_naming(configs, named)


def test_a_spec_resolves_its_files_by_the_same_rule(tmp_path):
    """A scenario spec's network file and campus profiles go through the config's resolver."""
    from simgrid.errors import ConfigError
    from simgrid.scenarios.spec import load_spec

    configs, _, outside_case = _folders(tmp_path)
    (outside_case.parent / "util.csv").write_text("t_s,factor\n0,1\n3600,1\n")
    (configs / "util.csv").symlink_to(outside_case.parent / "util.csv")
    (configs / "link.m").symlink_to(outside_case)
    spec = """
[spec]
name = "s"
horizon_s = 3600
[network]
{network}
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 1.0
{campus}
[[shock]]
kind = "trip"
count = 1
fraction = 0.5
duration_s = 60
"""
    cases = [
        ('file = "link.m"', "", "network.file"),
        ('case = "case33bw"', 'utilisation_profile = "util.csv"', "campus[0].utilisation_profile"),
    ]
    for network_line, campus_line, key in cases:
        path = configs / "spec.toml"
        path.write_text(spec.format(network=network_line, campus=campus_line))
        with pytest.raises(ConfigError) as info:
            load_spec(path)
        assert key in str(info.value) and "symbolic link" in str(info.value), str(info.value)
