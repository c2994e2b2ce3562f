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
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from simgrid.config import RunConfig
from simgrid.cosim.simulation import Blocks, Checkpoint, simulate
from simgrid.errors import ConfigError, SimgridError
from simgrid.inputs import SimulationInputs
from simgrid.ncio import (
    DatasetKind,
    package_versions,
    read_dataset,
    small_chunk_cache,
    write_dataset,
)
from simgrid.provenance import InputKey
from simgrid.types import DispatchPolicy, DoNothing, Snapshot

log = logging.getLogger(__name__)

OPEN_BLOCKS = 4  # block files open at once while the run is joined
JOIN_GROUP = 32  # blocks joined into one group file before the groups are joined


def parts_folder(out: Path, label: str = "") -> Path:
    """Where a run to `out` keeps its blocks (`label` tells a baseline run apart)."""
    return out.parent / f".{out.name}{label}.parts"


class BlockStore:
    """One run's block files and checkpoints (`block_00000.state.nc`: NetCDF of numbers).

    Every file carries the run's `InputKey`; files of other inputs are never reused."""

    def __init__(self, folder: Path, cfg: RunConfig, policy_name: str) -> None:
        self.folder = folder
        self.block_s = cfg.block_s
        index = cfg.scenario.index if cfg.scenario is not None else -1
        self.key = InputKey.of(
            cfg,
            package_versions(),
            seed=cfg.seed,
            policy=policy_name,
            block_s=cfg.block_s,
            scenario_index=index,
        )

    def block(self, k: int) -> Path:
        return self.folder / f"block_{k:05d}.nc"

    def checkpoint(self, k: int) -> Path:
        return self.folder / f"block_{k:05d}.state.nc"

    def write(self, k: int, ds: xr.Dataset, ckpt: Checkpoint | None) -> None:
        """The block's file, then (if any) its checkpoint: a checkpoint means a whole block."""
        self.folder.mkdir(exist_ok=True)
        attrs = {"simgrid_kind": DatasetKind.RUN.value, "block": k, **self.key.attrs()}
        write_dataset(ds.assign_attrs(attrs), self.block(k))
        if ckpt is not None:
            state = _state_dataset(ckpt.state).assign_attrs(
                simgrid_kind=DatasetKind.CHECKPOINT.value,
                block=k,
                t_s=ckpt.t_s,
                **self.key.attrs(),
            )
            write_dataset(state, self.checkpoint(k))

    def check(self, restart: bool) -> None:
        """Refuse a folder of blocks computed from other inputs (one line), or with `restart`
        remove it; called before any simulation, so a refusal costs nothing."""
        if not self.folder.is_dir():
            return
        if restart:
            shutil.rmtree(self.folder)
            return
        for path in sorted(self.folder.glob("block_*.nc")):
            try:
                attrs = _attrs(path)
            except SimgridError:
                continue  # not whole (cannot happen with atomic writes): done again
            self.key.check(attrs, path, "block")

    def resume_point(self) -> Checkpoint | None:
        """The last checkpoint of this run whose block is whole; later files are removed."""
        if not self.folder.is_dir():
            return None
        start = None
        for ckpt in sorted(self.folder.glob("block_*.state.nc")):
            k = int(ckpt.name[6:11])
            if not self._whole(k):
                break
            start = k
        if start is None:
            shutil.rmtree(self.folder)
            return None
        for path in self.folder.glob("*"):
            if not path.name.startswith("block_") or int(path.name[6:11]) > start:
                path.unlink()
        t_s = (start + 1) * float(self.block_s)
        log.info("resuming from block %d (t = %.0f s)", start, t_s)
        return Checkpoint(t_s, start, self._state(start, t_s))

    def _whole(self, k: int) -> bool:
        try:
            _attrs(self.block(k))
        except SimgridError:
            return False
        return True

    def _state(self, k: int, t_s: float) -> Snapshot:
        path = self.checkpoint(k)
        ds = read_dataset(path, DatasetKind.CHECKPOINT, source=str(path), key="checkpoint")
        self.key.check(ds.attrs, path, "checkpoint")
        if ds.attrs.get("block") != k or float(ds.attrs.get("t_s", math.nan)) != t_s:
            raise ConfigError(
                str(path), "t_s", ds.attrs.get("t_s"), f"must be the end of block {k} ({t_s:g} s)"
            )
        return Snapshot({name: ds[name].to_numpy() for name in ds.data_vars}, str(path))

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


def _attrs(path: Path) -> dict:
    """The attributes of a block file (read through the guarded reader)."""
    return read_dataset(path, DatasetKind.RUN, source=str(path), key="block").attrs


def _state_dataset(snap: Snapshot) -> xr.Dataset:
    """A snapshot as NetCDF variables (each array with dimensions of its own)."""
    return xr.Dataset(
        {
            name: xr.Variable(tuple(f"{name}.{i}" for i in range(a.ndim)), a)
            for name, a in snap.arrays.items()
        }
    )


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


def run_to_file(
    inputs: SimulationInputs,
    policy: DispatchPolicy | None,
    out: Path,
    *,
    baseline: DispatchPolicy | None = None,
    progress: Callable[[float], None] | None = None,
    restart: bool = False,
) -> tuple[xr.Dataset, int]:
    """`simgrid run`: simulate streamed (and the do-nothing `baseline`, if given, for its
    scalars), compute the metrics, write `out`, remove the blocks. Blocks left by an earlier
    run of other inputs are refused before anything runs (`restart`: discarded). Returns the
    dataset's scalars (in memory) and its number of steps."""
    import dask

    from simgrid.runner import run_dataset, with_baseline

    cfg, network = inputs.config, inputs.network
    policy = policy if policy is not None else DoNothing(network.n_bus, cfg.dispatch.redispatch_s)
    stores = [BlockStore(parts_folder(out), cfg, type(policy).__name__)]
    if baseline is not None:
        stores.append(BlockStore(parts_folder(out, ".baseline"), cfg, type(baseline).__name__))
    for store in stores:
        store.check(restart)
    # one thread reads the blocks (HDF5 is not thread-safe; a block is small), and only a few
    # block files are open at once: each open file holds megabytes of HDF5 caches, which over
    # a year's 365 blocks would outgrow the run itself
    with (
        xr.set_options(file_cache_maxsize=OPEN_BLOCKS),
        dask.config.set(scheduler="synchronous"),
        small_chunk_cache(),
    ):
        series = simulate_blocks(inputs, policy, stores[0], progress=progress)
        ds = run_dataset(series, cfg, network, policy)
        if baseline is not None:
            base = simulate_blocks(inputs, baseline, stores[1])
            ds = with_baseline(ds, run_dataset(base, cfg, network, baseline))
        write_dataset(ds, out)
        scalars = ds[[name for name, v in ds.data_vars.items() if v.ndim == 0]].load()
        n_steps = ds.sizes["time"]
        series.close()
    for store in stores:
        shutil.rmtree(store.folder, ignore_errors=True)
    return scalars, n_steps


def simulate_blocks(
    inputs: SimulationInputs,
    policy: DispatchPolicy,
    store: BlockStore,
    *,
    progress: Callable[[float], None] | None = None,
) -> xr.Dataset:
    """Simulate `inputs` streamed to `store`, resuming if it holds a checkpoint of the same
    run. Returns the lazy time series (remove the store's folder once the output is written)."""
    cfg = inputs.config
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
    return store.combined(n_blocks)
