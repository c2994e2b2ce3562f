"""Stage-I's scenario data: each scenario's day as dispatch-model windows.

Operation recourse (the default) cuts the whole day into blocks of the dispatcher's lookahead,
in its period (the plant's step in a block where an oscillation is live, so that the swings
are resolved as the plant meets them); the planner chains them, each starting where the one
before ended (benders.py). Window recourse plans over windows from `lead_s` before each event
to `tail_s` after its end, merged where they overlap, in periods of `period_s`. In each period:
the conventional load follows the day-ahead profile and each campus its load with the events
(averaged over the period, sampled every minute), a line is out if it is out at any moment
of the period, the schedule is the AC import of the same period without shocks or outages,
and the AC losses at the period's demand (no flexible units) are demand at each line's
receiving end -- the same physics as the Stage-II dispatcher's windows.

The deterministic plan's single scenario is the expected shock: the whole horizon (one window,
or the day's blocks) with each campus at its probability-weighted mean load and no outage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from simgrid.aiload import campus_loads_mw
from simgrid.config import PlanningConfig, UpstreamConfig
from simgrid.network import Network
from simgrid.optimization.blocks import ScenarioData
from simgrid.optimization.lindistflow import at_receiving_ends
from simgrid.optimization.linear_ac import at_solution
from simgrid.powerflow import PowerFlowEngine
from simgrid.profiles import LoadProfile
from simgrid.types import Campus, Event, EventKind

SAMPLE_S = 60.0  # how finely a period's load is averaged


@dataclass(frozen=True, eq=False)
class PlanContext:
    """What every window of a planning problem shares (two AC engines built once: one for
    the schedule, one for the shocked feeder's losses)."""

    network: Network
    profile: LoadProfile
    campuses: tuple[Campus, ...]
    campus_profiles: tuple[LoadProfile, ...]
    upstream: UpstreamConfig
    v2_min: float
    v2_max: float
    horizon_s: float
    step_s: float  # the plant's power-flow step, at which the upstream follows
    # the network model linearises at each window's own AC solution (meshed grids): the
    # window carries that solution as its point, and the losses stay out of the demand
    at_point: bool = False
    plain: PowerFlowEngine = field(init=False)
    shocked: PowerFlowEngine = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", PowerFlowEngine(self.network))
        object.__setattr__(self, "shocked", PowerFlowEngine(self.network))

    @property
    def campus_bus(self) -> np.ndarray:
        return np.array([c.bus for c in self.campuses], dtype=int)


def event_windows(events: Sequence[Event], horizon_s: float, cfg: PlanningConfig):
    """[(start, end)] around the events, merged where they overlap, within the horizon."""
    spans = sorted(
        (max(0.0, e.start_s - cfg.lead_s), min(horizon_s, e.end_s + cfg.tail_s)) for e in events
    )
    merged: list[list[float]] = []
    for t0, t1 in spans:
        if merged and t0 <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], t1)
        else:
            merged.append([t0, t1])
    return [(t0, t1) for t0, t1 in merged if t1 > t0]


def _samples(t0: float, t1: float, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Period starts, and sample instants (periods, samples) within each period."""
    n = max(1, math.ceil((t1 - t0) / period_s - 1e-9))
    starts = t0 + period_s * np.arange(n)
    k = max(1, round(period_s / SAMPLE_S))
    offsets = (np.arange(k) + 0.5) * period_s / k
    return starts, starts[:, None] + offsets[None, :]


def window(
    ctx: PlanContext,
    events: Sequence[Event],
    t0: float,
    t1: float,
    period_s: float,
    *,
    ai_mw: np.ndarray | None = None,
) -> ScenarioData:
    """One window's data (see the module); `ai_mw` (periods, campus) replaces the events'."""
    nw = ctx.network
    starts, inst = _samples(t0, t1, period_s)
    h = len(starts)
    f = ctx.profile.at(inst).mean(axis=1)
    if ai_mw is None:
        ai = campus_loads_mw(ctx.campuses, ctx.campus_profiles, events, inst.ravel())
        ai = ai.reshape(h, inst.shape[1], -1).mean(axis=1)
    else:
        ai = ai_mw
    base_ai = campus_loads_mw(ctx.campuses, ctx.campus_profiles, (), inst.ravel())
    base_ai = base_ai.reshape(h, inst.shape[1], -1).mean(axis=1)
    line_active = np.ones((h, nw.n_line), bool) & nw.line_in_service
    for e in events:
        if e.kind is EventKind.LINE_OUTAGE:
            out = (inst < e.end_s).any(axis=1) & (inst >= e.start_s).any(axis=1)
            line_active[out, e.line] = False
    energised = np.stack([nw.energised(line_active[k]) for k in range(h)])
    line_active &= energised[:, nw.line_from] & energised[:, nw.line_to]
    q_ai = np.array([c.q_per_p for c in ctx.campuses])
    at = ctx.campus_bus
    conv_p = np.outer(f, nw.base_load_p_mw) * energised
    conv_q = np.outer(f, nw.base_load_q_mvar) * energised
    ai = ai * energised[:, at] if len(at) else ai
    dp = conv_p + _at_buses(ai, at, nw.n_bus)
    dq = conv_q + _at_buses(ai * q_ai, at, nw.n_bus)
    schedule, dp_loss, dq_loss, first = _ac(ctx, f, base_ai, q_ai, dp, dq, line_active)
    point = None
    if ctx.at_point and first.converged:
        zero = np.zeros(nw.n_bus)
        point = at_solution(first, zero, zero, dp[0], dq[0])
    dt_h = period_s / 3600
    return ScenarioData(
        dt_h=dt_h,
        demand_p=dp + dp_loss,
        demand_q=dq + dq_loss,
        conv_p=conv_p,
        ai_p=ai,
        energised=energised,
        line_active=line_active,
        schedule=schedule,
        band=ctx.upstream.band_mw,
        ramp=ctx.upstream.ramp_mw_per_min * period_s / 60,
        step_h=ctx.step_s / 3600,
        v2_min=ctx.v2_min,
        v2_max=ctx.v2_max,
        point=point,
    )


def _at_buses(per_campus: np.ndarray, bus: np.ndarray, n_bus: int) -> np.ndarray:
    out = np.zeros((per_campus.shape[0], n_bus))
    for k, b in enumerate(bus):
        out[:, b] += per_campus[:, k]
    return out


def _ac(ctx, f, base_ai, q_ai, dp, dq, line_active):
    """Per period: the schedule (AC import without shocks or outages) and the AC losses at the
    period's demand as demand at each line's receiving end (none for a model taken at the
    window's own solution); and the first period's solution."""
    nw = ctx.network
    plain, shocked = ctx.plain, ctx.shocked
    h = len(f)
    schedule = np.zeros(h)
    loss_p, loss_q = np.zeros_like(dp), np.zeros_like(dq)
    at = ctx.campus_bus
    first = None
    for k in range(h):
        p0 = nw.base_load_p_mw * f[k] + _at_buses(base_ai[k : k + 1], at, nw.n_bus)[0]
        q0 = nw.base_load_q_mvar * f[k] + _at_buses(base_ai[k : k + 1] * q_ai, at, nw.n_bus)[0]
        schedule[k] = plain.solve(p0, q0).import_mw
        shocked.set_line_status(line_active[k])
        res = shocked.solve(dp[k], dq[k])
        first = res if first is None else first
        # beyond the nose: no losses to add (the model sheds what it must); a model taken at
        # the window's own solution takes its losses from there
        if res.converged and not ctx.at_point:
            losses = at_receiving_ends(nw, res, shocked.energised, np.zeros(nw.n_bus))
            loss_p[k], loss_q[k] = losses.p_mw, losses.q_mvar
    return schedule, loss_p, loss_q, first


def scenario_windows(
    ctx: PlanContext, events: Sequence[Event], cfg: PlanningConfig
) -> tuple[ScenarioData, ...]:
    """Every window of one scenario (none for a scenario without events)."""
    return tuple(
        window(ctx, events, t0, t1, cfg.period_s)
        for t0, t1 in event_windows(events, ctx.horizon_s, cfg)
    )


class Span(NamedTuple):
    """One block of a planned day: [t0_s, t1_s) in periods of period_s, and whether it
    begins with news (an event happens at its start)."""

    t0_s: float
    t1_s: float
    period_s: float
    news: bool


@dataclass(frozen=True)
class DayBlocks:
    """How operation recourse cuts a day: blocks of `block_s` (the dispatcher's lookahead) in
    periods of `period_s` (its re-dispatch interval), or of `fine_s` (the plant's step) where
    an oscillation is live. A block also ends where an event changes the system (its
    instants, to the plant's step): the next begins with that news, as the dispatcher learns
    of a step when it happens (it forecasts by persistence), so no block sees an event coming
    from before it starts. What is left of a period before the news (or the day's end) is a
    block of equal periods of at most a step, so every block is whole periods and the blocks
    tile the day exactly."""

    block_s: float
    period_s: float
    fine_s: float

    def spans(self, horizon_s: float, events: Sequence[Event]) -> list[Span]:
        """Each block of the day, in order."""
        news = []  # instants within a step of the last one are the same news
        for t in sorted({t for e in events for t in e.instants_s() if 0.0 < t < horizon_s}):
            if not news or t >= news[-1] + self.fine_s:
                news.append(t)
        out, t0, fresh = [], 0.0, False
        while t0 < horizon_s - 1e-6:
            fresh = fresh or any(t0 <= t < t0 + self.fine_s for t in news)  # at its first step
            t1 = min(t0 + self.block_s, horizon_s)
            cut = next((t for t in news if t0 + self.fine_s <= t < t1), None)
            if cut is not None:  # to the plant's step before it
                t1 = t0 + math.floor((cut - t0) / self.fine_s + 1e-9) * self.fine_s
            period = self._period(t0, t1, events)
            whole = t0 + math.floor((t1 - t0) / period + 1e-9) * period
            if whole > t0:
                out.append(Span(t0, whole, period, fresh))
            rest = t1 - whole
            if rest > 1e-6:  # of a period before the news or the day's end: in steps
                step = rest / math.ceil(rest / self.fine_s - 1e-9)
                out.append(Span(whole, t1, step, fresh and whole == t0))
            t0, fresh = t1, cut is not None
        return out

    def _period(self, t0: float, t1: float, events: Sequence[Event]) -> float:
        live = any(
            e.start_s < t1 and e.end_s > t0 for e in events if e.kind is EventKind.OSCILLATION
        )
        return self.fine_s if live else self.period_s


def scenario_days(
    ctx: PlanContext, events: Sequence[Event], blocks: DayBlocks
) -> tuple[ScenarioData, ...]:
    """The day's blocks of one scenario, in order."""
    return tuple(
        replace(window(ctx, events, t0, t1, period), news=news)
        for t0, t1, period, news in blocks.spans(ctx.horizon_s, events)
    )


def _mean_ai(ctx, scenarios, probability, t0: float, t1: float, period_s: float) -> np.ndarray:
    """Each campus's probability-weighted mean load per period of [t0, t1)."""
    _, inst = _samples(t0, t1, period_s)
    h, k = inst.shape
    mean = np.zeros((h, len(ctx.campuses)))
    for p, events in zip(probability, scenarios, strict=True):
        ai = campus_loads_mw(ctx.campuses, ctx.campus_profiles, events, inst.ravel())
        mean += p * ai.reshape(h, k, -1).mean(axis=1)
    return mean


def expected_window(
    ctx: PlanContext,
    scenarios: Sequence[Sequence[Event]],
    probability: np.ndarray,
    cfg: PlanningConfig,
) -> ScenarioData:
    """The expected-shock scenario: the whole horizon, campuses at their mean load."""
    mean = _mean_ai(ctx, scenarios, probability, 0.0, ctx.horizon_s, cfg.period_s)
    return window(ctx, (), 0.0, ctx.horizon_s, cfg.period_s, ai_mw=mean)


def expected_day(
    ctx: PlanContext,
    scenarios: Sequence[Sequence[Event]],
    probability: np.ndarray,
    blocks: DayBlocks,
) -> tuple[ScenarioData, ...]:
    """The expected-shock day in blocks (at the dispatcher's period: the mean of the
    scenarios' loads has no swing left to resolve)."""
    plain = DayBlocks(blocks.block_s, blocks.period_s, blocks.period_s)
    return tuple(
        window(ctx, (), t0, t1, period, ai_mw=_mean_ai(ctx, scenarios, probability, t0, t1, period))
        for t0, t1, period, _ in plain.spans(ctx.horizon_s, ())
    )
