"""Stage-I's risk measure over scenarios, with its distributionally robust dual reformulations.

rho_P(h) = (1 - beta) E_P[h] + beta CVaR_alpha,P(h), worst case over an ambiguity set around
the nominal distribution p of the scenarios (Rockafellar & Uryasev 2000 for CVaR; with fixed
support, min-max swap and LP duality keep the planning problem one MILP):

* none (SAA) and deterministic: rho_p(h) = (1 - beta) sum p h + beta (eta + sum p z / (1 - a)),
  z_j >= h_j - eta, z >= 0.
* Wasserstein (type 1, radius epsilon, distance d_ij; Mohajerin Esfahani & Kuhn 2018):
  beta eta + lambda epsilon + sum_i p_i s_i, s_i >= (1 - beta) h_j + beta z_j / (1 - alpha) -
  lambda d_ij for all i, j, lambda >= 0.
* Total variation (radius gamma: 1/2 ||P - p||_1 <= gamma): beta eta + a + 2 gamma lambda +
  sum_s p_s w_s, w_s >= (1 - beta) h_s + beta z_s / (1 - alpha) - a, -lambda <= w_s <= lambda.

`worst_case` solves the inner maximisation directly, as a primal LP over distributions (a
transport plan for Wasserstein, the ball for total variation; CVaR as max{sum w h : 0 <= w <=
P / (1 - alpha), sum w = 1}): at a fixed first stage it returns the worst-case value -- equal to
the dual's -- and the worst-case distribution. Jiang & Guan's closed form sup E_P[g] = gamma max
g + (1 - gamma) CVaR_gamma,p(g) is the tests' independent check (tests/reference.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simgrid.config import Ambiguity
from simgrid.optimization.builder import INF, ArrayBuilder, Term
from simgrid.optimization.solve import solve


@dataclass(frozen=True)
class RiskSpec:
    alpha: float
    beta: float
    ambiguity: Ambiguity
    radius: float = 0.0


@dataclass(frozen=True, eq=False)
class RiskHandles:
    eta: np.ndarray  # (1,) value at risk
    z: np.ndarray  # (S,) excess over eta
    lam: np.ndarray | None = None  # (1,) price of the radius
    s: np.ndarray | None = None  # (S,) Wasserstein
    a: np.ndarray | None = None  # (1,) total variation
    w: np.ndarray | None = None  # (S,) total variation


def define_risk(
    b, h: np.ndarray, p: np.ndarray, spec: RiskSpec, distance: np.ndarray | None = None
) -> tuple[RiskHandles, list[Term]]:
    """Rows and objective terms of the (worst-case) risk of the recourse columns `h`."""
    n = len(h)
    k = spec.beta / (1.0 - spec.alpha)
    eta = b.add_vars(1, -INF, INF)
    z = b.add_vars(n, 0.0, INF)
    b.add_rows([(1.0, z), (-1.0, h), (1.0, np.broadcast_to(eta, (n,)))], lo=0.0)
    if spec.ambiguity in (Ambiguity.NONE, Ambiguity.DETERMINISTIC):
        cost = [((1.0 - spec.beta) * p, h), (spec.beta, eta), (k * p, z)]
        return RiskHandles(eta, z), cost
    lam = b.add_vars(1, 0.0, INF)
    if spec.ambiguity is Ambiguity.WASSERSTEIN:
        if distance is None:
            raise ValueError("a Wasserstein ambiguity set needs the scenarios' distance")
        s = b.add_vars(n, -INF, INF)
        grid = (n, n)
        b.add_rows(
            [
                (1.0, np.broadcast_to(s[:, None], grid)),
                (-(1.0 - spec.beta), np.broadcast_to(h[None, :], grid)),
                (-k, np.broadcast_to(z[None, :], grid)),
                (distance, np.broadcast_to(lam, grid)),
            ],
            lo=0.0,
        )
        cost = [(spec.beta, eta), (spec.radius, lam), (p, s)]
        return RiskHandles(eta, z, lam, s=s), cost
    a = b.add_vars(1, -INF, INF)
    w = b.add_vars(n, -INF, INF)
    lam_n = np.broadcast_to(lam, (n,))
    b.add_rows(
        [(1.0, w), (-(1.0 - spec.beta), h), (-k, z), (1.0, np.broadcast_to(a, (n,)))], lo=0.0
    )
    b.add_rows([(1.0, w), (-1.0, lam_n)], hi=0.0)
    b.add_rows([(1.0, w), (1.0, lam_n)], lo=0.0)
    cost = [(spec.beta, eta), (1.0, a), (2.0 * spec.radius, lam), (p, w)]
    return RiskHandles(eta, z, lam, a=a, w=w), cost


@dataclass(frozen=True, eq=False)
class WorstCase:
    value: float  # the worst-case risk of h over the ambiguity set
    probability: np.ndarray  # the distribution attaining it


def worst_case(
    h: np.ndarray, p: np.ndarray, spec: RiskSpec, distance: np.ndarray | None = None
) -> WorstCase:
    """The inner maximisation over distributions, solved as a primal LP (see the module)."""
    n = len(h)
    b = ArrayBuilder()
    prob = b.add_vars(n, 0.0, INF)
    w = b.add_vars(n, 0.0, INF)  # CVaR's weights
    b.add_sum_rows(prob[None, :], lo=1.0, hi=1.0)
    b.add_sum_rows(w[None, :], lo=1.0, hi=1.0)
    b.add_rows([(1.0, w), (-1.0 / (1.0 - spec.alpha), prob)], hi=0.0)
    if spec.ambiguity in (Ambiguity.NONE, Ambiguity.DETERMINISTIC):
        b.add_rows([(1.0, prob)], lo=p, hi=p)
    elif spec.ambiguity is Ambiguity.WASSERSTEIN:
        if distance is None:
            raise ValueError("a Wasserstein ambiguity set needs the scenarios' distance")
        plan = b.add_vars((n, n), 0.0, INF)  # mass moved from scenario i to scenario j
        b.add_sum_rows(plan, lo=p, hi=p)  # what leaves each i is its nominal mass
        arrive = np.concatenate([plan.T, prob[:, None]], axis=1)
        coef = np.concatenate([np.ones((n, n)), -np.ones((n, 1))], axis=1)
        b.add_sum_rows(arrive, coef, lo=0.0, hi=0.0)  # what arrives at j is P_j
        b.add_sum_rows(plan.reshape(1, -1), distance.reshape(1, -1), hi=spec.radius)
    else:
        up = b.add_vars(n, 0.0, INF)
        down = b.add_vars(n, 0.0, INF)
        b.add_rows([(1.0, prob), (-1.0, up), (1.0, down)], lo=p, hi=p)
        b.add_sum_rows(np.concatenate([up, down])[None, :], hi=2.0 * spec.radius)
    b.add_cost([(-(1.0 - spec.beta) * h, prob), (-spec.beta * h, w)])
    res = solve(b.build(), time_limit_s=60.0, mip_gap=0.0)
    if res.x is None:
        raise RuntimeError(f"the worst-case LP ended {res.termination.value}")
    return WorstCase(-res.objective, np.clip(res.x[prob], 0.0, None))


def cvar(h: np.ndarray, p: np.ndarray, alpha: float) -> tuple[float, float]:
    """(VaR, CVaR) of h at level alpha under p (Rockafellar & Uryasev)."""
    order = np.argsort(h)
    cum = np.cumsum(p[order])
    var = float(h[order][np.searchsorted(cum, alpha - 1e-12)])
    return var, var + float(np.sum(p * np.maximum(h - var, 0.0))) / (1.0 - alpha)


def nominal_risk(h: np.ndarray, p: np.ndarray, spec: RiskSpec) -> float:
    """(1 - beta) E_p[h] + beta CVaR_alpha,p(h)."""
    return (1.0 - spec.beta) * float(p @ h) + spec.beta * cvar(h, p, spec.alpha)[1]
