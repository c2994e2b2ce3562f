"""Scenario generation speed and streaming memory, on the shipped IEEE 33-bus spec.

    python benchmarks/bench_scenarios.py [--n 10000]
    python benchmarks/bench_scenarios.py --scaling [--sizes 1000 10000 100000] [--tracemalloc]

Reports: sampling N day-long scenarios (events only), the same with shock features (what
`simgrid scenarios` does), reduction to 50, writing the events-only set, and materialising the
one-minute load curves streamed in chunks -- with the peak Python heap (tracemalloc) against
the size the whole (scenario, time, campus) array would have in memory.

`--scaling`: for each N, in a fresh process, what `simgrid scenarios SPEC --n N` does without
reduction (generate, `with_distance`, write the events-only set): wall time, peak memory and
the file's size, side by side so linearity in N shows; then, in another fresh process per N,
reading the set back with `simgrid.scenarios.scenarioset.read_set` (what each stress-test
worker does).
Memory is the peak resident set size (getrusage ru_maxrss, whole process: Python heap, numpy,
HDF5) above the process's size just before the measured step -- the high-water mark is reset
there through /proc/self/clear_refs (Linux); the read also reports the tracemalloc peak of the
Python heap (numpy arrays included), and `--tracemalloc` adds it for generation (which runs
about 5x slower under tracemalloc, so it is a second, separately timed pass).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
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


def _reset_peak() -> bool:
    """Reset the resident-set high-water mark (ru_maxrss) to the current size (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB


def _generate_worker(n: int, out: Path, heap: bool) -> dict:
    spec = load_spec(REPO / "scenarios" / "ieee33_ai.toml")
    ctx = build_context(spec)
    write_set(with_distance(generate(ctx, 1, 20)), out.with_suffix(".warm.nc"))  # imports, HDF5
    out.with_suffix(".warm.nc").unlink()
    gc.collect()
    exact = _reset_peak()
    base = _peak_mb()
    t0 = time.perf_counter()
    ds = with_distance(generate(ctx, 1, n))
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_set(ds, out)
    t_write = time.perf_counter() - t0
    row = {
        "n": n,
        "t_gen": t_gen,
        "t_write": t_write,
        "rss_mb": _peak_mb() - base,
        "exact": exact,
        "bytes": out.stat().st_size,
        "events": int(ds["n_events"].sum()),
        "width": ds.sizes["event"],
        "nbytes": ds.nbytes,
    }
    if heap:
        del ds
        gc.collect()
        tracemalloc.start()
        write_set(with_distance(generate(ctx, 1, n)), out.with_suffix(".heap.nc"))
        row["heap_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out.with_suffix(".heap.nc").unlink()
    return row


def _read_worker(path: Path, warm: Path) -> dict:
    from simgrid.scenarios.scenarioset import read_set

    read_set(warm, "bench")  # imports and HDF5 set up, as in a worker that has started
    gc.collect()
    exact = _reset_peak()
    base = _peak_mb()
    t0 = time.perf_counter()
    ds = read_set(path, "bench")
    t_read = time.perf_counter() - t0
    row = {"t_read": t_read, "rss_mb": _peak_mb() - base, "exact": exact, "nbytes": ds.nbytes}
    del ds
    gc.collect()
    tracemalloc.start()
    ds = read_set(path, "bench")
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row.update(heap_mb=peak / 2**20, kept_mb=current / 2**20, variables=sorted(ds.data_vars))
    return row


def _run_worker(*argv: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(sizes: list[int], heap: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gen, read = [], []
        for n in sizes:
            flags = ("--tracemalloc",) if heap else ()
            gen.append(_run_worker("generate", str(n), str(Path(tmp) / f"{n}.nc"), *flags))
            print(
                f"  ... N = {n:,} generated in {gen[-1]['t_gen'] + gen[-1]['t_write']:.0f} s",
                file=sys.stderr,
            )
        warm = Path(tmp) / f"{min(sizes)}.nc"
        for n in sizes:
            read.append(_run_worker("read", str(Path(tmp) / f"{n}.nc"), str(warm)))
    exact = all(r["exact"] for r in gen + read)
    print(
        "ieee33_ai (scenarios/ieee33_ai.toml), events-only sets, seed 1: one fresh process per "
        "step and N"
    )
    print(
        "peak RSS = getrusage ru_maxrss above the process size just before the step "
        + (
            "(high-water mark reset via /proc/self/clear_refs)"
            if exact
            else "(NOT reset: /proc/self/clear_refs unavailable, a lower bound)"
        )
    )
    head = (
        f"{'N':>8} {'events':>8} {'width':>5} {'generate s':>10} {'write s':>7} "
        f"{'us/scen':>7} {'peak RSS MB':>11} {'RSS kB/scen':>11}"
        + (f" {'heap MB':>8}" if heap else "")
        + f" {'file MB':>8} {'B/scen':>7} {'B/event':>7}"
    )
    print(head)
    for g in gen:
        n = g["n"]
        t = g["t_gen"] + g["t_write"]
        print(
            f"{n:>8,} {g['events']:>8,} {g['width']:>5} {g['t_gen']:>10.1f} {g['t_write']:>7.2f} "
            f"{t / n * 1e6:>7.0f} {g['rss_mb']:>11.1f} {g['rss_mb'] * 1024 / n:>11.2f}"
            + (f" {g['heap_mb']:>8.1f}" if heap else "")
            + f" {g['bytes'] / 2**20:>8.2f} {g['bytes'] / n:>7.0f} {g['bytes'] / g['events']:>7.1f}"
        )
    print(
        "reading the set back: simgrid.scenarios.scenarioset.read_set(path, 'bench') (drops "
        "ai_load_mw, distance)"
    )
    print(
        f"{'N':>8} {'read s':>7} {'peak RSS MB':>11} {'heap peak MB':>12} {'kept MB':>8} "
        f"{'Dataset MB':>10} {'kB/scen':>8}"
    )
    for g, r in zip(gen, read, strict=True):
        print(
            f"{g['n']:>8,} {r['t_read']:>7.2f} {r['rss_mb']:>11.1f} {r['heap_mb']:>12.1f} "
            f"{r['kept_mb']:>8.1f} {r['nbytes'] / 2**20:>10.1f} {r['rss_mb'] * 1024 / g['n']:>8.2f}"
        )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        what, *rest = sys.argv[2:]
        if what == "generate":
            row = _generate_worker(int(rest[0]), Path(rest[1]), "--tracemalloc" in rest)
        else:
            row = _read_worker(Path(rest[0]), Path(rest[1]))
        print(json.dumps(row))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--scaling", action="store_true", help="time, memory and size against N")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument(
        "--tracemalloc", action="store_true", help="with --scaling: also the generation's heap"
    )
    args = ap.parse_args()
    if args.scaling:
        scaling(sorted(args.sizes), args.tracemalloc)
        return
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
