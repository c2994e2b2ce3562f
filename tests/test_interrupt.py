"""Ctrl-C at any moment: the process ends promptly, writes nothing and leaves no temporary file;
a killed writer's temporary file is removed by the next write to the same path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from simgrid.ncio import atomic_path, write_dataset

from conftest import MINIMAL, REPO

# A child that writes a ~150 MB dataset through simgrid's writer after saying so; the parent
# interrupts it somewhere inside the write.
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import xarray as xr
    from simgrid.ncio import write_dataset
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"x": (("time", "bus"), rng.random((600_000, 32)))})
    print("writing", flush=True)
    try:
        write_dataset(ds, sys.argv[1])
    except KeyboardInterrupt:
        print("simgrid: interrupted; no output written", file=sys.stderr)
        sys.exit(130)
    print("written", flush=True)
    """
)
PROMPT_S = 20.0  # an interrupted writer must be gone by then (a hang waits forever)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigint_during_a_write_leaves_no_file_and_is_raised_after_it(tmp_path):
    def write(tmp, interrupt):
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the write: deferred, not raised
        tmp.write_bytes(b"all of it")

    with pytest.raises(KeyboardInterrupt):
        atomic_path(tmp_path / "x.nc", write)
    assert list(tmp_path.iterdir()) == []


def test_a_chunked_write_stops_at_its_next_chunk(tmp_path):
    chunks = []

    def write(tmp, interrupt):
        for k in range(10):
            interrupt.check()
            chunks.append(k)
            tmp.write_bytes(b"chunk")
            if k == 2:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        atomic_path(tmp_path / "x.nc", write)
    assert chunks == [0, 1, 2] and list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".x.nc.{pid}.abcd1234.tmp"
    stale.write_bytes(b"half")
    alive = tmp_path / f".x.nc.{os.getppid()}.abcd1234.tmp"  # a live writer's: kept
    alive.write_bytes(b"busy")
    other = tmp_path / f".y.nc.{pid}.abcd1234.tmp"  # another target's: not ours to judge
    other.write_bytes(b"half")
    write_dataset(xr.Dataset({"a": ("t", np.arange(3.0))}), tmp_path / "x.nc")
    assert not stale.exists() and alive.exists() and other.exists()
    assert (tmp_path / "x.nc").exists()


def _interrupt_writer(tmp_path, delay_s: float) -> tuple[int, str, list[str]]:
    out = tmp_path / "big.nc"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=PROMPT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the writer hung after SIGINT at {delay_s:.2f} s")
    return proc.returncode, err, _leftovers(tmp_path)


@pytest.mark.parametrize("delay_s", [0.0, 0.3, 0.8])
def test_sigint_at_any_moment_of_a_large_write_ends_promptly(tmp_path, delay_s):
    code, err, left = _interrupt_writer(tmp_path, delay_s)
    assert left == []
    if code == 130:  # interrupted: nothing written
        assert "interrupted; no output written" in err
        assert not (tmp_path / "big.nc").exists()
    else:  # the signal came after the rename: the file is whole
        assert code in (0, -signal.SIGINT)


@pytest.mark.slow
def test_sigint_during_the_write_twenty_times(tmp_path):
    rng = np.random.default_rng(1)
    codes = []
    for delay in rng.uniform(0.0, 1.5, 20):
        code, _, left = _interrupt_writer(tmp_path, float(delay))
        assert left == []
        codes.append(code)
        (tmp_path / "big.nc").unlink(missing_ok=True)
    assert codes.count(130) >= 10  # most of them landed inside the write


def test_ctrl_c_during_a_run_is_one_line_and_writes_nothing(tmp_path):
    cfg = tmp_path / "week.toml"  # a week without dispatch: several seconds of loop
    cfg.write_text(
        MINIMAL.replace("horizon_s = 3600", "horizon_s = 604800")
        + '[[campus]]\nname = "dc"\nbus = 2\np_nom_mw = 1.0\nbase_utilisation = 0.5\n'
    )
    out = tmp_path / "day.nc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simgrid.cli", "run", str(cfg), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    time.sleep(6.0)  # imports and network built; the loop runs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=PROMPT_S)
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "simgrid: interrupted; no output written"
        assert not out.exists()
    else:
        assert proc.returncode == 0 and out.exists()  # it had finished already
    assert _leftovers(tmp_path) == []
