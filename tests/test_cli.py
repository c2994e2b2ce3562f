"""CLI: bad inputs give one line and exit 2 with no output; a good run writes the dataset."""

from __future__ import annotations

import subprocess
import sys

import pytest
import xarray as xr

from simgrid.cli import main

from conftest import MINIMAL, REPO

CAMPUS = """
[[campus]]
name = "dc"
bus = 2
p_nom_mw = 1.0
"""

# (what is wrong, config text, a fragment the one-line message must contain)
BAD = [
    ("typo in a table name", MINIMAL + "[netwrok]\ncase = 'case33bw'\n", "netwrok"),
    ("typo in a key", MINIMAL.replace("dt_s = 60", "dt_sec = 60"), "run.dt_sec"),
    ("negative step", MINIMAL.replace("dt_s = 60", "dt_s = -5"), "run.dt_s"),
    ("step longer than horizon", MINIMAL.replace("dt_s = 60", "dt_s = 7200"), "run.dt_s"),
    (
        "text for a number",
        MINIMAL.replace("horizon_s = 3600", "horizon_s = 'a day'"),
        "run.horizon_s",
    ),
    ("unknown case", MINIMAL.replace('case = "case33bw"', 'case = "case9999"'), "network.case"),
    (
        "missing network file",
        MINIMAL.replace('case = "case33bw"', 'file = "nope.json"'),
        "network.file",
    ),
    (
        "inverted voltage limits",
        MINIMAL.replace("[upstream]", "v_min_pu = 1.0\nv_max_pu = 1.0\n[upstream]"),
        "network.v_max_pu",
    ),
    ("missing upstream band", MINIMAL.replace("band_mw = 0.1\n", ""), "upstream.band_mw"),
    (
        "unknown event kind",
        MINIMAL + CAMPUS + "[[event]]\nkind = 'meteor'\nstart_s = 10\n",
        "event[0].kind",
    ),
    (
        "event on an unknown campus",
        MINIMAL + CAMPUS + "[[event]]\nkind = 'trip'\ncampus = 'nowhere'\nstart_s = 10\n",
        "event[0].campus",
    ),
    (
        "trip fraction above one",
        MINIMAL + CAMPUS + "[[event]]\nkind = 'trip'\ncampus = 'dc'\n"
        "start_s = 10\nfraction = 1.5\n",
        "event[0].fraction",
    ),
    (
        "event after the horizon",
        MINIMAL + CAMPUS + "[[event]]\nkind = 'trip'\ncampus = 'dc'\nstart_s = 99999\n",
        "event[0].start_s",
    ),
    (
        "campus bus not in the network",
        MINIMAL + CAMPUS.replace("bus = 2", "bus = 99"),
        "campus[0].bus",
    ),
    (
        "outage of a line that does not exist",
        MINIMAL + "[[event]]\nkind = 'line_outage'\nline = 400\nstart_s = 10\n",
        "event[0].line",
    ),
    ("duplicate campus names", MINIMAL + CAMPUS + CAMPUS, "campus[1].name"),
    ("zero power factor", MINIMAL + CAMPUS + "power_factor = 0\n", "campus[0].power_factor"),
    (
        "unknown key in an event",
        MINIMAL + CAMPUS + "[[event]]\nkind = 'surge'\ncampus = 'dc'\n"
        "start_s = 10\nmagnitude_mw = 0.1\nramp_mins = 3\n",
        "event[0].ramp_mins",
    ),
    ("broken TOML", MINIMAL + "[[event]\n", "not valid TOML"),
    (
        "bad load profile CSV",
        MINIMAL.replace('load_profile = "flat"', 'load_profile = "profile.csv"'),
        "network.load_profile",
    ),
]


@pytest.mark.parametrize(("why", "text", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, why, text, fragment):
    (tmp_path / "profile.csv").write_text("t_s,factor\n0,1\n0,2\n")
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out.nc"
    for argv in (["run", str(cfg), "--out", str(out), "--no-progress"], ["validate", str(cfg)]):
        assert main(argv) == 2, why
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert str(cfg) in lines[0] and fragment in lines[0], lines[0]
        assert "Traceback" not in err
    # no output and no temporary file left behind
    assert {p.name for p in tmp_path.iterdir()} == {"bad.toml", "profile.csv"}


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_bad_output_path_is_refused_before_running(tmp_path, capsys):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(MINIMAL)
    assert main(["run", str(cfg), "--out", str(tmp_path)]) == 2
    assert main(["run", str(cfg), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("simgrid: error: --out") for line in err)


REQUIRED = (
    "ai_load_mw",
    "import_mw",
    "import_schedule_mw",
    "imbalance_mw",
    "unserved_mw",
    "vm_pu",
    "line_loading_percent",
    "pf_converged",
    "unserved_energy_mwh",
    "imbalance_energy_mwh",
    "peak_imbalance_mw",
    "voltage_violation_s",
    "restoration_time_s",
)


def test_run_writes_the_documented_dataset(tmp_path, capsys):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        MINIMAL + CAMPUS + "[[event]]\nkind = 'trip'\ncampus = 'dc'\nstart_s = 600\n"
        "duration_s = 600\n"
    )
    out = tmp_path / "run.nc"
    assert main(["run", str(cfg), "--out", str(out), "--seed", "5", "--no-progress"]) == 0
    assert "unserved energy" in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        for name in REQUIRED:
            assert name in ds, name
            assert ds[name].attrs.get("units") and ds[name].attrs.get("long_name"), name
        assert ds["vm_pu"].dims == ("time", "bus")
        assert ds["line_loading_percent"].dims == ("time", "line")
        assert ds["time"].attrs["units"] == "s"
        assert ds.attrs["seed"] == 5 and ds.attrs["network"] == "case33bw"
        assert ds.attrs["network_scale"] == 1.0
        assert "version_pandapower" in ds.attrs and len(ds.attrs["config_sha256"]) == 64
        assert float(ds["peak_imbalance_mw"]) > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_console_script_exit_code_is_2_on_bad_input(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(MINIMAL.replace("dt_s = 60", "dt_s = 0"))
    proc = subprocess.run(
        [sys.executable, "-m", "simgrid.cli", "validate", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "run.dt_s" in proc.stderr


def test_output_file_gets_the_usual_permissions(tmp_path):
    import os

    from simgrid.ncio import atomic_path

    out = atomic_path(tmp_path / "x.nc", lambda tmp, _: tmp.write_bytes(b"data"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def _eleven_kv_feeder(path, load_mw: float) -> None:
    """A 2 km, 11 kV line to one load: a feeder that cannot carry gigawatts."""
    import pandapower as pp

    net = pp.create_empty_network()
    b0, b1 = pp.create_bus(net, 11.0), pp.create_bus(net, 11.0)
    pp.create_ext_grid(net, b0)
    pp.create_line_from_parameters(
        net,
        b0,
        b1,
        length_km=2.0,
        r_ohm_per_km=0.3,
        x_ohm_per_km=0.35,
        c_nf_per_km=0.0,
        max_i_ka=0.4,
    )
    pp.create_load(net, b1, p_mw=load_mw, q_mvar=0.2 * load_mw)
    pp.to_json(net, str(path))


def test_a_network_whose_base_case_has_no_solution_is_one_line_exit_2(tmp_path, capsys):
    _eleven_kv_feeder(tmp_path / "feeder.json", 18_000.0)  # 18 GW on 11 kV
    cfg = tmp_path / "gw.toml"
    cfg.write_text(MINIMAL.replace('case = "case33bw"', 'file = "feeder.json"'))
    out = tmp_path / "out.nc"
    for argv in (["validate", str(cfg)], ["run", str(cfg), "--out", str(out), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "network.file" in err[0] and "base case power flow" in err[0]
        assert "18000 MW" in err[0] and "11 kV" in err[0] and "kW or MW" in err[0]
    assert not out.exists()


def test_validate_prints_the_base_case_and_hosting_capacity(tmp_path, capsys):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(MINIMAL + CAMPUS.replace("bus = 2", "bus = 17") + "base_utilisation = 0.3\n")
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1 campus," in out and "33 buses" in out
    assert "load 3.7150 MW / 2.3000 Mvar, losses 202.68 kW" in out
    assert "minimum voltage 0.91309 pu at bus 17" in out
    assert "dc at bus 17: 0.13" in out  # MW before bus 17 falls below 0.90 pu at the peak
    # its 0.3 MW base already exceeds what the weak end of the feeder hosts: a visible warning
    assert "warning: campus dc: its 0.3 MW base load exceeds" in out


def test_a_network_file_that_is_no_case_is_refused_without_printing_it(tmp_path, capsys):
    """A key file given as the network: one line naming file and line, none of its text."""
    (tmp_path / "keys.m").write_text("SECRET=hunter2\nTOKEN=abc123\n")
    cfg = tmp_path / "keys.toml"
    cfg.write_text(MINIMAL.replace('case = "case33bw"', 'file = "keys.m"'))
    out = tmp_path / "out.nc"
    for argv in (["validate", str(cfg)], ["run", str(cfg), "--out", str(out), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "keys.m:1" in err, err
        assert "hunter2" not in err and "abc123" not in err and "SECRET" not in err, err
    assert not out.exists()
