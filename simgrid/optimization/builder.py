"""A MILP assembled from vectorised blocks, for two backends that solve the very same model.

`ArrayBuilder` collects columns and rows as arrays for highspy (built once, then only bounds
and costs change); `PyomoBuilder` turns the same calls into a pyomo model (the straightforward
rebuild-every-step formulation used as the reference in benchmarks and tests).

`integer` may be an array (broadcast to the block): a column is integral where it is True.
A block of rows is a list of terms (coef, cols), each broadcast to the block's shape: row r is
sum_k coef_k[r] * x[cols_k[r]], bounded by lo[r] <= . <= hi[r]. Objective terms are added the
same way (`add_cost`): the blocks of a model return their cost as terms, and the caller decides
where they go (the objective, or a scenario's recourse row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csc_matrix

from simgrid.units.base import INF, Term  # one definition, shared with the units


def _flat(value, shape: tuple[int, ...], dtype=float) -> np.ndarray:
    """A scalar or array broadcast to a block's shape, flattened in column order."""
    value = np.asarray(value, dtype)
    if value.ndim == 0:  # most bounds and costs (cheaper than a broadcast view)
        return np.full(math.prod(shape), value)
    if value.shape == shape:
        return value.ravel()
    return np.broadcast_to(value, shape).ravel()


def _block_shape(terms: Sequence[Term], lo, hi) -> tuple[int, ...]:
    shapes = {np.shape(x) for term in terms for x in term}
    shapes.update((np.shape(lo), np.shape(hi)))
    shapes.discard(())
    if len(shapes) <= 1:  # the common case: every term already has the block's shape
        return shapes.pop() if shapes else ()
    return np.broadcast_shapes(*shapes)


@dataclass(frozen=True, eq=False)
class Milp:
    cost: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integer: np.ndarray
    A: csc_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray


class ArrayBuilder:
    """Collects a MILP as arrays. With `matrix` given (from an earlier build of the same
    structure), only bounds and costs are collected: the cheap path of a persistent model;
    with that build's `row_shapes` too, row blocks take their shapes from it (checked against
    their first term) instead of broadcasting every term again."""

    def __init__(
        self, matrix: csc_matrix | None = None, row_shapes: list[tuple[int, ...]] | None = None
    ) -> None:
        self._matrix = matrix
        self.collects_matrix = matrix is None
        self._known_shapes = row_shapes if matrix is not None else None
        self.row_shapes: list[tuple[int, ...]] = []
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []
        self._cost_terms: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_cols = 0
        self.n_rows = 0

    def add_vars(
        self,
        shape: int | tuple[int, ...],
        lb=0.0,
        ub=INF,
        cost=0.0,
        integer: bool | np.ndarray = False,
    ) -> np.ndarray:
        ids = np.arange(self.n_cols, self.n_cols + int(np.prod(shape))).reshape(shape)
        n = ids.size
        self._lb.append(_flat(lb, ids.shape))
        self._ub.append(_flat(ub, ids.shape))
        self._cost.append(_flat(cost, ids.shape))
        self._int.append(_flat(integer, ids.shape, bool))
        self.n_cols += n
        return ids

    def add_rows(self, terms: Sequence[Term], lo=-INF, hi=INF) -> np.ndarray:
        shape = self._shape(terms, lo, hi)
        self.row_shapes.append(shape)
        n = int(np.prod(shape))
        rows = np.arange(self.n_rows, self.n_rows + n).reshape(shape)
        for coef, cols in terms if self._matrix is None else ():
            c = _flat(coef, shape)
            k = _flat(cols, shape, int)
            keep = c != 0
            self._rows.append(rows.ravel()[keep])
            self._cols.append(k[keep])
            self._vals.append(c[keep])
        self._lo.append(_flat(lo, shape))
        self._hi.append(_flat(hi, shape))
        self.n_rows += n
        return rows

    def _shape(self, terms: Sequence[Term], lo, hi) -> tuple[int, ...]:
        known = self._known_shapes
        if known is None:
            return _block_shape(terms, lo, hi)
        k = len(self.row_shapes)
        shape = known[k] if k < len(known) else None
        if shape is None or (
            np.shape(terms[0][1]) != shape and _block_shape(terms, lo, hi) != shape
        ):
            raise ValueError("the model structure changed: rebuild the matrix")
        return shape

    def add_sum_rows(self, cols: np.ndarray, coef=1.0, lo=-INF, hi=INF) -> np.ndarray:
        """Rows that each sum many columns: row r is sum_k coef[r, k] * x[cols[r, k]]."""
        cols = np.atleast_2d(np.asarray(cols))
        return self.add_rows(
            [(np.broadcast_to(coef, cols.shape)[:, k], cols[:, k]) for k in range(cols.shape[1])],
            lo=lo,
            hi=hi,
        )

    def add_cost(self, terms: Sequence[Term]) -> None:
        """Add sum_k coef_k * x[cols_k] to the objective."""
        for coef, cols in terms:
            c = np.asarray(cols)
            self._cost_terms.append((c.ravel(), _flat(coef, c.shape)))

    def build(self) -> Milp:
        cat = np.concatenate
        if self._matrix is not None:
            A = self._matrix
            if A.shape != (self.n_rows, self.n_cols):
                raise ValueError("the model structure changed: rebuild the matrix")
        else:
            A = csc_matrix(
                (cat(self._vals), (cat(self._rows), cat(self._cols))),
                shape=(self.n_rows, self.n_cols),
            )
            A.sum_duplicates()
        cost = cat(self._cost) if self._cost else np.zeros(0)
        for cols, coef in self._cost_terms:
            np.add.at(cost, cols, coef)
        return Milp(
            cost,
            cat(self._lb),
            cat(self._ub),
            cat(self._int),
            A,
            cat(self._lo),
            cat(self._hi),
        )


class PyomoBuilder:
    """The same calls, building a pyomo ConcreteModel term by term."""

    def __init__(self) -> None:
        import pyomo.environ as pyo

        self.pyo = pyo
        self.model = pyo.ConcreteModel()
        self.model.rows = pyo.ConstraintList()
        self.collects_matrix = True
        self.vars: list = []
        self._costs: list[np.ndarray] = []
        self._cost_terms: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_cols = 0

    def add_vars(
        self,
        shape: int | tuple[int, ...],
        lb=0.0,
        ub=INF,
        cost=0.0,
        integer: bool | np.ndarray = False,
    ) -> np.ndarray:
        pyo = self.pyo
        ids = np.arange(self.n_cols, self.n_cols + int(np.prod(shape))).reshape(shape)
        lbs, ubs, ints = _flat(lb, ids.shape), _flat(ub, ids.shape), _flat(integer, ids.shape, bool)
        self._costs.append(_flat(cost, ids.shape))
        block = pyo.Var(range(ids.size), domain=pyo.Reals)
        self.model.add_component(f"x{len(self._costs)}", block)
        for i in range(ids.size):
            v = block[i]
            if ints[i]:
                v.domain = pyo.Integers
            v.setlb(None if np.isinf(lbs[i]) else float(lbs[i]))
            v.setub(None if np.isinf(ubs[i]) else float(ubs[i]))
            self.vars.append(v)
        self.n_cols += ids.size
        return ids

    def add_rows(self, terms: Sequence[Term], lo=-INF, hi=INF) -> np.ndarray:
        shape = _block_shape(terms, lo, hi)
        n = int(np.prod(shape))
        coefs = [_flat(c, shape) for c, _ in terms]
        cols = [_flat(k, shape, int) for _, k in terms]
        los, his = _flat(lo, shape), _flat(hi, shape)
        for r in range(n):
            expr = sum(
                c[r] * self.vars[k[r]] for c, k in zip(coefs, cols, strict=True) if c[r] != 0
            )
            if isinstance(expr, int | float) or (np.isinf(los[r]) and np.isinf(his[r])):
                continue  # an empty or free row constrains nothing
            self.model.rows.add(
                (
                    None if np.isinf(los[r]) else float(los[r]),
                    expr,
                    None if np.isinf(his[r]) else float(his[r]),
                )
            )
        return np.arange(n).reshape(shape)

    add_sum_rows = ArrayBuilder.add_sum_rows

    def add_cost(self, terms: Sequence[Term]) -> None:
        for coef, cols in terms:
            c = np.asarray(cols)
            self._cost_terms.append((c.ravel(), _flat(coef, c.shape)))

    @property
    def cost(self) -> np.ndarray:
        """Objective coefficients in builder order."""
        cost = np.concatenate(self._costs) if self._costs else np.zeros(0)
        for cols, coef in self._cost_terms:
            np.add.at(cost, cols, coef)
        return cost
