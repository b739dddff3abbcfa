"""One refinement round's query (:func:`histogram_sql`): the bucket counts over every
open search's interval, in one job; and the intervals whose buckets the nodes compute
exactly (:func:`dyadic_cover`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlglot import exp

from federation.query.quantile_items import QuantileQuery
from federation.query.width_buckets import dyadic_width

__all__ = ["BUCKETS", "dyadic_cover", "histogram_sql"]

BUCKETS = 2048
"""Histogram buckets per refinement round."""


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def histogram_sql(query: QuantileQuery, asks: Sequence[tuple[str, tuple[float, float]]]) -> str:
    """One round's query: for each ask ``(column, [lo, hi))``, the bucket counts of the
    column over the interval in every group, all in one job.

    Each ask is one grouping set ``(group columns..., WIDTH_BUCKET(column, lo, hi,
    BUCKETS))``; its bucket is output column ``__b<i>`` (NULL in the other sets' rows),
    the row count ``__n``. Empty buckets are left out (``HAVING``; a bucket suppressed by
    a minimum cell size is kept, as NULL). The asks must be distinct.

    >>> from federation.query.quantiles import split_quantiles
    >>> q = split_quantiles("SELECT MEDIAN(x), MEDIAN(y) FROM t")
    >>> histogram_sql(q, [("x", (0.0, 1.0)), ("y", (2.0, 4.0))])  # doctest: +ELLIPSIS
    'SELECT WIDTH_BUCKET("x", 0.0, 1.0, 2048) AS "__b0", ... GROUP BY GROUPING SETS ((1), (2)) ...'
    """
    if not asks:
        raise ValueError("a histogram round needs at least one ask")
    keys = [_quoted(c) for c in query.group_columns]
    buckets = [
        f'WIDTH_BUCKET({_quoted(column)}, {lo!r}, {hi!r}, {BUCKETS}) AS "__b{i}"'
        for i, (column, (lo, hi)) in enumerate(asks)
    ]
    select = ", ".join([*keys, *buckets, 'COUNT(*) AS "__n"'])
    where = f" WHERE ({query.where})" if query.where else ""
    groups = [str(i + 1) for i in range(len(keys))]
    sets = [", ".join([*groups, str(len(keys) + i + 1)]) for i in range(len(asks))]
    group_by = sets[0] if len(sets) == 1 else f"GROUPING SETS ({', '.join(f'({s})' for s in sets)})"
    # Quoted identifiers and escaped literals; the coordinator and every node parse
    # and check this text like any analyst's query.
    return (
        f"SELECT {select} FROM {_quoted(query.dataset)}{where} GROUP BY {group_by} "  # noqa: S608
        "HAVING COUNT(*) > 0 OR COUNT(*) IS NULL"
    )


def dyadic_cover(lo: float, hi: float) -> tuple[float, float] | None:
    """The narrowest interval ``[a, a + BUCKETS·w)`` containing ``[lo, hi)`` with ``w`` a
    power of two and ``a`` a multiple of ``w`` (at most four times as wide), whose
    buckets the nodes compute exactly
    (:func:`~federation.query.width_buckets.dyadic_width`); ``None`` when there is none.

    >>> dyadic_cover(30.0, 70.0)  # buckets of 2**-5
    (30.0, 94.0)
    """
    span = hi - lo
    if not (math.isfinite(lo) and math.isfinite(span) and span > 0):
        return None
    mantissa, exponent = math.frexp(span / BUCKETS)
    width = math.ldexp(1.0, exponent if mantissa > 0.5 else exponent - 1)
    for _ in range(3):
        start = math.floor(lo / width) * width
        end = start + BUCKETS * width
        if end >= hi:
            return (start, end) if dyadic_width(start, end, BUCKETS) is not None else None
        width *= 2
    return None
