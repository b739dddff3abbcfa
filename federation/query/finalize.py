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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.encoding import DIGIT_BITS, MAX_NODES, MAX_ROWS_PER_NODE
from federation.errors import ProtocolError
from federation.query.bind import BoundOrder, BoundQuery
from federation.query.bind_aggregates import pair_keys, product_fields
from federation.query.layout import FieldKind, VectorLayout
from federation.query.outputs import (
    Aggregate,
    AggregateFunction,
    Binary,
    Grouping,
    Negative,
    Number,
    Text,
    Value,
    ValueExpr,
    children,
    evaluate,
)
from federation.table import Cell, ColumnKind, ResultTable, paused_gc

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
    AggregateFunction.COVAR_POP: 1,
    AggregateFunction.COVAR_SAMP: 2,
    AggregateFunction.CORR: 2,
    AggregateFunction.REGR_SLOPE: 2,
    AggregateFunction.REGR_INTERCEPT: 2,
    AggregateFunction.REGR_R2: 2,
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


def _decode_fields(
    layout: VectorLayout, total: npt.NDArray[np.uint64]
) -> dict[Any, npt.NDArray[Any]]:
    """Every field's exact values over all slots, keyed by (kind, column): int64 when
    every value fits, else Python ints (object array)."""
    digits_all = total.reshape(layout.slots, layout.slot_width)
    out: dict[Any, npt.NDArray[Any]] = {}
    for f in layout.fields:
        digits = digits_all[:, f.offset : f.offset + f.digits]
        # Horner in uint64 wraps mod 2**64: exact wherever the value fits in int64,
        # which a float estimate (relative error far below 2**-40) confirms.
        wrapped = digits[:, f.digits - 1].copy()
        estimate = digits[:, f.digits - 1].view(np.int64).astype(np.float64)
        for j in range(f.digits - 2, -1, -1):
            wrapped = wrapped * np.uint64(1 << DIGIT_BITS) + digits[:, j]
            estimate = estimate * float(1 << DIGIT_BITS) + digits[:, j].view(np.int64)
        values: npt.NDArray[Any] = wrapped.view(np.int64)
        big = np.flatnonzero(np.abs(estimate) >= 2.0**62)
        if f.digits > 1 and len(big):
            values = values.astype(object)
            signed = digits.view(np.int64)
            for i in big.tolist():
                value = 0
                for j in range(f.digits - 1, -1, -1):
                    value = (value << DIGIT_BITS) + int(signed[i, j])
                values[i] = value
        out[(f.kind, f.column)] = values
    return out


def _reads_labels(expr: ValueExpr) -> bool:
    """True unless ``expr`` reads only aggregates and literals (conservative)."""
    if isinstance(expr, Aggregate | Number | Text):
        return False
    kids = list(children(expr))
    return not kids or any(_reads_labels(k) for k in kids)


def _check_consistent(bound: BoundQuery, values: dict[Any, int]) -> None:
    rows = values[(FieldKind.ROWS, None)]
    ok = 0 <= rows <= MAX_NODES * MAX_ROWS_PER_NODE
    for agg in bound.aggregations:
        name = agg.key
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


def _product_sum(
    bound: BoundQuery, agg: Aggregate, values: dict[Any, int]
) -> int | Fraction | None:
    """The exact ``SUM(a * b)`` (NULL when no row has both values)."""
    count_key, field, bits = product_fields(bound, agg)
    if values[(FieldKind.COUNT, count_key)] == 0:
        return None
    return values[field] if bits == 0 else Fraction(values[field], 1 << bits)


def _cell(bound: BoundQuery, agg: Aggregate, values: dict[Any, int]) -> Cell:  # noqa: PLR0911
    if agg.column2 is not None and not agg.function.bivariate:
        product = _product_sum(bound, agg, values)
        return product if product is None or isinstance(product, int) else float(product)
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


def _bivariate(  # noqa: PLR0911 - one formula per function
    bound: BoundQuery, agg: Aggregate, values: dict[Any, int]
) -> Fraction | float | None:
    """A bivariate aggregate ``f(y, x)``, exact (CORR: correctly rounded), or NULL."""
    assert agg.column is not None
    assert agg.column2 is not None
    ykey, xkey, pkey = pair_keys(bound.schema, bound.products, agg)
    func = agg.function
    n = values[(FieldKind.COUNT, ykey)]
    if n < _MIN_VALUES[func]:
        return None
    fy, fx = _fraction_bits(bound, agg.column), _fraction_bits(bound, agg.column2)
    sy, sx = values[(FieldKind.SUM, ykey)], values[(FieldKind.SUM, xkey)]
    cxy = n * values[(FieldKind.SUM_PRODUCTS, pkey)] - sx * sy  # scaled by 2**(fx+fy)
    if func is AggregateFunction.COVAR_POP:
        return Fraction(cxy, (n * n) << (fx + fy))
    if func is AggregateFunction.COVAR_SAMP:
        return Fraction(cxy, (n * (n - 1)) << (fx + fy))
    cxx = n * values[(FieldKind.SUM_SQUARES, xkey)] - sx * sx  # scaled by 2**(2fx)
    if func is AggregateFunction.REGR_SLOPE:
        return None if cxx == 0 else Fraction(cxy << fx, cxx << fy)
    if func is AggregateFunction.REGR_INTERCEPT:
        return None if cxx == 0 else Fraction(sy * cxx - sx * cxy, (n * cxx) << fy)
    cyy = n * values[(FieldKind.SUM_SQUARES, ykey)] - sy * sy  # scaled by 2**(2fy)
    if func is AggregateFunction.REGR_R2:
        if cxx == 0:
            return None
        return Fraction(1) if cyy == 0 else Fraction(cxy * cxy, cxx * cyy)
    if cxx == 0 or cyy == 0:  # CORR
        return None
    root = sqrt_ratio(cxy * cxy, cxx * cyy)
    return root if cxy >= 0 else -root


def _exact(  # noqa: PLR0911 - one formula per function
    bound: BoundQuery, agg: Aggregate, values: dict[Any, int]
) -> Value:
    """An aggregate's exact value (square roots: correctly rounded floats), or NULL."""
    if agg.function.bivariate:
        return _bivariate(bound, agg, values)
    if agg.column2 is not None:
        return _product_sum(bound, agg, values)
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
        return s1 if f == 0 else Fraction(s1, 1 << f)
    if func is AggregateFunction.AVG:
        return Fraction(s1, n << f)
    spread = n * values[(FieldKind.SUM_SQUARES, agg.column)] - s1 * s1
    pop = func in (AggregateFunction.VAR_POP, AggregateFunction.STDDEV_POP)
    den = (n * n if pop else n * (n - 1)) << (2 * f)
    if func in (AggregateFunction.VAR_POP, AggregateFunction.VAR_SAMP):
        return Fraction(spread, den)
    return sqrt_ratio(spread, den)


def _to_cell(value: Value, kind: ColumnKind) -> Cell:
    """Round an exact value once to its output kind."""
    if value is None or isinstance(value, bool | str):
        return value
    if kind is ColumnKind.INTEGER:
        return int(value)  # integral by construction (see bind_clauses._integral)
    return float(value)


def _sort(rows: list[tuple[Cell, ...]], order_by: tuple[BoundOrder, ...]) -> list[tuple[Cell, ...]]:
    """Stable multi-key sort with SQL NULL placement (default NULLS LAST)."""
    for key in reversed(order_by):
        present = [r for r in rows if r[key.index] is not None]
        missing = [r for r in rows if r[key.index] is None]
        # reverse=True keeps equal keys in their previous order, so the sort stays stable.
        present.sort(key=lambda r: r[key.index], reverse=key.descending)  # type: ignore[arg-type,return-value]
        rows = missing + present if key.nulls_first else present + missing
    return rows


def _object_column(values: list[Any]) -> npt.NDArray[Any]:
    return np.fromiter(values, dtype=object, count=len(values))  # the cells as they are


def _grouping_value(bound: BoundQuery, expr: Grouping, grouping_set: int) -> int:
    """``GROUPING(keys)`` in a row of ``grouping_set``: a 1 bit per key outside the set."""
    members = {bound.group_keys[k].expression for k in bound.layout.sets[grouping_set]}
    value = 0
    for key in expr.keys:
        value = (value << 1) | (key not in members)
    return value


def _output_row(
    bound: BoundQuery,
    values: dict[Any, int],
    labels: list[Any],
    key_index: dict[Any, int],
    *,
    suppressed: bool = False,
    grouping_set: int = 0,
) -> tuple[Cell, ...] | None:
    """One slot's output row, or None when HAVING drops it (``suppressed``: every
    aggregate is NULL, below the minimum cell size)."""

    def leaf(expr: ValueExpr) -> Value:
        if isinstance(expr, Aggregate):
            return None if suppressed else _exact(bound, expr, values)
        if isinstance(expr, Grouping):
            return _grouping_value(bound, expr, grouping_set)
        return labels[key_index[expr]]  # type: ignore[no-any-return]

    if bound.having is not None and evaluate(bound.having, leaf) is not True:
        return None
    if suppressed:
        return tuple(
            None if isinstance(o.source, Aggregate | Negative | Binary) else leaf(o.source)  # type: ignore[misc]
            for o in bound.outputs
        )
    row: list[Cell] = []
    for out in bound.outputs:
        src = out.source
        if isinstance(src, Grouping):
            row.append(_grouping_value(bound, src, grouping_set))
        elif isinstance(src, Aggregate) and src.function.bivariate:
            row.append(_to_cell(_bivariate(bound, src, values), ColumnKind.DOUBLE))
        elif isinstance(src, Aggregate):
            row.append(_cell(bound, src, values))
        elif isinstance(src, Negative | Binary):
            row.append(_to_cell(evaluate(src, leaf), out.kind))
        else:
            row.append(labels[key_index[src]])
    return tuple(row)


@dataclass(frozen=True)
class _Groups:
    """The group slots: every key's labels (then NULL, then "not in the slot's grouping
    set", both shown as NULL), its positions reported only with rows, every slot's label
    position per key and grouping set, and each key's index."""

    choices: list[tuple[Any, ...]]
    sparse: list[set[int]]
    positions: list[npt.NDArray[np.int64]]
    key_index: dict[Any, int]
    sets: npt.NDArray[np.int64]
    sparse_slot: npt.NDArray[np.bool_]


def _check_columns(bound: BoundQuery, columns: dict[Any, list[int]]) -> None:
    """:func:`_check_consistent` over many slots at once (``columns``: per field, the
    slots' values)."""
    limit = MAX_NODES * MAX_ROWS_PER_NODE
    rows = columns[(FieldKind.ROWS, None)]
    ok = all(0 <= r <= limit for r in rows)
    for agg in bound.aggregations:
        name = agg.key
        counts = columns[(FieldKind.COUNT, name)]
        sums = columns.get((FieldKind.SUM, name)) or [0] * len(rows)
        squares = columns.get((FieldKind.SUM_SQUARES, name))
        ok = ok and all(0 <= n <= r for n, r in zip(counts, rows, strict=True))
        if squares is not None:
            ok = ok and all(
                q >= 0 and n * q >= s * s and (n or not q)
                for n, s, q in zip(counts, sums, squares, strict=True)
            )
        ok = ok and all(n or not s for n, s in zip(counts, sums, strict=True))
    if not ok:
        raise ProtocolError(
            "the summed vector is not a sum of valid node vectors for this query (counts or "
            "sums are inconsistent); nothing can be released from it"
        )


def _slot_rows(  # noqa: PLR0915 - one column builder per output kind
    bound: BoundQuery,
    fields: dict[Any, npt.NDArray[Any]],
    slots: npt.NDArray[np.int64],
    groups: _Groups,
    min_cell_size: int = 1,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[Any]]]:
    """The rows of the given slots: (kept slots, output columns).

    Labels, grouping bitmasks and counts are read a column at a time; the other
    aggregates, arithmetic and HAVING are evaluated slot by slot.
    """
    names = list(fields)
    columns = {k: fields[k][slots].tolist() for k in names}
    _check_columns(bound, columns)
    rows = columns[(FieldKind.ROWS, None)]
    sparse = groups.sparse_slot[slots].tolist()
    slot_sets = groups.sets[slots].tolist()
    labels = [
        [c[p] for p in pos[slots].tolist()]
        for c, pos in zip(groups.choices, groups.positions, strict=True)
    ]
    suppressed = [0 < r < min_cell_size for r in rows]
    values: dict[int, dict[Any, int]] = {}

    def values_at(i: int) -> dict[Any, int]:
        if i not in values:
            values[i] = {k: int(columns[k][i]) for k in names}
        return values[i]

    def exact(agg: Aggregate, i: int) -> Value:
        if suppressed[i]:
            return None
        if agg.function is AggregateFunction.COUNT and agg.column2 is None:
            if agg.column is None:
                return int(rows[i])
            return int(columns[(FieldKind.COUNT, agg.column)][i])
        return _exact(bound, agg, values_at(i))

    def leaf_at(i: int) -> Callable[[ValueExpr], Value]:
        def leaf(expr: ValueExpr) -> Value:
            if isinstance(expr, Aggregate):
                return exact(expr, i)
            if isinstance(expr, Grouping):
                return _grouping_value(bound, expr, slot_sets[i])
            return labels[groups.key_index[expr]][i]  # type: ignore[no-any-return]

        return leaf

    kept = [i for i in range(len(rows)) if rows[i] or not sparse[i]]
    having = bound.having
    if having is not None and _reads_labels(having):
        kept = [i for i in kept if evaluate(having, leaf_at(i)) is True]
    elif having is not None:  # a function of the slot's values: once per distinct values
        verdicts: dict[tuple[Any, ...], bool] = {}
        passed = []
        for i in kept:
            values_key = (suppressed[i], *(columns[k][i] for k in names))
            verdict = verdicts.get(values_key)
            if verdict is None:
                verdict = verdicts[values_key] = evaluate(having, leaf_at(i)) is True
            if verdict:
                passed.append(i)
        kept = passed
    out: list[npt.NDArray[Any]] = []
    for o in bound.outputs:
        src = o.source
        column: list[Cell]
        if isinstance(src, Grouping):
            by_set = [_grouping_value(bound, src, s) for s in range(len(bound.layout.sets))]
            column = [by_set[slot_sets[i]] for i in kept]
        elif isinstance(src, Aggregate) and src.function.bivariate:
            column = [
                None if suppressed[i] else _to_cell(_bivariate(bound, src, values_at(i)), o.kind)
                for i in kept
            ]
        elif isinstance(src, Aggregate):
            counted = src.function is AggregateFunction.COUNT and src.column2 is None
            column = [
                None
                if suppressed[i]
                else exact(src, i)  # type: ignore[misc]
                if counted
                else _cell(bound, src, values_at(i))
                for i in kept
            ]
        elif isinstance(src, Negative | Binary):
            column = [
                None if suppressed[i] else _to_cell(evaluate(src, leaf_at(i)), o.kind) for i in kept
            ]
        else:
            key = labels[groups.key_index[src]]
            column = [key[i] for i in kept]
        out.append(_object_column(column))
    return slots[np.array(kept, dtype=np.int64)], out


def _shared_rows(
    bound: BoundQuery,
    values: dict[Any, int],
    slots: npt.NDArray[np.int64],
    groups: _Groups,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[Any]]]:
    """The rows of slots that share ``values`` and differ only in their labels."""
    choices, positions, key_index = groups.choices, groups.positions, groups.key_index
    if (bound.having is not None and _reads_labels(bound.having)) or any(
        isinstance(o.source, Grouping)
        or (isinstance(o.source, Negative | Binary) and _reads_labels(o.source))
        for o in bound.outputs
    ):
        # The labels or grouping sets enter an expression: evaluate slot by slot.
        slot_positions = [p[slots].tolist() for p in positions]
        slot_sets = groups.sets[slots].tolist()
        kept: list[int] = []
        rows: list[tuple[Cell, ...]] = []
        for i, slot in enumerate(slots.tolist()):
            labels = [c[p[i]] for c, p in zip(choices, slot_positions, strict=True)]
            row = _output_row(bound, values, labels, key_index, grouping_set=slot_sets[i])
            if row is not None:
                kept.append(slot)
                rows.append(row)
        return np.array(kept, dtype=np.int64), [
            _object_column([r[j] for r in rows]) for j in range(len(bound.outputs))
        ]
    # Nothing but the group columns depends on the labels: one row serves all.
    template = _output_row(bound, values, [None] * len(choices), key_index)
    if template is None:
        return np.zeros(0, dtype=np.int64), [np.empty(0, dtype=object) for _ in bound.outputs]
    label_arrays = [_object_column(list(c)) for c in choices]
    columns: list[npt.NDArray[Any]] = []
    for out, value in zip(bound.outputs, template, strict=True):
        if isinstance(out.source, Aggregate | Negative | Binary):
            column = np.empty(len(slots), dtype=object)
            column.fill(value)
            columns.append(column)
        else:
            k = key_index[out.source]
            columns.append(label_arrays[k][positions[k][slots]])
    return slots, columns


def _slot_positions(
    layout: VectorLayout,
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    """The label position of every slot for every key (each grouping set's slots in
    itertools.product order of its keys; ``len(labels) + 1`` for a key outside the
    slot's set), and every slot's grouping set."""
    keys = layout.group_keys
    if sum(layout.set_slots(s) for s in range(len(layout.sets))) != layout.slots:
        raise ProtocolError("the vector layout does not match the query's groups")
    positions = [np.full(layout.slots, len(k.labels) + 1, dtype=np.int64) for k in keys]
    slot_sets = np.zeros(layout.slots, dtype=np.int64)
    for index, (members, start) in enumerate(zip(layout.sets, layout.set_starts, strict=True)):
        count = layout.set_slots(index)
        ids = np.arange(count, dtype=np.int64)
        stride = count
        for k in members:
            size = len(keys[k].labels) + 1
            stride //= size
            positions[k][start : start + count] = (ids // stride) % size
        slot_sets[start : start + count] = index
    return positions, slot_sets


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
    fields = _decode_fields(layout, np.ascontiguousarray(arr))
    keys = bound.group_keys
    key_index = {k.expression: i for i, k in enumerate(keys)}
    # Every key's labels with NULL, then "outside the slot's grouping set" (NULL too),
    # and which of them are reported only with rows.
    choices = [(*k.labels, None, None) for k in keys]
    sparse = [{*k.sparse, len(k.labels)} for k in keys]
    positions, slot_sets = _slot_positions(layout)
    # Slots whose fields are all zero (no rows: the zero cells) share one set of
    # values, so their aggregates are computed once; the others one by one.
    empty = np.ones(layout.slots, dtype=np.bool_)
    for column in fields.values():
        empty &= column == 0
    sparse_slot = np.zeros(layout.slots, dtype=np.bool_)
    for pos, s in zip(positions, sparse, strict=True):
        sparse_slot |= np.isin(pos, sorted(s))
    groups = _Groups(choices, sparse, positions, key_index, slot_sets, sparse_slot)
    kept_slots: list[npt.NDArray[np.int64]] = []
    kept_columns: list[list[npt.NDArray[Any]]] = []
    shared = np.flatnonzero(empty & ~sparse_slot)
    if len(shared):
        zero = dict.fromkeys(fields, 0)
        _check_consistent(bound, zero)
        slots, columns = _shared_rows(bound, zero, shared, groups)
        kept_slots.append(slots)
        kept_columns.append(columns)
    others = np.flatnonzero(~empty)
    if len(others):
        slots, columns = _slot_rows(bound, fields, others, groups, min_cell_size)
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
