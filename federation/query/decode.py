"""Read the summed vector: every field's exact integers, and check they are a valid sum.

:func:`decode_fields` turns the uint64 digits of every slot into exact integers;
:func:`check_consistent` (one slot) and :func:`check_columns` (many) refuse a vector
that is not a sum of valid node vectors for the query.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from federation.encoding import DIGIT_BITS, MAX_NODES, MAX_ROWS_PER_NODE
from federation.errors import ProtocolError
from federation.query.bind import BoundQuery
from federation.query.layout import FieldKind, VectorLayout

__all__ = ["check_columns", "check_consistent", "decode_fields"]


def decode_fields(
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


def check_consistent(bound: BoundQuery, values: dict[Any, int]) -> None:
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


def check_columns(bound: BoundQuery, columns: dict[Any, list[int]]) -> None:
    """:func:`check_consistent` over many slots at once (``columns``: per field, the
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
