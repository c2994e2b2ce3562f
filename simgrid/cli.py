"""Command line: `simgrid run | validate | scenarios | allocate | stress | evaluate | report`.

The only place that configures logging."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from simgrid import __version__
from simgrid.config import MAX_SEED, Ambiguity
from simgrid.errors import ConfigError, SimgridError

log = logging.getLogger("simgrid")

EXIT_USAGE = 2


# A ScenarioSet holds at most this many scenarios: its event table and features grow linearly
# (about 1 kB a scenario); beyond, sample and stress-test in several sets.
MAX_SCENARIOS = 1_000_000


class _Parser(argparse.ArgumentParser):
    """argparse with simgrid's one-line errors (argparse prints usage and the message)."""

    def error(self, message: str):
        print(f"simgrid: error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="simgrid",
        description=(
            "Co-simulate AI / data-center demand shocks on a power grid: simpy events, AC power "
            "flow, resilience metrics in NetCDF."
        ),
    )
    p.add_argument("--version", action="version", version=f"simgrid {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a config in closed loop and write a NetCDF dataset")
    r.add_argument("config", help="run config (TOML)")
    r.add_argument(
        "--out", help="output NetCDF file in an existing folder (default: results/<name>.nc)"
    )
    r.add_argument("--seed", type=int, help="override run.seed (an integer >= 0)")
    r.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    _restart_flag(r, "blocks of a killed run of other inputs")
    _scenario_flags(r)
    _allocation_flag(r)
    s = sub.add_parser(
        "scenarios",
        help="generate (or plot) a Monte Carlo ScenarioSet",
        description=(
            "simgrid scenarios SPEC --n N --seed S --out FILE [--reduce S] [--materialise] | "
            "simgrid scenarios --plot FILE --out DIR"
        ),
    )
    s.add_argument("spec", nargs="?", help="scenario spec (TOML)")
    s.add_argument("--n", type=int, help=f"number of scenarios to draw (1..{MAX_SCENARIOS:,})")
    s.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    s.add_argument(
        "--out", required=True, help="output .nc (generate) or folder (--plot), its parent existing"
    )
    s.add_argument("--reduce", type=int, metavar="S", help="keep S representative scenarios")
    s.add_argument(
        "--materialise",
        action="store_true",
        help="also store ai_load_mw(scenario, time, campus), streamed in chunks",
    )
    s.add_argument("--plot", metavar="FILE", help="draw sample loads and distributions of a set")
    s.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    a = sub.add_parser(
        "allocate",
        help="Stage-I: allocate Flexible Capacity Modules on a ScenarioSet (DRO-CVaR MILP)",
    )
    a.add_argument("config", help="run config (TOML) with [planning] and dispatch.catalogue")
    a.add_argument("--scenarios", metavar="FILE", required=True, help="ScenarioSet (NetCDF)")
    a.add_argument("--out", help="Allocation NetCDF (default: results/<name>_allocation.nc)")
    a.add_argument("--ambiguity", choices=tuple(x.value for x in Ambiguity))
    a.add_argument("--radius", type=float, help="epsilon (Wasserstein) or gamma (total variation)")
    a.add_argument("--alpha", type=float, help="CVaR level (0..1)")
    a.add_argument("--beta", type=float, help="weight of CVaR against the mean (0..1)")
    a.add_argument("--no-progress", action="store_true", help="never show the solver's progress")
    vss = a.add_mutually_exclusive_group()
    vss.add_argument(
        "--no-vss", action="store_true", help="skip the deterministic plan and its VSS"
    )
    vss.add_argument(
        "--vss-from",
        metavar="FILE",
        help="the deterministic plan's allocation file on the same scenarios (not solved again)",
    )
    a.add_argument(
        "--validate",
        metavar="SET",
        help="held-out ScenarioSet: the best candidate allocations run there in closed loop "
        "and the one with the best closed-loop risk is kept",
    )
    a.add_argument(
        "--validate-days", type=int, metavar="N", help="days of --validate used (default all)"
    )
    _cluster_flags(a, restart=False)
    st = sub.add_parser(
        "stress",
        help="Monte Carlo stress test: every scenario of a set in closed loop, on dask",
    )
    st.add_argument("config", help="run config (TOML)")
    st.add_argument("--scenarios", metavar="FILE", required=True, help="ScenarioSet (NetCDF)")
    _allocation_flag(st)
    _cluster_flags(st)
    st.add_argument("--out", help="output folder (default: results/<name>_stress)")
    st.add_argument(
        "--timeseries", action="store_true", help="keep every episode's time series (large)"
    )
    st.add_argument(
        "--levels", type=float, nargs="+", default=[0.95], help="VaR/CVaR levels (default 0.95)"
    )
    st.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    ev = sub.add_parser(
        "evaluate",
        help="allocations out of sample: each, and do-nothing, in closed loop on one scenario set",
    )
    ev.add_argument("config", help="run config (TOML)")
    ev.add_argument(
        "--allocations", metavar="FILE", nargs="+", required=True, help="allocation files (NetCDF)"
    )
    ev.add_argument("--scenarios", metavar="FILE", required=True, help="held-out ScenarioSet")
    _cluster_flags(ev)
    ev.add_argument("--out", help="output folder (default: results/<name>_evaluation)")
    ev.add_argument("--level", type=float, default=0.95, help="CVaR level (default 0.95)")
    ev.add_argument(
        "--reference",
        default="none",
        help="allocation the others are compared with day by day: 'none' (do-nothing, the "
        "default) or an allocation file's stem",
    )
    ev.add_argument(
        "--until-ci",
        action="store_true",
        help="run the days in batches until every paired difference of total cost against the "
        "reference is established (its 95 %% interval excludes 0) or the set is spent",
    )
    ev.add_argument(
        "--batch", type=int, metavar="N", help="days per batch with --until-ci (default 10)"
    )
    ev.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    rp = sub.add_parser(
        "report",
        help="PNG plots and a Markdown summary of a run, stress, evaluation or allocation file",
    )
    rp.add_argument(
        "result", help="a simgrid NetCDF result, or a stress test's or an evaluation's folder"
    )
    rp.add_argument("--out", required=True, help="output folder (created inside an existing one)")
    rp.add_argument("--event", type=int, help="event of the resilience trapezoid (default: worst)")
    v = sub.add_parser("validate", help="check a config (and its network) without running it")
    v.add_argument("config", help="run config (TOML)")
    _scenario_flags(v)
    _allocation_flag(v)
    return p


def _scenario_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenarios",
        metavar="FILE",
        help="take campuses and events from a ScenarioSet instead of the config",
    )
    p.add_argument("--index", type=int, help="scenario of --scenarios (default 0)")


def _cluster_flags(p: argparse.ArgumentParser, restart: bool = True) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="local dask workers (default: one per core)")
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="an existing dask scheduler you trust (it runs code and returns results; use "
        "tls:// on shared networks)",
    )
    for flag, what in (
        ("--tls-ca-file", "CA certificate that signed the scheduler's (PEM)"),
        ("--tls-cert", "this client's certificate (PEM)"),
        ("--tls-key", "this client's private key (PEM), if not in --tls-cert"),
    ):
        p.add_argument(flag, metavar="FILE", type=Path, help=f"with a tls:// --scheduler: {what}")
    if restart:
        _restart_flag(p, "episodes of an earlier run of other inputs in --out")


def _restart_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--restart", action="store_true", help=f"discard {what} instead of refusing")


def _allocation_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allocation",
        metavar="FILE",
        help="dispatch this Allocation NetCDF (from `simgrid allocate`) instead of the config's",
    )


def _config(args: argparse.Namespace, seed: int | None = None):
    """The run config of a command, with a scenario of a set and an allocation if asked."""
    from simgrid.config import load_config, with_allocation_file
    from simgrid.scenarios.scenarioset import with_scenario

    cfg = load_config(args.config, seed=seed)
    if getattr(args, "allocation", None):
        cfg = with_allocation_file(cfg, Path(args.allocation))
    if args.index is not None and not args.scenarios:
        raise ConfigError(args.config, "--index", args.index, "needs --scenarios FILE")
    if args.scenarios:
        cfg = with_scenario(cfg, args.scenarios, 0 if args.index is None else args.index)
    return cfg


def _check_out(out: Path) -> None:
    """An output file: .nc, in an existing, writable folder (checked before any work)."""
    if out.is_dir():
        raise ConfigError("--out", "path", str(out), "is a folder; give a file name (.nc)")
    if out.suffix.lower() not in (".nc", ".nc4"):
        raise ConfigError("--out", "path", str(out), "must end in .nc")
    _check_folder(out, out.parent)


def _check_out_dir(out: Path) -> None:
    """An output folder: created if absent, inside an existing, writable folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", "path", str(out), "exists and is not a folder")
    _check_folder(out, out if out.is_dir() else out.parent)


def _check_folder(out: Path, folder: Path) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        raise ConfigError(
            "--out", "path", str(out), f"the folder {folder} does not exist (create it first)"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".simgrid-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            "--out", "path", str(out), f"cannot be written in {folder} ({exc.strerror})"
        ) from None


def _summary(ds, n_steps: int) -> str:
    rows = [
        ("steps", f"{n_steps}"),
        ("unserved energy", f"{float(ds.unserved_energy_mwh):.4f} MWh"),
        ("imbalance energy", f"{float(ds.imbalance_energy_mwh):.4f} MWh"),
        ("peak imbalance", f"{float(ds.peak_imbalance_mw):.4f} MW"),
        ("voltage violation", f"{float(ds.voltage_violation_s):.0f} s"),
        ("thermal violation", f"{float(ds.thermal_violation_s):.0f} s"),
        ("collapse steps", f"{int(ds.collapse_steps)}"),
    ]
    rows.append(("restoration time", _fmt("{:.0f} s", ds.restoration_time_s)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt(fmt: str, value) -> str:
    """A metric as printed; NaN restoration means the run ended unrestored."""
    v = float(value)
    return "not restored" if math.isnan(v) else fmt.format(v)


def _comparison(ds) -> str:
    """The dispatched run against the do-nothing run on the same shocks."""
    rows = [("", "do-nothing", ds.attrs["dispatch_policy"])]
    for name, label, fmt in (
        ("unserved_energy_mwh", "unserved energy (MWh)", "{:.4f}"),
        ("imbalance_energy_mwh", "imbalance energy (MWh)", "{:.4f}"),
        ("peak_imbalance_mw", "peak imbalance (MW)", "{:.4f}"),
        ("voltage_violation_s", "voltage violation (s)", "{:.0f}"),
        ("thermal_violation_s", "thermal violation (s)", "{:.0f}"),
        ("collapse_steps", "collapse steps", "{:.0f}"),
        ("restoration_time_s", "restoration time (s)", "{:.0f}"),
    ):
        rows.append((label, _fmt(fmt, ds[f"baseline_{name}"]), _fmt(fmt, ds[name])))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"  {a:<{w0}}  {b:>{w1}}  {c:>12}" for a, b, c in rows)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from simgrid.inputs import prepare
    from simgrid.runner import build_policy
    from simgrid.runner.blocks import run_to_file
    from simgrid.types import DoNothing

    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(args.config, "--seed", args.seed, f"must be an integer in 0..{MAX_SEED}")
    cfg = _config(args, seed=args.seed)
    out = Path(args.out) if args.out else Path("results") / f"{cfg.name}.nc"
    _check_out(out)
    t0 = time.perf_counter()
    inputs = prepare(cfg)
    log.info(
        "network %s (scale %.4g) built in %.2f s",
        inputs.network.name,
        inputs.network.scale,
        time.perf_counter() - t0,
    )
    policy = build_policy(cfg, inputs)  # catalogue and allocation checked before any work
    for w in _network_report(cfg, inputs)[1]:
        print(f"simgrid: warning: {w}", file=sys.stderr)
    show = not args.no_progress and sys.stderr.isatty()
    redispatch_s = cfg.dispatch.redispatch_s
    baseline = (
        DoNothing(inputs.network.n_bus, redispatch_s) if cfg.dispatch.policy != "none" else None
    )
    with tqdm(
        total=cfg.horizon_s,
        unit="s",
        unit_scale=True,
        delay=2.0,
        disable=not show,
        desc=cfg.name,
        leave=False,
    ) as bar:
        ds, n_steps = run_to_file(
            inputs, policy, out, baseline=baseline, progress=bar.update, restart=args.restart
        )
    print(f"simgrid: {cfg.name}: {n_steps} steps in {time.perf_counter() - t0:.1f} s -> {out}")
    print(_summary(ds, n_steps))
    if cfg.dispatch.policy != "none":
        print(_comparison(ds))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from simgrid.inputs import prepare
    from simgrid.runner import check_units

    cfg = _config(args)
    inputs = prepare(cfg)
    units = check_units(cfg, inputs)
    nw = inputs.network
    print(
        f"simgrid: {args.config}: ok ({nw.name}, {_count(nw.n_bus, 'bus')}, "
        f"{_count(len(cfg.campuses), 'campus')}, {_count(len(cfg.events), 'event')}, "
        f"{_count(len(units), 'flexible unit')})"
    )
    text, warnings = _network_report(cfg, inputs)
    print(text)
    for w in warnings:
        print(f"  warning: {w}")
    return 0


def _count(n: int, word: str) -> str:
    plural = {"bus": "buses", "campus": "campuses"}.get(word, word + "s")
    return f"{n} {word if n == 1 else plural}"


def _mw(value: float) -> str:
    return f"{value * 1e3:.2f} kW" if abs(value) < 1.0 else f"{value:.4f} MW"


def _network_report(cfg, inputs) -> tuple[str, list[str]]:
    """The base case and every campus's hosting capacity, and the warnings they raise."""
    from simgrid.basecase import base_case, hosting, stored_line, warnings_for

    nw = inputs.network
    b = base_case(nw)
    scale = f", loads x {nw.scale:.6g}" if nw.scale != 1.0 else ""
    lines = [
        f"  base case ({nw.name}{scale}): {b.n_bus} buses, {b.n_line} lines in service, "
        f"load {b.load_p_mw:.4f} MW / {b.load_q_mvar:.4f} Mvar, losses {_mw(b.losses_mw)}",
        f"  minimum voltage {b.v_min_pu:.5f} pu at bus {b.v_min_bus}; "
        f"highest line loading {b.max_loading_percent:.1f} % (line {b.max_loading_line})",
    ]
    if stored_line(b) is not None:
        lines.append(f"  {stored_line(b)}")
    hosts, together = hosting(nw, cfg.network, inputs.profile, cfg.campuses)
    if hosts:
        lines.append(
            f"  hosting capacity at the network's peak hour ({hosts[0].peak_hour_s / 3600:.2f} h):"
        )
    for h in hosts:
        lines.append(
            f"    {h.campus} at bus {h.bus}: {h.hosting_mw:.4f} MW (first limit: {h.limit}); "
            f"campus base {h.base_mw:.4f} MW, nameplate {h.p_nom_mw:.4g} MW"
        )
    return "\n".join(lines), warnings_for(b, hosts, together, cfg.network)


def _scenarios(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.plot:
        from simgrid.report import plot_scenarios

        _check_out_dir(Path(args.out))
        for png in plot_scenarios(args.plot, args.out):
            print(f"simgrid: wrote {png}")
        return 0
    from simgrid.scenarios.reduce import reduce_set, with_distance
    from simgrid.scenarios.scenarioset import build_context, generate, write_set
    from simgrid.scenarios.spec import load_spec

    if args.spec is None:
        raise ConfigError("scenarios", "SPEC", None, "give a spec file (or --plot FILE)")
    if args.n is None or not 1 <= args.n <= MAX_SCENARIOS:
        raise ConfigError("scenarios", "--n", args.n, f"must be an integer in 1..{MAX_SCENARIOS:,}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError("scenarios", "--seed", args.seed, f"must be an integer in 0..{MAX_SEED}")
    if args.reduce is not None and not 1 <= args.reduce <= args.n:
        raise ConfigError("scenarios", "--reduce", args.reduce, f"must be in 1..{args.n} (--n)")
    out = Path(args.out)
    _check_out(out)
    t0 = time.perf_counter()
    spec = load_spec(args.spec)
    ctx = build_context(spec)
    bar_args = {"delay": 2.0, "disable": args.no_progress, "leave": False}
    with tqdm(total=args.n, unit="scenario", desc=spec.name, **bar_args) as bar:
        ds = generate(ctx, args.seed, args.n, progress=bar.update)
    ds = reduce_set(ds, args.reduce, args.seed) if args.reduce else with_distance(ds)
    with tqdm(total=ds.sizes["scenario"], unit="scenario", desc="load curves", **bar_args) as bar:
        write_set(ds, out, ctx=ctx if args.materialise else None, progress=bar.update)
    counts = ds["n_events"].to_numpy()
    print(
        f"simgrid: {spec.name}: {args.n} scenarios drawn (seed {args.seed}), "
        f"{ds.sizes['scenario']} written in {time.perf_counter() - t0:.1f} s -> {out}"
    )
    print(
        f"  events per scenario: mean {counts.mean():.2f}, max {counts.max()}; "
        f"reduction: {ds.attrs['reduction']}"
    )
    return 0


def _stress(args: argparse.Namespace) -> int:
    from simgrid.runner.episode import StressSpec

    spec = StressSpec(
        config=args.config,
        scenarios=args.scenarios,
        out_dir="",
        allocation=args.allocation,
        timeseries=args.timeseries,
    )
    cfg, n = _check_stress([spec], args)
    out = Path(args.out) if args.out else Path("results") / f"{cfg.name}_stress"
    _check_out_dir(out)
    (spec,) = _keyed([replace(spec, out_dir=str(out))], args)
    ds = _stress_run(spec, n, args, cfg.planning.days_per_year)
    print(f"simgrid: {cfg.name}: {n} episodes -> {out / 'stress.nc'}")
    print(_stress_summary(ds))
    return 0


def _check_stress(specs, args) -> tuple:
    """Everything the episodes of `specs` read, checked before any worker starts: the specs
    share config and scenario set (evaluate's differ in their allocation), so the set is read
    and the network built once. Returns the first spec's config and the number of scenarios."""
    from simgrid.fcm import read_allocation
    from simgrid.inputs import prepare
    from simgrid.runner import check_units
    from simgrid.runner.episode import load
    from simgrid.scenarios.scenarioset import read_set, scenario_of

    if args.workers is not None and args.workers < 1:
        raise ConfigError(args.config, "--workers", args.workers, "must be an integer >= 1")
    _security(args)
    for level in args.levels:
        if not 0 < level < 1:
            raise ConfigError(args.config, "--levels", level, "must lie in (0, 1)")
    configs = [load(spec) for spec in specs]
    for cfg in configs:  # each allocation's format now, its buses with the network below
        if cfg.dispatch.allocation_file is not None:
            read_allocation(cfg.dispatch.allocation_file, cfg.source)
    scenarios = specs[0].scenarios
    ds = read_set(scenarios, configs[0].source)
    inputs = prepare(scenario_of(configs[0], ds, scenarios, 0))
    for cfg in configs:
        check_units(scenario_of(cfg, ds, scenarios, 0), inputs)
    return configs[0], ds.sizes["scenario"]


def _security(args):
    """The TLS options of an existing scheduler, checked."""
    from simgrid.runner.cluster import ClusterSecurity

    security = ClusterSecurity(args.tls_ca_file, args.tls_cert, args.tls_key)
    if security.given:
        if args.scheduler is None:
            raise ConfigError("--tls-cert", "--scheduler", None, "TLS options need --scheduler")
        security.check(args.scheduler)
    return security


def _keyed(specs, args) -> list:
    """The specs with their inputs fingerprinted; with --restart, their earlier results gone
    (only now, once every input has been checked)."""
    specs = [spec.keyed() for spec in specs]
    if args.restart:
        for spec in specs:
            spec.discard()
    return specs


def _stress_run(spec, n: int, args, days_per_year: float):
    """Run (or resume) the episodes on dask, then combine, write stress.nc and the worst
    episode's time series."""
    from simgrid.ncio import write_dataset
    from simgrid.runner.stress import combine, write_worst_episode

    indices = list(range(n))
    _episodes([(spec, indices)], args)
    ds = combine(spec, indices, levels=tuple(args.levels), days_per_year=days_per_year)
    write_dataset(ds, Path(spec.out_dir) / "stress.nc")
    write_worst_episode(spec, ds)
    return ds


def _episodes(jobs, args) -> None:
    """Run the jobs' episodes on dask with a progress bar (done, failed, rate, ETA)."""
    from tqdm import tqdm

    from simgrid.runner.cluster import plain_remote, run_episodes

    security = _security(args)
    if args.scheduler and plain_remote(args.scheduler) and not security.given:
        print(
            f"simgrid: warning: {args.scheduler} is neither encrypted nor authenticated: "
            "whoever reaches it can run code on its workers and hand this process results; "
            "use tls:// with --tls-ca-file/--tls-cert on a shared network",
            file=sys.stderr,
        )
    total = sum(len(indices) for _, indices in jobs)
    show = not args.no_progress and sys.stderr.isatty()
    with tqdm(total=total, unit="episode", desc="episodes", disable=not show, leave=False) as bar:

        def progress(p) -> None:
            if p.done == 0:  # the start: episodes already on disk are skipped
                bar.initial = bar.n = total - p.total
            else:
                bar.update(1)
            bar.set_postfix(failed=p.failed, refresh=True)

        run_episodes(
            jobs,
            workers=args.workers,
            scheduler=args.scheduler,
            security=security,
            progress=progress,
        )


def _stress_summary(ds) -> str:
    lines = [f"  episodes: {ds.attrs['n_episodes']}, failed: {ds.attrs['n_failed']}"]
    stats = list(ds["statistic"].values)
    cvar = next((s for s in stats if s.startswith("cvar_") and s.count("_") == 1), None)
    header = f"  {'metric':30s} {'mean':>12} {'95% CI of mean':>23}"
    lines.append(header + (f" {cvar.upper():>12}" if cvar else ""))
    for m in ds["metric"].values:
        row = ds["summary"].sel(metric=m)
        ci = f"[{float(row.sel(statistic='mean_ci_low')):.4g}, " + (
            f"{float(row.sel(statistic='mean_ci_high')):.4g}]"
        )
        text = f"  {m:30s} {float(row.sel(statistic='mean')):12.4g} {ci:>23}"
        if cvar:
            text += f" {float(row.sel(statistic=cvar)):12.4g}"
        undefined = float(row.sel(statistic="p_undefined"))
        if undefined > 0:  # restoration: statistics over the restored episodes only
            text += f"  ({undefined:.0%} not restored: not included)"
        lines.append(text)
    for name in ("eens_mwh_per_yr", "lole_days_per_yr", "saifi", "saidi_h", "caidi_h"):
        if name in ds:
            lines.append(f"  {name:30s} {float(ds[name]):12.4g} {ds[name].attrs['units']}")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from simgrid import evaluate as ev
    from simgrid.ncio import atomic_path, write_dataset
    from simgrid.runner.episode import StressSpec, load
    from simgrid.runner.stress import combine

    if not 0 < args.level < 1:
        raise ConfigError(args.config, "--level", args.level, "must lie in (0, 1)")
    if args.batch is not None and not args.until_ci:
        raise ConfigError(args.config, "--batch", args.batch, "needs --until-ci")
    if args.batch is not None and args.batch < 2:
        raise ConfigError(args.config, "--batch", args.batch, "must be an integer >= 2")
    args.levels = [args.level]
    cfg = load(StressSpec(args.config, args.scenarios, ""))
    cands = ev.candidates(cfg, args.allocations)
    names = [c.label for c in cands]
    if args.reference not in names:
        raise ConfigError(
            args.config,
            "--reference",
            args.reference,
            f"must be one of {', '.join(names)} ('none': do-nothing; else a file's stem)",
        )
    out = Path(args.out) if args.out else Path("results") / f"{cfg.name}_evaluation"
    _check_out_dir(out)
    specs = ev.specs(args.config, args.scenarios, out, cands)
    n = _check_stress(specs, args)[1]
    specs = _keyed(specs, args)
    step = (args.batch or 10) if args.until_ci else n
    t0 = time.perf_counter()
    planned = [ev.planned_recourse(cfg, args.scenarios, c) for c in cands if not c.purchases]
    if any(c.purchases for c in cands):  # Stage-I's recourse on these days, on the cluster
        from simgrid.runner.cluster import task_map

        with task_map(args.workers, args.scheduler, _security(args)) as scenario_map:
            planned = [ev.planned_recourse(cfg, args.scenarios, c, scenario_map) for c in cands]
    done = 0
    while True:
        upto = min(n, done + step)
        _episodes([(spec, list(range(done, upto))) for spec in specs], args)
        done, indices = upto, list(range(upto))
        results = []
        for spec in specs:
            ds = combine(
                spec, indices, levels=(args.level,), days_per_year=cfg.planning.days_per_year
            )
            results.append(ds)
        table = ev.evaluation_dataset(
            cfg,
            args.scenarios,
            cands,
            results,
            [p if p.size == 1 else p[indices] for p in planned],
            args.level,
            args.reference,
        )
        if not args.until_ci or done == n or ev.settled(table):
            break
        print(f"simgrid: {done} days: not every difference established yet", file=sys.stderr)
    for spec, ds in zip(specs, results, strict=True):
        write_dataset(ds, Path(spec.out_dir) / "stress.nc")
    write_dataset(table, out / "evaluation.nc")
    text = ev.table(table)
    atomic_path(out / "evaluation.md", lambda tmp, _: tmp.write_text(text + "\n"))
    print(
        f"simgrid: {cfg.name}: {len(cands)} allocations x {done} of {n} scenarios in "
        f"{time.perf_counter() - t0:.0f} s -> {out / 'evaluation.nc'}"
    )
    print(text)
    return 0


def _report(args: argparse.Namespace) -> int:
    from simgrid.report import make_report

    out = Path(args.out)
    _check_out_dir(out)
    for f in make_report(args.result, out, event=args.event):
        print(f)
    return 0


def _allocate(args: argparse.Namespace) -> int:
    from simgrid.allocate import allocate, allocation_result_dataset
    from simgrid.config import load_config, planning_with
    from simgrid.fcm import load_catalogue
    from simgrid.ncio import write_dataset

    cfg = load_config(args.config)
    ambiguity = Ambiguity(args.ambiguity) if args.ambiguity else None
    planning = planning_with(
        cfg, ambiguity=ambiguity, radius=args.radius, alpha=args.alpha, beta=args.beta
    )
    cfg = replace(cfg, planning=planning)
    out = Path(args.out) if args.out else Path("results") / f"{cfg.name}_allocation.nc"
    _check_out(out)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(args.config, "--workers", args.workers, "must be an integer >= 1")
    security = _security(args)
    vss = "none" if args.no_vss else (args.vss_from or "solve")
    t0 = time.perf_counter()
    progress = None if args.no_progress or not sys.stderr.isatty() else _solver_progress()
    validation = None
    if args.validate:
        from functools import partial

        from simgrid.allocate import ValidationRequest
        from simgrid.runner.cluster import run_episodes

        if args.validate_days is not None and args.validate_days < 1:
            raise ConfigError(args.config, "--validate-days", args.validate_days, "must be >= 1")
        run = partial(
            run_episodes, workers=args.workers, scheduler=args.scheduler, security=security
        )
        folder = out.parent / f".{out.name}.validation"
        validation = ValidationRequest(args.validate, folder, run, args.validate_days)
    elif args.validate_days is not None:
        raise ConfigError(args.config, "--validate-days", args.validate_days, "needs --validate")
    with _task_map(args, security) as scenario_map:
        alloc = allocate(
            cfg,
            args.scenarios,
            planning,
            progress=progress,
            vss=vss,
            scenario_map=scenario_map,
            validation=validation,
        )
    if progress is not None:
        print(file=sys.stderr)
    source = {"none": "not computed (--no-vss)", "solve": "the deterministic plan solved"}
    ds = allocation_result_dataset(
        alloc,
        cfg,
        load_catalogue(cfg.dispatch.catalogue),
        args.scenarios,
        vss_source=source.get(vss, f"the deterministic plan of {vss}"),
    )
    write_dataset(ds, out)
    print(f"simgrid: {cfg.name}: allocation in {time.perf_counter() - t0:.1f} s -> {out}")
    print(_allocation_summary(alloc, planning))
    return 0


@contextlib.contextmanager
def _task_map(args, security):
    """Stage-I's independent days mapped on dask with --workers or --scheduler, else in turn."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from simgrid.runner.cluster import task_map

    with task_map(args.workers, args.scheduler, security) as mapper:
        yield mapper


def _solver_progress():
    def show(t: float, best: float, bound: float, gap: float) -> None:
        shown = "none yet" if not math.isfinite(best) else f"${best:,.0f}/yr"
        print(
            f"\r  solving: {t:6.1f} s, best {shown}, bound ${bound:,.0f}/yr, gap {gap:6.2%}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def _allocation_summary(alloc, planning) -> str:
    r = alloc.result
    ambiguous = planning.ambiguity in (Ambiguity.WASSERSTEIN, Ambiguity.TOTAL_VARIATION)
    radius = f" (radius {planning.radius:g})" if ambiguous else ""
    lines = [
        f"  {planning.ambiguity.value}{radius}, alpha {planning.alpha:g}, "
        f"beta {planning.beta:g}: {r.solve.termination.value}, gap {r.solve.gap:.2%}, "
        f"{r.solve.time_s:.1f} s"
    ]
    if r.judged:
        lines.append(
            f"  recourse: operation (the day chained); {len(r.judged)} allocations the window "
            f"model explored judged on it; this one's window-model objective "
            f"${r.screening_objective:,.0f}/yr"
        )
    for p in r.purchases:
        lines.append(f"    {p.count} x {p.module} at bus {p.bus} from {p.supplier}")
    if not r.purchases:
        lines.append("    no module is worth its cost")
    v = alloc.validation
    if v is not None:
        lines.append(f"  validated in closed loop on {v.days} days of {v.scenarios}:")
        for k, label in enumerate(v.labels):
            d = v.versus_planned_choice[k]
            vs = (
                ""
                if k == 0
                else f"; {d.mean:+,.0f} $/yr against the planner's choice [{d.ci_low:+,.0f}, "
                f"{d.ci_high:+,.0f}]{'' if d.established else ' (not established)'}, "
                f"cheaper on {d.wins} of {d.n} days"
            )
            mark = "*" if k == v.chosen else " "
            lines.append(
                f"   {mark} {label}: planned ${v.planned[k]:,.0f}/yr, closed loop "
                f"${v.closed_loop[k]:,.0f}/yr{vs}"
            )
    for label, value in (
        ("investment", r.investment),
        ("expected recourse", r.expected_recourse),
        ("CVaR", r.cvar),
        ("worst-case risk", r.worst_case_risk),
        ("worst-case premium", r.premium),
        ("objective", r.objective),
        ("VSS against the deterministic plan", alloc.vss),
    ):
        shown = "n/a" if math.isnan(value) else f"${value:,.0f}/yr"
        lines.append(f"  {label:36s} {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`simgrid validate ... | head`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silence the interpreter's flush
        return 0


def _main(argv: list[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, see _Parser), --help or --version
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # simgrid turns the libraries' failures into its own one-line errors
    for name in ("pandapower", "numba", "distributed"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        commands = {
            "run": _run,
            "validate": _validate,
            "scenarios": _scenarios,
            "allocate": _allocate,
            "stress": _stress,
            "evaluate": _evaluate,
            "report": _report,
        }
        return commands[args.command](args)
    except SimgridError as exc:
        print(f"simgrid: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("simgrid: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
