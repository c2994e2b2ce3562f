"""Plots from result files alone (no simulator): ScenarioSet load curves and distributions,
and `make_report`: plots and a Markdown summary of a run, stress test, evaluation or allocation."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from simgrid.errors import ConfigError
from simgrid.fcm import read_allocation_dataset
from simgrid.ncio import DatasetKind, declared_kind, read_dataset
from simgrid.report.allocation import allocation_report
from simgrid.report.common import EVALUATION_FILE, REPORT_MD, STRESS_FILE, fmt, md_code, md_text
from simgrid.report.evaluation import evaluation_report
from simgrid.report.run import (
    _read_run,
    feeder_layout,
    grid_layout,
    run_report,
    timeseries_panels,
)
from simgrid.report.scenarios import plot_scenarios
from simgrid.report.stress import stress_report

__all__ = [
    "make_report",
    "plot_scenarios",
    "feeder_layout",
    "grid_layout",
    "timeseries_panels",
    "fmt",
]


def make_report(path: str | Path, out_dir: str | Path, event: int | None = None) -> list[Path]:
    """Plots (PNG) and `report.md` for a simgrid result file, from the file alone.

    Dispatches on the file's kind: a run (`feeder.png`, `timeseries.png`, `trapezoid.png`), a
    stress test (`distributions.png`, and the run plots of `worst_episode.nc` prefixed `worst_`
    when that file lies beside it; `path` may be the stress test's directory), an evaluation
    (`evaluation.png`) or an allocation (`allocation.png`). `event` picks the event of the
    trapezoid (default: the one with the most unserved energy). Returns the files written,
    `report.md` last.
    """
    path = _result_file(Path(path))
    kind = _peek_kind(path)
    ds = _read_result(path, kind)  # every check before the folder is made
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if kind is DatasetKind.RUN:
        files, lines = run_report(ds, out_dir, event=event, source=str(path))
        title = f"Run {md_text(ds.attrs.get('run_name', path.stem))}"
    elif kind is DatasetKind.STRESS:
        files, lines = stress_report(ds, path, out_dir, event=event)
        title = "Stress test"
    elif kind is DatasetKind.EVALUATION:
        files, lines = evaluation_report(ds, out_dir)
        title = "Evaluation of allocations"
    else:
        files, lines = allocation_report(ds, out_dir)
        title = "FCM allocation"
    md = out_dir / REPORT_MD
    header = [f"# {title}", "", f"Source: {md_code(path)} (simgrid {kind.label})", ""]
    md.write_text("\n".join(header + lines).rstrip() + "\n")
    return [*files, md]


def _read_result(path: Path, kind: DatasetKind) -> xr.Dataset:
    """The result file, read and checked as its kind (ConfigError: one line)."""
    if kind is DatasetKind.RUN:
        return _read_run(path, kind)
    if kind in (DatasetKind.STRESS, DatasetKind.EVALUATION):
        return read_dataset(path, kind, source=str(path), key="RESULT", required=("probability",))
    return read_allocation_dataset(path, str(path), key="RESULT")  # as `run --allocation` checks


def _result_file(path: Path) -> Path:
    """The file a RESULT argument names: itself, or the stress.nc of a stress test's folder or
    the evaluation.nc of an evaluation's."""
    if path.is_dir():
        for name in (STRESS_FILE, EVALUATION_FILE):
            if (path / name).is_file():
                return path / name
        raise ConfigError(
            str(path),
            "RESULT",
            str(path),
            f"is a directory without {STRESS_FILE} or {EVALUATION_FILE}",
        )
    return path


def _peek_kind(path: Path) -> DatasetKind:
    """The declared kind of a result file, from its header (ConfigError: unreadable or not a
    result)."""
    peeked = declared_kind(path)
    if peeked is None:  # the guarded reader says why in one line (missing, not NetCDF, ...)
        read_dataset(path, DatasetKind.RUN, source=str(path), key="RESULT")
        raise AssertionError("read_dataset accepted a file it cannot read")
    kind, declared = peeked
    reportable = (
        DatasetKind.RUN,
        DatasetKind.STRESS,
        DatasetKind.EVALUATION,
        DatasetKind.ALLOCATION,
    )
    if kind not in reportable:
        raise ConfigError(
            str(path),
            "RESULT",
            declared or "a NetCDF file without simgrid_kind",
            "must be a simgrid run, stress, evaluation or allocation file",
        )
    return kind
