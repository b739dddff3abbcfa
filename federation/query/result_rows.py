"""The result rows of the group slots: labels, aggregates, arithmetic, HAVING, suppression.

:func:`slot_positions` places every slot's labels and grouping set; :func:`slot_rows`
builds the rows of slots with values, :func:`shared_rows` those of the zero cells, which
share one set of values. Each applies HAVING and the minimum cell size as described in
:mod:`federation.query.finalize`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.errors import ProtocolError
from federation.query.aggregate_values import bivariate, cell, exact_value, to_cell
from federation.query.bind import BoundQuery
from federation.query.decode import check_columns
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
from federation.table import Cell, ColumnKind

__all__ = ["Groups", "shared_rows", "slot_positions", "slot_rows"]


def _reads_labels(expr: ValueExpr) -> bool:
    """True unless ``expr`` reads only aggregates and literals (conservative)."""
    if isinstance(expr, Aggregate | Number | Text):
        return False
    kids = list(children(expr))
    return not kids or any(_reads_labels(k) for k in kids)


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
            return None if suppressed else exact_value(bound, expr, values)
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
            row.append(to_cell(bivariate(bound, src, values), ColumnKind.DOUBLE))
        elif isinstance(src, Aggregate):
            row.append(cell(bound, src, values))
        elif isinstance(src, Negative | Binary):
            row.append(to_cell(evaluate(src, leaf), out.kind))
        else:
            row.append(labels[key_index[src]])
    return tuple(row)


@dataclass(frozen=True)
class Groups:
    """The group slots: every key's labels (then NULL, then "not in the slot's grouping
    set", both shown as NULL), its positions reported only with rows, every slot's label
    position per key and grouping set, and each key's index."""

    choices: list[tuple[Any, ...]]
    sparse: list[set[int]]
    positions: list[npt.NDArray[np.int64]]
    key_index: dict[Any, int]
    sets: npt.NDArray[np.int64]
    sparse_slot: npt.NDArray[np.bool_]


def slot_rows(  # noqa: PLR0915 - one column builder per output kind
    bound: BoundQuery,
    fields: dict[Any, npt.NDArray[Any]],
    slots: npt.NDArray[np.int64],
    groups: Groups,
    min_cell_size: int = 1,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[Any]]]:
    """The rows of the given slots: (kept slots, output columns).

    Labels, grouping bitmasks and counts are read a column at a time; the other
    aggregates, arithmetic and HAVING are evaluated slot by slot.
    """
    names = list(fields)
    columns = {k: fields[k][slots].tolist() for k in names}
    check_columns(bound, columns)
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
        return exact_value(bound, agg, values_at(i))

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
                None if suppressed[i] else to_cell(bivariate(bound, src, values_at(i)), o.kind)
                for i in kept
            ]
        elif isinstance(src, Aggregate):
            counted = src.function is AggregateFunction.COUNT and src.column2 is None
            column = [
                None
                if suppressed[i]
                else exact(src, i)  # type: ignore[misc]
                if counted
                else cell(bound, src, values_at(i))
                for i in kept
            ]
        elif isinstance(src, Negative | Binary):
            column = [
                None if suppressed[i] else to_cell(evaluate(src, leaf_at(i)), o.kind) for i in kept
            ]
        else:
            key = labels[groups.key_index[src]]
            column = [key[i] for i in kept]
        out.append(_object_column(column))
    return slots[np.array(kept, dtype=np.int64)], out


def shared_rows(
    bound: BoundQuery,
    values: dict[Any, int],
    slots: npt.NDArray[np.int64],
    groups: Groups,
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


def slot_positions(
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
