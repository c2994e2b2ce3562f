"""Stress tests on dask.distributed: episodes fanned out to workers, files gathered, resumable.

By default a `LocalCluster` sized to the machine (one single-threaded worker process per core);
with a scheduler address, an existing cluster (the scenario file, config and output folder
must then be on paths every worker sees). Episodes are whole tasks (a worker keeps its network
and dispatcher between them); each writes its own file the moment it finishes, so a run killed
at any moment and started again with the same command skips what is done and ends with the
same combined result. A worker that dies mid-episode has its episode run again elsewhere
(dask reschedules tasks whose worker is lost); an episode that fails on its own is recorded.

Trust: dask moves tasks and results as pickles. A scheduler you connect to can run any code on
its workers and hands back results this process unpickles, so connect only to a scheduler you
run or trust. On a network others share, use `tls://` addresses with certificates
(`ClusterSecurity`: CA, client certificate and key; or dask's own `distributed.comm.tls`
config); a plain `tcp://` address off this machine is warned about.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from simgrid.errors import ConfigError
from simgrid.runner.episode import EpisodeRunner, StressSpec, finished

log = logging.getLogger(__name__)


def worker_state() -> dict:
    """This worker's cache of episode runners (kept on the dask worker, not in the module)."""
    from distributed import get_worker

    worker = get_worker()
    if not hasattr(worker, "simgrid_runners"):
        worker.simgrid_runners = {}
    return worker.simgrid_runners


def run_episode(index: int, spec: StressSpec) -> tuple[int, int, float]:
    """The task a worker runs: its cached runner for `spec` runs episode `index`."""
    cache = worker_state()
    runner = cache.get(spec)
    if runner is None:
        runner = cache[spec] = EpisodeRunner(spec)
    return runner.run(index)


@dataclass(frozen=True)
class ClusterSecurity:
    """TLS for an existing scheduler: the CA that signed it and this client's certificate and
    key (PEM files). Without them dask's own config (`distributed.comm.tls`) applies."""

    ca_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def given(self) -> bool:
        return any(p is not None for p in (self.ca_file, self.cert, self.key))

    def check(self, scheduler: str) -> None:
        """Complete, existing files, and a `tls://` scheduler to use them with."""
        for flag, path in (("--tls-ca-file", self.ca_file), ("--tls-cert", self.cert)):
            if path is None:
                raise ConfigError("--scheduler", flag, None, "is required with TLS options")
            if not path.is_file():
                raise ConfigError("--scheduler", flag, str(path), "file not found")
        if self.key is not None and not self.key.is_file():
            raise ConfigError("--scheduler", "--tls-key", str(self.key), "file not found")
        if not scheduler.startswith("tls://"):
            raise ConfigError(
                "--scheduler", "address", scheduler, "TLS options need a tls:// address"
            )

    def dask(self):
        from distributed import Security

        if not self.given:
            return None
        key = str(self.key) if self.key is not None else None
        return Security(
            tls_ca_file=str(self.ca_file),
            tls_client_cert=str(self.cert),
            tls_client_key=key,
            require_encryption=True,
        )


def plain_remote(scheduler: str) -> bool:
    """An unencrypted address off this machine (see the module's trust note)."""
    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    local = parts.hostname in ("localhost", "127.0.0.1", "::1") or (parts.hostname or "") == ""
    return parts.scheme in ("tcp", "ws") and not local


@contextlib.contextmanager
def client(
    workers: int | None = None,
    scheduler: str | None = None,
    security: ClusterSecurity = ClusterSecurity(),
) -> Iterator:
    """A dask client: on an existing scheduler, or on a LocalCluster of `workers` processes.
    A scheduler that cannot be reached is a ConfigError (one line), not a traceback."""
    from distributed import Client, LocalCluster

    # dask configures its loggers on import; its chatter is not simgrid's output
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        if security.given:
            security.check(scheduler)
        try:
            c = Client(scheduler, security=security.dask(), set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                "--scheduler",
                "address",
                scheduler,
                f"no dask scheduler could be reached ({type(exc).__name__}: {why})",
            ) from None
        with c:
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


@contextlib.contextmanager
def task_map(
    workers: int | None = None,
    scheduler: str | None = None,
    security: ClusterSecurity = ClusterSecurity(),
) -> Iterator[Callable]:
    """map(fn, items) over a dask cluster, for independent tasks that share one large
    argument (Stage-I's days: `fn` is sent to every worker once, then called per item)."""
    with client(workers, scheduler, security) as c:

        def mapper(fn: Callable, items: Sequence) -> list:
            shared = c.scatter(fn, broadcast=True)
            futures = c.map(_call, [shared] * len(items), list(items), pure=False)
            return c.gather(futures)

        yield mapper


def _call(fn: Callable, item):
    return fn(item)


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
    security: ClusterSecurity = ClusterSecurity(),
    progress: Callable[[Progress], None] | None = None,
) -> dict[tuple[StressSpec, int], float]:
    """Run every episode of each (spec, indices) job not already finished, all on one cluster
    (evaluate's allocations share it); returns the wall seconds of the episodes run. Episodes
    of other inputs are refused before the cluster starts; folders are made once it has."""
    from distributed import as_completed

    todo, keyed = [], {}
    for spec, indices in jobs:
        keyed[spec] = spec if spec.inputs is not None else spec.keyed()
        done = finished(keyed[spec])
        todo += [(spec, i) for i in indices if i not in done]
    walls: dict[tuple[StressSpec, int], float] = {}
    if not todo:
        return walls
    t0 = time.perf_counter()
    failed = 0
    with client(workers, scheduler, security) as c:
        for spec, _ in jobs:
            (Path(spec.out_dir) / "episodes").mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress(Progress(0, 0, len(todo), 0.0))
        futures = {
            c.submit(run_episode, i, keyed[spec], pure=False, retries=1): (spec, i)
            for spec, i in todo
        }
        for n, fut in enumerate(as_completed(futures), start=1):
            _, status, wall = fut.result()
            walls[futures[fut]] = wall
            failed += status != 0
            if progress is not None:
                progress(Progress(n, failed, len(todo), time.perf_counter() - t0))
    return walls
