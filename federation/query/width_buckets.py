"""WIDTH_BUCKET arithmetic: when every bucket is exact (:func:`dyadic_width`), and the
DuckDB SQL of a value's bucket (:func:`bucket_sql`, :func:`width_bucket_sql`).

Shared by the GROUP BY keys (:mod:`federation.query.render_group_keys`), the grouping
sets (:mod:`federation.query.grouping_sets`) and quantile refinement
(:mod:`federation.query.quantiles`).
"""

from __future__ import annotations

import math
from fractions import Fraction

from federation.query.group_exprs import WidthBucket

__all__ = ["bucket_sql", "double_literal", "dyadic_width", "width_bucket_sql"]


def dyadic_width(low: float, high: float, count: int) -> float | None:
    """The bucket width ``w`` of ``WIDTH_BUCKET(x, low, high, count)`` when every bucket
    boundary ``low + k·w`` is a double that DuckDB computes exactly (so the node puts
    every value in its exact bucket); otherwise ``None``.

    That is when ``w = (high - low) / count`` is a power of two (a normal double),
    ``low`` is a multiple of ``w`` and ``|low|, |high| <= 2**53·w``.

    >>> dyadic_width(0.0, 1.0, 4), dyadic_width(0.0, 1.0, 3), dyadic_width(0.25, 1.25, 4)
    (0.25, None, 0.25)
    """
    if not (math.isfinite(low) and math.isfinite(high) and low < high and count >= 1):
        return None
    w = (Fraction(high) - Fraction(low)) / count
    num, den = w.numerator, w.denominator
    if not ((num == 1 and den & (den - 1) == 0) or (den == 1 and num & (num - 1) == 0)):
        return None
    width = float(w)
    if not 2.0**-1022 <= width <= 2.0**1000 or (Fraction(low) / w).denominator != 1:
        return None
    return width if max(abs(low), abs(high)) <= 2.0**53 * width else None


def double_literal(value: float) -> str:
    """A DuckDB DOUBLE literal of a finite double, exact (``repr`` with an exponent:
    DuckDB reads it as a DOUBLE, correctly rounded)."""
    text = repr(float(value))
    return text if "e" in text else f"{text}e0"


def bucket_sql(x: str, lo: str, hi: str, count: int, exact: tuple[str, str] | None) -> str:
    """The bucket (1 to ``count``) of a value ``x`` known to lie in ``[lo, hi)``, all
    SQL of DOUBLEs; ``exact``: the SQL of the width ``w`` and of ``1/w`` for dyadic
    bounds (:func:`dyadic_width`), else ``None``.

    The bucket is ``floor(n·(x - lo) / (hi - lo)) + 1`` in floating point, which may put
    a value next to a boundary in the neighbouring bucket; with dyadic bounds it is
    exact: the estimate ``e = floor((x - lo)·(1/w))`` is off by at most one (``x - lo``
    is rounded once, by far less than ``w``), and two comparisons with the exact
    boundaries ``lo + e·w`` and ``lo + (e+1)·w`` correct it.
    """
    if exact is not None:
        w, inverse = exact
        estimate = f"least(floor(({x} - {lo}) * {inverse}), {double_literal(count - 1)})"
        below = f"({x} < {lo} + {estimate} * {w})::INTEGER"
        above = f"({x} >= {lo} + ({estimate} + 1) * {w})::INTEGER"
        return f"CAST({estimate} + 1 - {below} + {above} AS BIGINT)"
    fraction = f"({x} - {lo}) / ({hi} - {lo})"
    return f"least(CAST(floor({count} * ({fraction})) AS BIGINT), {count - 1}) + 1"


def width_bucket_sql(e: WidthBucket, x: str) -> tuple[str, str, str]:
    """DuckDB SQL of a WIDTH_BUCKET's bounds and of the bucket of a value ``x`` (SQL of
    a DOUBLE) known to lie in ``[lo, hi)`` (:func:`bucket_sql`): ``(lo, hi, bucket)``."""
    low, high = float(e.low), float(e.high)
    lo, hi = double_literal(low), double_literal(high)
    width = dyadic_width(low, high, e.count)
    exact = None if width is None else (double_literal(width), double_literal(1 / width))
    return lo, hi, bucket_sql(x, lo, hi, e.count, exact)
