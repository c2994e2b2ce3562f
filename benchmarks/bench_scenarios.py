"""Scenario generation speed and streaming memory, on the shipped IEEE 33-bus spec.

    python benchmarks/bench_scenarios.py [--n 10000]

Reports: sampling N day-long scenarios (events only), the same with shock features (what
`simgrid scenarios` does), reduction to 50, writing the events-only set, and materialising the
one-minute load curves streamed in chunks -- with the peak Python heap (tracemalloc) against
the size the whole (scenario, time, campus) array would have in memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simgrid.scenarios.reduce import reduce_set, with_distance  # noqa: E402
from simgrid.scenarios.sample import sample_scenario  # noqa: E402
from simgrid.scenarios.scenarioset import build_context, generate, write_set  # noqa: E402
from simgrid.scenarios.spec import load_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=256)
    args = ap.parse_args()
    spec = load_spec(REPO / "scenarios" / "ieee33_ai.toml")
    t0 = time.perf_counter()
    ctx = build_context(spec)
    t_ctx = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_events = sum(
        len(sample_scenario(spec, 1, i, ctx.in_service_lines).events) for i in range(args.n)
    )
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = generate(ctx, 1, args.n)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    reduce_set(ds, 50, 1)
    t_red = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_set(with_distance(ds), Path(tmp) / "events.nc")
        t_write = time.perf_counter() - t0
        full_mb = args.n * len(ctx.t_s) * len(spec.campuses) * 8 / 2**20
        tracemalloc.start()
        t0 = time.perf_counter()
        path = write_set(ds, Path(tmp) / "curves.nc", ctx=ctx, chunk=args.chunk)
        t_mat = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        file_mb = path.stat().st_size / 2**20

    print(
        f"{spec.name}: {args.n} day-long scenarios, {n_events} events "
        f"(network context built once in {t_ctx:.1f} s)"
    )
    per_us = t_sample / args.n * 1e6
    print(f"  sampling only (events)          {t_sample:7.2f} s  ({per_us:.0f} us/scenario)")
    print(f"  generate (events + features)    {t_gen:7.2f} s")
    print(f"  reduce to 50 (k-means++)        {t_red:7.2f} s")
    print(f"  write events-only set           {t_write:7.2f} s")
    print(f"  materialise 1-min load curves   {t_mat:7.2f} s  -> {file_mb:.0f} MB on disk")
    print(
        f"  peak heap while materialising   {peak / 2**20:7.1f} MB  vs {full_mb:.0f} MB for the "
        f"whole array in float64 ({full_mb / (peak / 2**20):.0f}x less; chunk {args.chunk})"
    )


if __name__ == "__main__":
    main()
