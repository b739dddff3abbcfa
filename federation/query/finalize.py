"""Turn the summed vector into the result table, with exact rational arithmetic.

Each released number is computed from the exact summed integers (``n``, ``S1 = ΣX``,
``S2 = ΣX²`` with ``X = round(x·2**F)``) and rounded to float once, correctly:

* ``SUM = S1 / 2**F`` (an exact ``int`` for integer columns)
* ``AVG = S1 / (n·2**F)``
* ``VAR_POP = (n·S2 - S1²) / (n²·2**2F)``, ``VAR_SAMP = (n·S2 - S1²) / (n(n-1)·2**2F)``
* ``STDDEV_* = sqrt(VAR_*)``, the square root of the exact rational, correctly rounded.

Empty aggregates are SQL NULL (``None``): SUM/AVG/VAR_POP/STDDEV_POP of no non-NULL
value, VAR_SAMP/STDDEV_SAMP of fewer than two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.encoding import DIGIT_BITS, MAX_NODES, MAX_ROWS_PER_NODE
from federation.errors import ProtocolError
from federation.query.bind import BoundOrder, BoundQuery
from federation.query.layout import FieldKind, VectorLayout
from federation.query.parse import Aggregate, AggregateFunction, GroupColumn
from federation.table import Cell, ResultTable

__all__ = ["finalize", "sqrt_ratio"]

_SQRT_BITS = 120  # bits of the integer square root before the final rounding
_MIN_VALUES = {  # fewer non-NULL values give SQL NULL
    AggregateFunction.COUNT: 0,
    AggregateFunction.SUM: 1,
    AggregateFunction.AVG: 1,
    AggregateFunction.VAR_POP: 1,
    AggregateFunction.STDDEV_POP: 1,
    AggregateFunction.VAR_SAMP: 2,
    AggregateFunction.STDDEV_SAMP: 2,
}


def sqrt_ratio(num: int, den: int) -> float:
    """``sqrt(num / den)`` correctly rounded to a float (``num >= 0``, ``den > 0``).

    >>> sqrt_ratio(2, 1) == 2 ** 0.5
    True
    """
    if num < 0 or den <= 0:
        raise ValueError("sqrt_ratio needs num >= 0 and den > 0")
    if num == 0:
        return 0.0
    shift = max(0, (2 * _SQRT_BITS - (num.bit_length() - den.bit_length())) // 2 + 1)
    scaled, rest = divmod(num << (2 * shift), den)
    root = math.isqrt(scaled)
    if rest or root * root != scaled:
        # Inexact: the true root lies strictly between root and root + 1 (scaled by
        # 2**shift); an odd sticky bit keeps the final rounding correct.
        return (2 * root + 1) / (1 << (shift + 1))
    return root / (1 << shift)


def _decode_slots(layout: VectorLayout, total: npt.NDArray[np.uint64]) -> list[dict[Any, int]]:
    """Every slot's exact field values (keyed by (kind, column))."""
    signed = total.view(np.int64).reshape(layout.slots, layout.slot_width)
    out: list[dict[Any, int]] = []
    for slot_digits in signed.tolist():
        values: dict[Any, int] = {}
        for f in layout.fields:
            value = 0
            for j in range(f.digits - 1, -1, -1):
                value = (value << DIGIT_BITS) + slot_digits[f.offset + j]
            values[(f.kind, f.column)] = value
        out.append(values)
    return out


def _check_consistent(bound: BoundQuery, values: dict[Any, int]) -> None:
    rows = values[(FieldKind.ROWS, None)]
    ok = 0 <= rows <= MAX_NODES * MAX_ROWS_PER_NODE
    for agg in bound.aggregations:
        name = agg.column.name
        n = values[(FieldKind.COUNT, name)]
        ok = ok and 0 <= n <= rows
        s1 = values.get((FieldKind.SUM, name), 0)
        s2 = values.get((FieldKind.SUM_SQUARES, name))
        if s2 is not None:
            ok = ok and s2 >= 0 and n * s2 >= s1 * s1
        if n == 0:
            ok = ok and s1 == 0 and not s2
    if not ok:
        raise ProtocolError(
            "the summed vector is not a sum of valid node vectors for this query (counts or "
            "sums are inconsistent); nothing can be released from it"
        )


def _fraction_bits(bound: BoundQuery, column: str) -> int:
    for a in bound.aggregations:
        if a.column.name == column and a.format is not None:
            return a.format.fraction_bits
    raise KeyError(column)


def _cell(bound: BoundQuery, agg: Aggregate, values: dict[Any, int]) -> Cell:
    if agg.column is None:
        return values[(FieldKind.ROWS, None)]
    n = values[(FieldKind.COUNT, agg.column)]
    func = agg.function
    if func is AggregateFunction.COUNT:
        return n
    if n < _MIN_VALUES[func]:
        return None
    f = _fraction_bits(bound, agg.column)
    s1 = values[(FieldKind.SUM, agg.column)]
    if func is AggregateFunction.SUM:
        return s1 if f == 0 else s1 / (1 << f)
    if func is AggregateFunction.AVG:
        return s1 / (n << f)
    return _moment(func, n, s1, values[(FieldKind.SUM_SQUARES, agg.column)], f)


def _moment(func: AggregateFunction, n: int, s1: int, s2: int, f: int) -> float:
    """A variance or standard deviation from exact ``n``, ``S1``, ``S2`` (``F`` fraction bits)."""
    spread = n * s2 - s1 * s1
    pop = func in (AggregateFunction.VAR_POP, AggregateFunction.STDDEV_POP)
    den = (n * n if pop else n * (n - 1)) << (2 * f)
    if func in (AggregateFunction.VAR_POP, AggregateFunction.VAR_SAMP):
        return spread / den
    return sqrt_ratio(spread, den)


def _sort(rows: list[tuple[Cell, ...]], order_by: tuple[BoundOrder, ...]) -> list[tuple[Cell, ...]]:
    """Stable multi-key sort with SQL NULL placement (default NULLS LAST)."""
    for key in reversed(order_by):
        present = [r for r in rows if r[key.index] is not None]
        missing = [r for r in rows if r[key.index] is None]
        # reverse=True keeps equal keys in their previous order, so the sort stays stable.
        present.sort(key=lambda r: r[key.index], reverse=key.descending)  # type: ignore[arg-type,return-value]
        rows = missing + present if key.nulls_first else present + missing
    return rows


def finalize(bound: BoundQuery, total: npt.NDArray[np.uint64]) -> ResultTable:
    """Build the result table from the elementwise sum (mod 2**64) of all node vectors.

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
    slots = _decode_slots(layout, np.ascontiguousarray(arr))
    rows: list[tuple[Cell, ...]] = []
    for slot, values in enumerate(slots):
        _check_consistent(bound, values)
        if bound.group_columns and values[(FieldKind.ROWS, None)] == 0:
            continue
        labels = dict(
            zip((c.name for c in bound.group_columns), layout.slot_labels(slot), strict=True)
        )
        row: list[Cell] = []
        for out in bound.outputs:
            src = out.source
            row.append(
                labels[src.column] if isinstance(src, GroupColumn) else _cell(bound, src, values)
            )
        rows.append(tuple(row))
    if bound.order_by:
        rows = _sort(rows, bound.order_by)
    start = bound.offset or 0
    stop = None if bound.limit is None else start + bound.limit
    return ResultTable(
        columns=tuple(o.name for o in bound.outputs),
        kinds=tuple(o.kind for o in bound.outputs),
        rows=tuple(rows[start:stop]),
    )
