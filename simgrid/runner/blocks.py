"""Long runs streamed to disk block by block, resumable after a kill.

`simgrid run` writes each `[run] block_s` of simulated time (default a day) as its own NetCDF
file in a hidden folder beside the output (`.NAME.nc.parts/block_00000.nc`, ...), followed by a
checkpoint of the closed loop's state at the block's end (`block_00000.ckpt`). Memory holds one
block, not the run. Rerun with the same command after a kill (or a crash, or Ctrl-C), it
resumes from the last checkpoint whose block is whole and whose config hash matches; blocks
after it are done again. At the end the blocks are concatenated lazily (xarray on dask arrays,
read block by block; a long run's blocks first into group files of JOIN_GROUP blocks), metrics
computed and the output written; the folder is then removed.

Every block boundary starts the power flows from a flat start and the dispatcher's solvers
cold, in resumed and uninterrupted runs alike: both give the same dataset, variable by variable.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from simgrid import __version__
from simgrid.config import RunConfig
from simgrid.cosim.simulation import Blocks, Checkpoint, SimulationInputs, simulate
from simgrid.errors import SimgridError
from simgrid.ncio import (
    DatasetKind,
    atomic_path,
    read_dataset,
    small_chunk_cache,
    write_dataset,
)
from simgrid.types import DispatchPolicy

log = logging.getLogger(__name__)

OPEN_BLOCKS = 4  # block files open at once while the run is joined
JOIN_GROUP = 32  # blocks joined into one group file before the groups are joined


def parts_folder(out: Path, label: str = "") -> Path:
    """Where a run to `out` keeps its blocks (`label` tells a baseline run apart)."""
    return out.parent / f".{out.name}{label}.parts"


class BlockStore:
    """One run's block files and checkpoints."""

    def __init__(self, folder: Path, cfg: RunConfig, policy_name: str) -> None:
        self.folder = folder
        # a checkpoint is a pickle of simgrid's own objects: only the same version resumes it
        self.key = {
            "simgrid_version": __version__,
            "config_sha256": cfg.text_sha256,
            "seed": cfg.seed,
            "policy": policy_name,
        }
        if cfg.scenario is not None:
            ref = cfg.scenario
            self.key.update(scenario_spec_sha256=ref.spec_sha256, scenario_seed=ref.seed)
            self.key.update(scenario_file=ref.file, scenario_index=ref.index)
        self.key["block_s"] = cfg.block_s

    def block(self, k: int) -> Path:
        return self.folder / f"block_{k:05d}.nc"

    def checkpoint(self, k: int) -> Path:
        return self.folder / f"block_{k:05d}.ckpt"

    def write(self, k: int, ds: xr.Dataset, ckpt: Checkpoint | None) -> None:
        """The block's file, then (if any) its checkpoint: a checkpoint means a whole block."""
        self.folder.mkdir(exist_ok=True)
        attrs = {"simgrid_kind": DatasetKind.RUN.value, "block": k, **_str(self.key)}
        write_dataset(ds.assign_attrs(attrs), self.block(k))
        if ckpt is not None:
            data = ckpt.data
            atomic_path(self.checkpoint(k), lambda tmp, _: tmp.write_bytes(data))

    def resume_point(self) -> Checkpoint | None:
        """The last checkpoint of this run whose block is whole; later files are removed."""
        if not self.folder.is_dir():
            return None
        start = None
        for ckpt in sorted(self.folder.glob("block_*.ckpt")):
            k = int(ckpt.stem.split("_")[1])
            if not self._whole(k):
                break
            start = k
        if start is None:
            shutil.rmtree(self.folder)
            return None
        for path in self.folder.glob("block_*"):
            if int(path.name[6:11]) > start:
                path.unlink()
        t_s = (start + 1) * float(self.key["block_s"])
        log.info("resuming from block %d (t = %.0f s)", start, t_s)
        return Checkpoint(t_s, start, self.checkpoint(start).read_bytes())

    def _whole(self, k: int) -> bool:
        try:
            ds = read_dataset(self.block(k), DatasetKind.RUN, source="resume", key="block")
        except SimgridError:
            return False
        return all(ds.attrs.get(name) == value for name, value in _str(self.key).items())

    def combined(self, n_blocks: int) -> xr.Dataset:
        """All blocks as one lazy dataset along `time` (dask arrays, one chunk a block).

        A lazily opened file costs memory for as long as the dataset lives (its variables'
        graphs and file handles: about 0.4 MB a block), so beyond JOIN_GROUP blocks they are
        first joined into group files of JOIN_GROUP blocks each (rewritten at every join) and
        the groups joined."""
        paths = [self.block(k) for k in range(n_blocks)]
        if n_blocks > JOIN_GROUP:
            paths = [
                self._group(g, paths[start : start + JOIN_GROUP])
                for g, start in enumerate(range(0, n_blocks, JOIN_GROUP))
            ]
        return _open_joined(paths)

    def _group(self, g: int, paths: list[Path]) -> Path:
        out = self.folder / f"group_{g:05d}.nc"
        ds = _open_joined(paths)
        try:
            write_dataset(ds, out)
        finally:
            ds.close()
        return out


def _open_joined(paths: list[Path]) -> xr.Dataset:
    """Files of consecutive blocks as one lazy dataset along `time` (chunks as on disk: the
    multi-dimensional series one chunk a block)."""
    ds = xr.open_mfdataset(
        paths,
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        parallel=False,
        chunks={},
    )
    ds.attrs = {}
    return ds


def _str(key: dict) -> dict:
    return {f"run_{name}": str(value) for name, value in key.items()}


def run_to_file(
    inputs: SimulationInputs,
    policy: DispatchPolicy,
    out: Path,
    *,
    baseline: DispatchPolicy | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[xr.Dataset, int]:
    """`simgrid run`: simulate streamed (and the do-nothing `baseline`, if given, for its
    scalars), compute the metrics, write `out`, remove the blocks. Returns the dataset's scalars
    (in memory) and its number of steps."""
    import dask

    from simgrid.runner import run_dataset, with_baseline

    cfg, network = inputs.config, inputs.network
    cleanups = []
    # one thread reads the blocks (HDF5 is not thread-safe; a block is small), and only a few
    # block files are open at once: each open file holds megabytes of HDF5 caches, which over
    # a year's 365 blocks would outgrow the run itself
    with (
        xr.set_options(file_cache_maxsize=OPEN_BLOCKS),
        dask.config.set(scheduler="synchronous"),
        small_chunk_cache(),
    ):
        series, done = simulate_blocks(inputs, policy, out, progress=progress)
        cleanups.append(done)
        ds = run_dataset(series, cfg, network, policy)
        if baseline is not None:
            base, done = simulate_blocks(inputs, baseline, out, label=".baseline")
            cleanups.append(done)
            ds = with_baseline(ds, run_dataset(base, cfg, network, baseline))
        write_dataset(ds, out)
        scalars = ds[[name for name, v in ds.data_vars.items() if v.ndim == 0]].load()
        n_steps = ds.sizes["time"]
        series.close()
    for done in cleanups:
        done()
    return scalars, n_steps


def simulate_blocks(
    inputs: SimulationInputs,
    policy: DispatchPolicy,
    out: Path,
    *,
    label: str = "",
    progress: Callable[[float], None] | None = None,
) -> tuple[xr.Dataset, Callable[[], None]]:
    """Simulate `inputs` streamed to the parts folder of `out`, resuming if it holds a
    checkpoint of the same run. Returns the lazy time series and a function that removes the
    folder (call it once the output is written)."""
    cfg = inputs.config
    store = BlockStore(parts_folder(out, label), cfg, type(policy).__name__)
    start = store.resume_point()
    if start is not None and progress is not None:
        progress(start.t_s)
    n_blocks = max(1, -int(-cfg.horizon_s // cfg.block_s))
    last = simulate(
        inputs,
        policy,
        progress=progress,
        blocks=Blocks(cfg.block_s, store.write),
        start=start,
    )
    store.write(n_blocks - 1, last, None)
    return store.combined(n_blocks), lambda: shutil.rmtree(store.folder, ignore_errors=True)
