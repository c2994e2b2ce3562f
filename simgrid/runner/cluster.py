"""Stress tests on dask.distributed: episodes fanned out to workers, files gathered, resumable.

By default a `LocalCluster` sized to the machine (one single-threaded worker process per core);
with a scheduler address, an existing cluster (the scenario file, config and output folder
must then be on paths every worker sees). Episodes are whole tasks (a worker keeps its network
and dispatcher between them); each writes its own file the moment it finishes, so a run killed
at any moment and started again with the same command skips what is done and ends with the
same combined result. A worker that dies mid-episode has its episode run again elsewhere
(dask reschedules tasks whose worker is lost); an episode that fails on its own is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from simgrid.runner.episode import StressSpec, finished, run_episode

log = logging.getLogger(__name__)


def worker_state() -> dict:
    """This worker's cache of episode runners (kept on the dask worker, not in the module)."""
    from distributed import get_worker

    worker = get_worker()
    if not hasattr(worker, "simgrid_runners"):
        worker.simgrid_runners = {}
    return worker.simgrid_runners


@contextlib.contextmanager
def client(workers: int | None = None, scheduler: str | None = None) -> Iterator:
    """A dask client: on an existing scheduler, or on a LocalCluster of `workers` processes."""
    from distributed import Client, LocalCluster

    # dask configures its loggers on import; its chatter is not simgrid's output
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        with Client(scheduler) as c:
            yield c
        return
    n = workers or os.cpu_count() or 1
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},  # health endpoint on a free port
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@dataclass(frozen=True)
class Progress:
    done: int
    failed: int
    total: int
    elapsed_s: float


def run_episodes(
    jobs: Sequence[tuple[StressSpec, Sequence[int]]],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict[tuple[StressSpec, int], float]:
    """Run every episode of each (spec, indices) job not already finished, all on one cluster
    (evaluate's allocations share it); returns the wall seconds of the episodes run."""
    from distributed import as_completed

    todo = []
    for spec, indices in jobs:
        (Path(spec.out_dir) / "episodes").mkdir(parents=True, exist_ok=True)
        done = finished(spec)
        todo += [(spec, i) for i in indices if i not in done]
    walls: dict[tuple[StressSpec, int], float] = {}
    if not todo:
        return walls
    t0 = time.perf_counter()
    failed = 0
    if progress is not None:
        progress(Progress(0, 0, len(todo), 0.0))
    with client(workers, scheduler) as c:
        futures = {
            c.submit(run_episode, i, spec, pure=False, retries=1): (spec, i) for spec, i in todo
        }
        for n, fut in enumerate(as_completed(futures), start=1):
            _, status, wall = fut.result()
            walls[futures[fut]] = wall
            failed += status != 0
            if progress is not None:
                progress(Progress(n, failed, len(todo), time.perf_counter() - t0))
    return walls
