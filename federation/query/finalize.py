"""Turn the summed vector into the result table, with exact rational arithmetic.

Each released number is computed from the exact summed integers (``n``, ``S1 = ΣX``,
``S2 = ΣX²`` with ``X = round(x·2**F)``) and rounded to float once, correctly:

* ``SUM = S1 / 2**F`` (an exact ``int`` for integer columns)
* ``AVG = S1 / (n·2**F)``
* ``VAR_POP = (n·S2 - S1²) / (n²·2**2F)``, ``VAR_SAMP = (n·S2 - S1²) / (n(n-1)·2**2F)``
* ``STDDEV_* = sqrt(VAR_*)``, the square root of the exact rational, correctly rounded.

The bivariate aggregates ``f(y, x)`` use the pairs where both are non-NULL: their count
``n``, ``Sx, Sy, Sxx, Syy`` and ``Sxy = ΣXY``, with ``Cxy = n·Sxy - Sx·Sy``,
``Cxx = n·Sxx - Sx²``, ``Cyy = n·Syy - Sy²`` (scaled by the fraction bits):

* ``COVAR_POP = Cxy / n²``, ``COVAR_SAMP = Cxy / (n(n-1))``
* ``REGR_SLOPE = Cxy / Cxx``, ``REGR_INTERCEPT = (Sy·Cxx - Sx·Cxy) / (n·Cxx)``
* ``REGR_R2 = Cxy² / (Cxx·Cyy)`` (1 when ``Cyy = 0 < Cxx``)
* ``CORR = sign(Cxy)·sqrt(Cxy² / (Cxx·Cyy))``, correctly rounded.

Empty aggregates are SQL NULL (``None``): SUM/AVG/VAR_POP/STDDEV_POP/COVAR_POP of no
non-NULL value (pair), VAR_SAMP/STDDEV_SAMP/COVAR_SAMP of fewer than two; CORR when
either variance is zero, REGR_SLOPE/REGR_INTERCEPT/REGR_R2 when ``x``'s variance is
zero (PostgreSQL's semantics; DuckDB returns NaN for CORR and REGR_SLOPE there).

Groups: every combination of the GROUP BY keys' non-NULL groups is reported, with
count 0 and NULL aggregates when it has no rows (zero cells of a cross-tabulation,
empty histogram bins); combinations involving a NULL group or an out-of-range
WIDTH_BUCKET bucket only when they have rows. HAVING then keeps the rows where it is
true, evaluated exactly (:func:`federation.query.outputs.evaluate`).

Minimum cell size (``min_cell_size=k``, the dataset policies' threshold): a group
with ``0 < rows < k`` is *suppressed*: its row is kept with its labels, and every
aggregate and arithmetic output, the counts included, is NULL; HAVING sees NULL
aggregates too (so a comparison drops the row). Zero cells are not suppressed. The
decision reads the summed count only, so it reveals nothing a node's vector holds.

This module checks the vector and assembles the table (ORDER BY, LIMIT, OFFSET); the
fields are read by :mod:`federation.query.decode`, the aggregates' exact values computed
by :mod:`federation.query.aggregate_values` and the rows of the group slots (HAVING,
suppression) built by :mod:`federation.query.result_rows`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from federation.errors import ProtocolError
from federation.query.aggregate_values import sqrt_ratio
from federation.query.bind import BoundOrder, BoundQuery
from federation.query.decode import check_consistent, decode_fields
from federation.query.result_rows import Groups, shared_rows, slot_positions, slot_rows
from federation.table import Cell, ResultTable, paused_gc

__all__ = ["finalize", "sqrt_ratio"]


def _sort(rows: list[tuple[Cell, ...]], order_by: tuple[BoundOrder, ...]) -> list[tuple[Cell, ...]]:
    """Stable multi-key sort with SQL NULL placement (default NULLS LAST)."""
    for key in reversed(order_by):
        present = [r for r in rows if r[key.index] is not None]
        missing = [r for r in rows if r[key.index] is None]
        # reverse=True keeps equal keys in their previous order, so the sort stays stable.
        present.sort(key=lambda r: r[key.index], reverse=key.descending)  # type: ignore[arg-type,return-value]
        rows = missing + present if key.nulls_first else present + missing
    return rows


def finalize(
    bound: BoundQuery, total: npt.NDArray[np.uint64], *, min_cell_size: int = 1
) -> ResultTable:
    """Build the result table from the elementwise sum (mod 2**64) of all node vectors.

    Groups with ``0 < rows < min_cell_size`` are suppressed (see the module docstring).

    Raises:
        ProtocolError: ``total`` has the wrong shape or type, or is not a sum of valid
            node vectors for this query.
    """
    arr = np.asarray(total)
    if arr.dtype != np.uint64 or arr.shape != (bound.vector_length,):
        raise ProtocolError(
            f"expected a uint64 vector of length {bound.vector_length}, got {arr.dtype} of "
            f"shape {arr.shape}"
        )
    layout = bound.layout
    fields = decode_fields(layout, np.ascontiguousarray(arr))
    keys = bound.group_keys
    key_index = {k.expression: i for i, k in enumerate(keys)}
    # Every key's labels with NULL, then "outside the slot's grouping set" (NULL too),
    # and which of them are reported only with rows.
    choices = [(*k.labels, None, None) for k in keys]
    sparse = [{*k.sparse, len(k.labels)} for k in keys]
    positions, slot_sets = slot_positions(layout)
    # Slots whose fields are all zero (no rows: the zero cells) share one set of
    # values, so their aggregates are computed once; the others one by one.
    empty = np.ones(layout.slots, dtype=np.bool_)
    for column in fields.values():
        empty &= column == 0
    sparse_slot = np.zeros(layout.slots, dtype=np.bool_)
    for pos, s in zip(positions, sparse, strict=True):
        sparse_slot |= np.isin(pos, sorted(s))
    groups = Groups(choices, sparse, positions, key_index, slot_sets, sparse_slot)
    kept_slots: list[npt.NDArray[np.int64]] = []
    kept_columns: list[list[npt.NDArray[Any]]] = []
    shared = np.flatnonzero(empty & ~sparse_slot)
    if len(shared):
        zero = dict.fromkeys(fields, 0)
        check_consistent(bound, zero)
        slots, columns = shared_rows(bound, zero, shared, groups)
        kept_slots.append(slots)
        kept_columns.append(columns)
    others = np.flatnonzero(~empty)
    if len(others):
        slots, columns = slot_rows(bound, fields, others, groups, min_cell_size)
        kept_slots.append(slots)
        kept_columns.append(columns)
    names = tuple(o.name for o in bound.outputs)
    kinds = tuple(o.kind for o in bound.outputs)
    start = bound.offset or 0
    stop = None if bound.limit is None else start + bound.limit
    ordered: list[list[Cell]] = [[] for _ in bound.outputs]
    if kept_slots:
        order = np.argsort(np.concatenate(kept_slots), kind="stable")
        ordered = [
            np.concatenate([cols[i] for cols in kept_columns])[order].tolist()
            for i in range(len(bound.outputs))
        ]
    if not bound.order_by:
        return ResultTable.from_columns(names, kinds, [c[start:stop] for c in ordered])
    with paused_gc():
        rows = _sort(list(zip(*ordered, strict=True)), bound.order_by)
    return ResultTable(columns=names, kinds=kinds, rows=tuple(rows[start:stop]))
