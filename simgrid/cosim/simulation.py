"""The closed loop: a simpy clock in seconds drives the AC power flow through AI and outage events.

Within one timestamp the order is fixed: the event processes inject (NORMAL priority), then the
stepper (scheduled LATE, after every injection at the same instant) runs `Loop.step`'s named
phases: inject (read the live loads and lines) -> schedule -> dispatch (if due) or real-time
follow -> protection and power flow -> settle (import, imbalance, unserved) -> record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy
import xarray as xr

from simgrid.config import RunConfig, UpstreamConfig
from simgrid.cosim.loads import CampusLoad, Ramp, Sine
from simgrid.cosim.protection import Protection
from simgrid.cosim.record import Recorder
from simgrid.cosim.step import Step
from simgrid.errors import ConfigError
from simgrid.inputs import SimulationInputs
from simgrid.network import Network, check_placement
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import campus_profile
from simgrid.types import (
    DispatchPolicy,
    DoNothing,
    Event,
    EventKind,
    GridState,
    Snapshot,
)


@dataclass(frozen=True)
class StandardPlant:
    """The plant simgrid simulates unless its inputs say otherwise: lightsim2grid's Newton
    solver on the pandapower model, under the configured protection (UVLS or feeder trip)."""

    def engine(self, network: Network) -> PowerFlowEngine:
        return PowerFlowEngine(network)

    def protection(self, cfg: RunConfig, engine: PowerFlowEngine) -> Protection:
        return Protection(cfg.protection, engine, cfg.dt_s)


# simpy processes same-time events by (priority, insertion); URGENT=0, NORMAL=1.
_LATE = 2


def max_steps(cfg: RunConfig) -> int:
    """An upper bound on the number of steps: the grid plus every event breakpoint."""
    return math.ceil(cfg.horizon_s / cfg.dt_s) + sum(len(e.instants_s()) for e in cfg.events)


class _StepAlarm(simpy.Event):
    """Wakes the stepper at LATE priority: after every injection at the same instant."""

    def fire(self) -> None:
        self._ok = True
        self._value = None
        self.env.schedule(self, _LATE)


class Clock:
    """Collects step requests (grid ticks, event actions) and wakes the stepper once per instant."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.alarm = _StepAlarm(env)
        self._armed = False
        self._event_step = False

    def request_step(self, *, event: bool) -> None:
        self._event_step |= event
        if not self._armed:
            self._armed = True
            self.alarm.fire()

    def take(self) -> bool:
        """Called by the stepper when woken: re-arm, and say whether an event acted now."""
        was_event = self._event_step
        self.alarm = _StepAlarm(self.env)
        self._armed = False
        self._event_step = False
        return was_event


class UpstreamFollower:
    """Causal magnitude-and-rate limiter: what deviation from schedule the upstream grid follows."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.band_mw = cfg.band_mw
        self.ramp_mw_per_s = cfg.ramp_mw_per_min / 60.0
        self.follow_mw = 0.0
        self.t_s: float | None = None

    def step(self, t_s: float, deviation_mw: float) -> float:
        """Return the followed part of `deviation_mw` at `t_s`; the rest is imbalance."""
        if self.t_s is not None:
            reach = self.ramp_mw_per_s * (t_s - self.t_s)
            target = min(max(deviation_mw, self.follow_mw - reach), self.follow_mw + reach)
        else:
            target = deviation_mw
        self.follow_mw = min(max(target, -self.band_mw), self.band_mw)
        self.t_s = t_s
        return self.follow_mw

    def snapshot(self) -> Snapshot:
        return Snapshot.join(follow_mw=self.follow_mw, t_s=self.t_s)

    def restore(self, snap: Snapshot) -> None:
        self.follow_mw = snap.number("follow_mw", 0.0)
        self.t_s = snap.number("t_s", 0.0) if "t_s" in snap.arrays else None


class _World:
    """Live state that event processes change and the stepper reads."""

    def __init__(self, inputs: SimulationInputs) -> None:
        cfg, network = inputs.config, inputs.network
        profiles = inputs.campus_profiles or tuple(campus_profile(c) for c in cfg.campuses)
        self.loads = {c.name: CampusLoad(c, p) for c, p in zip(cfg.campuses, profiles, strict=True)}
        self.base_line_in_service = network.line_in_service.copy()
        self.outages = np.zeros(network.n_line, dtype=int)

    @property
    def line_in_service(self) -> np.ndarray:
        return self.base_line_in_service & (self.outages == 0)

    def act(self, eid: int, ev: Event, knots: list[tuple[float, float]], k: int) -> None:
        """Event `eid` at its knot k: install the segment that runs to the next knot."""
        t0, v0 = knots[k]
        if ev.kind is EventKind.LINE_OUTAGE:
            self.outages[ev.line] += 1 if v0 else -1
            return
        load = self.loads[ev.campus]
        segments = load.tripped_fraction if ev.kind is EventKind.TRIP else load.additive_mw
        if ev.kind is EventKind.OSCILLATION:
            segment = Sine(t0, v0, ev.period_s) if v0 else None
        elif k + 1 == len(knots):
            segment = Ramp(t0, v0, t0, v0) if v0 else None
        else:
            t1, v1 = knots[k + 1]
            segment = Ramp(t0, v0, t1, v1)
        if segment is None:
            segments.pop(eid, None)
        else:
            segments[eid] = segment

    def replay(self, events: tuple[Event, ...], t_until: float) -> None:
        """Act every knot before `t_until`, in time order: the loads and lines a resumed run
        starts from are those the events made, recomputed from the config, not stored."""
        acts = [
            (t0, eid, k, ev, knots)
            for eid, ev in enumerate(events)
            for knots in [ev.knots()]
            for k, (t0, _) in enumerate(knots)
            if t0 < t_until
        ]
        for _, eid, k, ev, knots in sorted(acts, key=lambda a: (a[0], a[1], a[2])):
            self.act(eid, ev, knots, k)


def _event_process(
    env: simpy.Environment, clock: Clock, world: _World, eid: int, ev: Event, t_from: float = 0.0
):
    """One event as a simpy process acting at its own knots; every action is an event step.

    Knots before `t_from` (a resumed run) have already acted: `_World.replay` did them.
    """
    knots = ev.knots()
    for k, (t0, _) in enumerate(knots):
        if t0 < t_from:
            continue
        yield env.timeout(t0 - env.now)
        world.act(eid, ev, knots, k)
        clock.request_step(event=True)


def _ticker(env: simpy.Environment, clock: Clock, cfg: RunConfig, t_from: float = 0.0):
    """Request a step on the base grid, every dt_s (from `t_from` on)."""
    for k in range(math.ceil(cfg.horizon_s / cfg.dt_s)):
        if k * cfg.dt_s < t_from:
            continue
        yield env.timeout(k * cfg.dt_s - env.now)
        clock.request_step(event=False)


class Loop:
    """The plant and its controllers, one step at a time, in the documented order."""

    def __init__(self, inputs: SimulationInputs, policy: DispatchPolicy) -> None:
        cfg, nw = inputs.config, inputs.network
        self.cfg, self.nw, self.profile, self.policy = cfg, nw, inputs.profile, policy
        plant = inputs.plant if inputs.plant is not None else StandardPlant()
        self.engine = plant.engine(nw)
        self.schedule_engine = plant.engine(nw)  # never sees shocks or outages
        self.protection = plant.protection(cfg, self.engine)
        self.follower = UpstreamFollower(cfg.upstream)
        self.world = _World(inputs)
        self.loads = list(self.world.loads.values())
        self.campus_bus = np.array([c.bus for c in cfg.campuses], dtype=int)
        self.campus_q_per_p = np.array([c.q_per_p for c in cfg.campuses])
        self.measured: Measured | None = None  # what the last step's power flow measured

    def rest(self) -> None:
        """At a block boundary: power flows from a flat start and the policy's solvers cold, in
        a resumed run and an uninterrupted one alike (so both give the same numbers)."""
        self.engine.flat_start()
        self.schedule_engine.flat_start()
        rest = getattr(self.policy, "rest", None)
        if rest is not None:
            rest()

    def step(self, t_s: float, is_event: bool) -> Step:
        s = Step(t_s, is_event)
        self.inject(s)
        self.schedule(s)
        if self.policy.due(t_s, is_event):
            self.dispatch(s)
        else:
            self.follow(s)
        self.protect_and_solve(s)
        self.settle(s)
        self.measured = Measured.of(s)
        return s

    def inject(self, s: Step) -> None:
        """Read what the event processes produced at this instant: AI load, demand, lines."""
        nw, t = self.nw, s.t_s
        f = float(self.profile.at(t))
        s.ai_p_mw = np.array([cl.p_mw(t) for cl in self.loads])
        s.demand_p_mw = nw.base_load_p_mw * f + self._at_buses(s.ai_p_mw)
        s.demand_q_mvar = nw.base_load_q_mvar * f + self._at_buses(s.ai_p_mw * self.campus_q_per_p)
        s.line_in_service = self.world.line_in_service
        self.engine.set_line_status(s.line_in_service)
        s.energised = self.engine.energised

    def schedule(self, s: Step) -> None:
        """The day-ahead import: the same feeder with base campus load, no shocks or outages."""
        nw, f = self.nw, float(self.profile.at(s.t_s))
        base = np.array([cl.base_mw(s.t_s) for cl in self.loads])
        p = nw.base_load_p_mw * f + self._at_buses(base)
        q = nw.base_load_q_mvar * f + self._at_buses(base * self.campus_q_per_p)
        s.schedule_mw = self.schedule_engine.solve(p, q).import_mw

    def dispatch(self, s: Step) -> None:
        """A Stage-II call: new set-points for the plan's first period."""
        s.setpoints = self.policy.dispatch(self._grid_state(s))
        s.dispatched = True

    def follow(self, s: Step) -> None:
        """Between calls: the real-time layer's set-points (held, or absorbing the residual)."""
        s.setpoints = self.policy.follow(self._grid_state(s))

    def protect_and_solve(self, s: Step) -> None:
        """Apply the set-points (islanded buses get nothing) and solve under protection."""
        sp, live = s.setpoints, s.energised
        s.protected = self.protection.solve(
            s.t_s,
            s.demand_p_mw * live,
            s.demand_q_mvar * live,
            sp.shed_mw * live,
            sp.shed_mvar * live,
            sp.p_injection_mw * live,
            sp.q_injection_mvar * live,
        )
        s.shed_mw = s.protected.shed_p_mw

    def settle(self, s: Step) -> None:
        """Import, imbalance and unserved load from the solved step; the units' state."""
        live = s.energised
        s.islanded_mw = float(s.demand_p_mw[~live].sum())
        if s.protected.collapsed:
            # no solution even under protection: the feeder breaker trips for the step
            s.import_mw = 0.0
            s.collapse_mw = float(s.demand_p_mw[live].sum()) - float(s.shed_mw.sum())
            s.collapse_mw -= float(s.protected.uvls_p_mw.sum())
        else:
            s.import_mw = s.protected.pf.import_mw
        followed = self.follower.step(s.t_s, s.import_mw - s.schedule_mw)
        s.imbalance_mw = s.import_mw - s.schedule_mw - followed
        if self.policy.unit_names:
            s.units = self.policy.report(s.t_s)

    def _grid_state(self, s: Step) -> GridState:
        last = self.measured
        converged = last is not None and last.converged
        return GridState(
            t_s=s.t_s,
            is_event_step=s.is_event,
            demand_p_mw=s.demand_p_mw,
            demand_q_mvar=s.demand_q_mvar,
            energised=s.energised,
            line_in_service=s.line_in_service,
            ai_load_mw=s.ai_p_mw,
            import_schedule_mw=s.schedule_mw,
            last_vm_pu=last.vm_pu if converged else None,
            last_import_mw=last.import_mw if last is not None else None,
            last_line_p_mw=last.line_p_mw if converged else None,
            last_loading_percent=last.loading_percent if converged else None,
            last_net_p_mw=last.net_p_mw if converged else None,
            last_net_q_mvar=last.net_q_mvar if converged else None,
            upstream_follow_mw=self.follower.follow_mw,
            uvls_fraction=self.protection.shed_fraction.copy(),
        )

    def _at_buses(self, per_campus: np.ndarray) -> np.ndarray:
        return np.bincount(self.campus_bus, per_campus, minlength=self.nw.n_bus)

    def snapshot(self) -> Snapshot:
        """What the loop carries across a block boundary, as numbers (see `Checkpoint`)."""
        return Snapshot.join(
            follower=self.follower.snapshot(),
            protection=self.protection.snapshot(),
            measured=None if self.measured is None else Snapshot.of_fields(self.measured),
            policy=self.policy.snapshot(),
        )

    def restore(self, snap: Snapshot, t_s: float) -> None:
        """Take a snapshot back at `t_s`: the events' loads and lines are replayed from the
        config, everything else is read (and checked) from the snapshot."""
        self.world.replay(self.cfg.events, t_s)
        self.follower.restore(snap.require("follower"))
        self.protection.restore(snap.require("protection"))
        measured = snap.part("measured")
        template = Measured.template(self.nw.n_bus, self.nw.n_line)
        self.measured = None if measured is None else measured.fields_like(template)
        self.policy.restore(snap.require("policy"))
        if not self.snapshot().same(snap):  # a stray or missing name is not this run's state
            stray = sorted(set(snap.arrays) ^ set(self.snapshot().arrays))
            raise ConfigError(snap.source, stray[0] if stray else "state", "...", _NOT_THIS_RUN)


_NOT_THIS_RUN = "does not belong to the state of this run's loop: not this run's checkpoint"


@dataclass(frozen=True, eq=False)
class Measured:
    """What the dispatcher is told about the last step: whether its power flow solved, the
    voltages it measured, the import, each line's active flow (from-end) and loading, and what
    each bus drew (the point the real-time layer predicts around)."""

    converged: bool
    vm_pu: np.ndarray
    import_mw: float
    line_p_mw: np.ndarray
    loading_percent: np.ndarray
    net_p_mw: np.ndarray
    net_q_mvar: np.ndarray

    @classmethod
    def of(cls, s: Step) -> Measured:
        pr = s.protected
        flows = pr.pf.line_p_from_mw
        line_p = np.full(len(pr.pf.line_loading_percent), np.nan) if flows is None else flows
        return cls(
            not pr.collapsed,
            pr.pf.vm_pu,
            s.import_mw,
            line_p,
            pr.pf.line_loading_percent,
            pr.net_p_mw,
            pr.net_q_mvar,
        )

    @classmethod
    def template(cls, n_bus: int, n_line: int) -> Measured:
        """The shapes a snapshot's measurement must have."""
        bus, line = np.zeros(n_bus), np.zeros(n_line)
        return cls(True, bus, 0.0, line, line, bus, bus)


@dataclass(frozen=True)
class Checkpoint:
    """The closed loop's state at a block boundary (`t_s`, after `block`), as numbers only: a
    run killed later resumes from here. Restoring builds the loop from the run's inputs and
    policy, replays the events up to `t_s` and reads the rest, checked, from `state`; nothing
    stored is ever executed."""

    t_s: float
    block: int
    state: Snapshot

    @classmethod
    def of(cls, loop: Loop, t_s: float, block: int) -> Checkpoint:
        return cls(t_s, block, loop.snapshot())

    def restore(self, inputs: SimulationInputs, policy: DispatchPolicy) -> Loop:
        """The loop as it was at `t_s`, driving `policy` (built from the same config)."""
        loop = Loop(inputs, policy)
        loop.restore(self.state, self.t_s)
        return loop


@dataclass(frozen=True)
class Blocks:
    """Stream a run: every `block_s` of simulated time, `write(block, dataset, checkpoint)`
    receives the block's time series and the state to resume from; the last block is returned
    by `simulate`."""

    block_s: float
    write: Callable[[int, xr.Dataset, Checkpoint], None]


def _boundaries(env: simpy.Environment, loop: Loop, rec: Recorder, blocks: Blocks, k: int):
    """At each block boundary, before anything else happens at that instant (URGENT): hand
    the block and the loop's state to `blocks.write` and start the next block."""
    horizon = loop.cfg.horizon_s
    while (k + 1) * blocks.block_s < horizon - 1e-9:
        t_b = (k + 1) * blocks.block_s
        boundary = env.event()
        boundary._ok, boundary._value = True, None
        env.schedule(boundary, simpy.events.URGENT, t_b - env.now)
        yield boundary
        loop.rest()
        blocks.write(k, rec.to_dataset(), Checkpoint.of(loop, t_b, k))
        rec.clear()
        k += 1


def simulate(
    inputs: SimulationInputs,
    policy: DispatchPolicy | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    blocks: Blocks | None = None,
    start: Checkpoint | None = None,
) -> xr.Dataset:
    """Run the closed loop over the horizon and return the run Dataset (without metrics).

    `progress(dt)` is called after each step with the simulated seconds advanced. With
    `blocks`, the time series go to `blocks.write` block by block and the last block is
    returned; with `start`, the run goes on from that checkpoint (`policy` takes its state).
    """
    cfg, nw = inputs.config, inputs.network
    check_placement(cfg.source, cfg.campuses, cfg.events, nw)
    policy = policy if policy is not None else DoNothing(nw.n_bus, cfg.dispatch.redispatch_s)
    loop = Loop(inputs, policy) if start is None else start.restore(inputs, policy)
    t_from = 0.0 if start is None else start.t_s
    rec = Recorder(inputs, _capacity(cfg, blocks), loop.policy.unit_names)
    env = simpy.Environment(initial_time=t_from)
    clock = Clock(env)
    env.process(_ticker(env, clock, cfg, t_from))
    for eid, ev in enumerate(cfg.events):
        env.process(_event_process(env, clock, loop.world, eid, ev, t_from))
    if blocks is not None:
        env.process(_boundaries(env, loop, rec, blocks, 0 if start is None else start.block + 1))

    def stepper():
        t_prev = t_from
        while True:
            yield clock.alarm
            is_event = clock.take()
            rec.record(loop.step(env.now, is_event))
            if progress is not None:
                progress(env.now - t_prev)
                t_prev = env.now

    env.process(stepper())
    env.run(until=cfg.horizon_s)
    return rec.to_dataset()


def _capacity(cfg: RunConfig, blocks: Blocks | None) -> int:
    """Steps a recorder must hold: the whole run, or one block (grid steps and event instants)."""
    if blocks is None or blocks.block_s >= cfg.horizon_s:
        return max_steps(cfg)
    grid = math.ceil(blocks.block_s / cfg.dt_s) + 1
    instants = np.concatenate([np.asarray(e.instants_s(), float) for e in cfg.events] or [[]])
    per_block = np.bincount((instants // blocks.block_s).astype(int)) if instants.size else [0]
    return grid + int(np.max(per_block))  # the busiest block's event instants, not the run's
