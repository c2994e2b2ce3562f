"""The closed loop: a simpy clock in seconds drives the AC power flow through AI and outage events.

Within one timestamp the order is fixed: inject (event processes, NORMAL priority) -> dispatch
(if due) -> apply set-points -> power flow -> record (the stepper, scheduled LATE so that it runs
after every injection at the same instant).
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
from simgrid.cosim.record import Recorder
from simgrid.network import Network, check_placement
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile, campus_profile
from simgrid.types import DispatchPolicy, DoNothing, Event, EventKind, GridState, SetPoints

# simpy processes same-time events by (priority, insertion); URGENT=0, NORMAL=1.
_LATE = 2
IDLE_STATUS = 4  # no dispatch at this step: set-points held (SolveStatus.IDLE)


@dataclass(frozen=True, eq=False)
class SimulationInputs:
    """Everything the loop needs, already validated and built."""

    config: RunConfig
    network: Network
    profile: LoadProfile


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


class _World:
    """Live state that event processes change and the stepper reads."""

    def __init__(self, cfg: RunConfig, network: Network) -> None:
        self.loads = {c.name: CampusLoad(c, campus_profile(c)) for c in cfg.campuses}
        self.base_line_in_service = network.line_in_service.copy()
        self.outages = np.zeros(network.n_line, dtype=int)

    @property
    def line_in_service(self) -> np.ndarray:
        return self.base_line_in_service & (self.outages == 0)


def _event_process(env: simpy.Environment, clock: Clock, world: _World, eid: int, ev: Event):
    """One event as a simpy process acting at its own knots; every action is an event step.

    At each knot it installs the segment that runs to the next knot (`Event.knots`).
    """
    knots = ev.knots()
    for k, (t0, v0) in enumerate(knots):
        yield env.timeout(t0 - env.now)
        last = k + 1 == len(knots)
        if ev.kind is EventKind.LINE_OUTAGE:
            world.outages[ev.line] += 1 if v0 else -1
        else:
            load = world.loads[ev.campus]
            segments = load.tripped_fraction if ev.kind is EventKind.TRIP else load.additive_mw
            if ev.kind is EventKind.OSCILLATION:
                segment = Sine(t0, v0, ev.period_s) if v0 else None
            elif last:
                segment = Ramp(t0, v0, t0, v0) if v0 else None
            else:
                t1, v1 = knots[k + 1]
                segment = Ramp(t0, v0, t1, v1)
            if segment is None:
                segments.pop(eid, None)
            else:
                segments[eid] = segment
        clock.request_step(event=True)


def _campus_base(
    world: _World, bus: np.ndarray, q_per_p: np.ndarray, n_bus: int, t_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bus base campus load (no events) at t_s: what the schedule assumes."""
    base = np.array([cl.base_mw(t_s) for cl in world.loads.values()])
    return (
        np.bincount(bus, base, minlength=n_bus),
        np.bincount(bus, base * q_per_p, minlength=n_bus),
    )


def _ticker(env: simpy.Environment, clock: Clock, cfg: RunConfig):
    """Request a step on the base grid, every dt_s."""
    for k in range(math.ceil(cfg.horizon_s / cfg.dt_s)):
        yield env.timeout(k * cfg.dt_s - env.now)
        clock.request_step(event=False)


def simulate(
    inputs: SimulationInputs,
    policy: DispatchPolicy | None = None,
    *,
    progress: Callable[[float], None] | None = None,
) -> xr.Dataset:
    """Run the closed loop over the horizon and return the run Dataset (without metrics).

    `progress(dt)` is called after each step with the simulated seconds advanced.
    """
    cfg, nw = inputs.config, inputs.network
    check_placement(cfg.source, cfg.campuses, cfg.events, nw)
    policy = policy if policy is not None else DoNothing(nw.n_bus)
    engine = PowerFlowEngine(nw)
    schedule_engine = PowerFlowEngine(nw)  # never sees shocks or outages
    follower = UpstreamFollower(cfg.upstream)
    rec = Recorder(inputs, max_steps(cfg), policy.unit_names)
    env = simpy.Environment()
    clock = Clock(env)
    world = _World(cfg, nw)
    env.process(_ticker(env, clock, cfg))
    for eid, ev in enumerate(cfg.events):
        env.process(_event_process(env, clock, world, eid, ev))

    campus_bus = np.array([c.bus for c in cfg.campuses], dtype=int)
    campus_q_per_p = np.array([c.q_per_p for c in cfg.campuses])
    loads = list(world.loads.values())

    def stepper():
        setpoints = SetPoints.zeros(nw.n_bus)
        last_dispatch_s = -math.inf
        last_vm: np.ndarray | None = None
        last_import: float | None = None
        t_prev = 0.0
        while True:
            yield clock.alarm
            is_event = clock.take()
            t = env.now
            # inject: the event processes have acted at this instant; read what they produced
            f = float(inputs.profile.at(t))
            ai_p = np.array([cl.p_mw(t) for cl in loads])
            demand_p = nw.base_load_p_mw * f
            demand_q = nw.base_load_q_mvar * f
            if loads:
                demand_p = demand_p + np.bincount(campus_bus, ai_p, minlength=nw.n_bus)
                demand_q = demand_q + np.bincount(
                    campus_bus, ai_p * campus_q_per_p, minlength=nw.n_bus
                )
            sched_p, sched_q = _campus_base(world, campus_bus, campus_q_per_p, nw.n_bus, t)
            schedule = schedule_engine.solve(
                nw.base_load_p_mw * f + sched_p, nw.base_load_q_mvar * f + sched_q
            ).import_mw
            engine.set_line_status(world.line_in_service)
            energised = engine.energised
            # dispatch, if due
            if is_event or t - last_dispatch_s >= cfg.dispatch.redispatch_s - 1e-9:
                setpoints = policy.dispatch(
                    GridState(
                        t_s=t,
                        is_event_step=is_event,
                        demand_p_mw=demand_p,
                        demand_q_mvar=demand_q,
                        energised=energised,
                        line_in_service=world.line_in_service,
                        ai_load_mw=ai_p,
                        import_schedule_mw=schedule,
                        last_vm_pu=last_vm,
                        last_import_mw=last_import,
                        upstream_follow_mw=follower.follow_mw,
                    )
                )
                last_dispatch_s = t
                status, solve_s = setpoints.status, setpoints.solve_s
            else:
                status, solve_s = IDLE_STATUS, 0.0
            # apply set-points (islanded buses get nothing), then solve
            shed = np.clip(setpoints.shed_mw, 0.0, np.maximum(demand_p, 0.0)) * energised
            keep = np.divide(demand_p - shed, demand_p, out=np.ones(nw.n_bus), where=demand_p > 0)
            net_p = (demand_p - shed - setpoints.p_injection_mw) * energised
            net_q = (demand_q * keep - setpoints.q_injection_mvar) * energised
            res = engine.solve(net_p, net_q)
            islanded_mw = float(demand_p[~energised].sum())
            if res.converged:
                import_mw = res.import_mw
                unserved = islanded_mw + float(shed.sum())
            else:
                # voltage collapse: the feeder breaker trips; all load is lost, nothing imported
                import_mw = 0.0
                unserved = float(demand_p.sum())
            followed = follower.step(t, import_mw - schedule)
            rec.record(
                t=t,
                is_event=is_event,
                ai_p=ai_p,
                demand_mw=float(demand_p.sum()),
                res=res,
                import_mw=import_mw,
                schedule_mw=schedule,
                imbalance_mw=import_mw - schedule - followed,
                unserved_mw=unserved,
                islanded_mw=islanded_mw,
                shed=shed,
                injection=setpoints.p_injection_mw,
                line_in_service=world.line_in_service,
                energised=energised,
                dispatch_status=status,
                dispatch_solve_s=solve_s,
                units=policy.report(t) if policy.unit_names else None,
            )
            last_vm = res.vm_pu if res.converged else None
            last_import = import_mw
            if progress is not None:
                progress(t - t_prev)
                t_prev = t

    env.process(stepper())
    env.run(until=cfg.horizon_s)
    return rec.to_dataset()
