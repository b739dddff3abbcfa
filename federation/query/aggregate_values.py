"""Every aggregate's exact value from one slot's summed integers, rounded once.

The formulas (``n``, ``S1``, ``S2`` and the pair sums) are those of
:mod:`federation.query.finalize`; :func:`exact_value` gives the exact rational (for
HAVING and arithmetic), :func:`cell` and :func:`bivariate` the released value, and
:func:`sqrt_ratio` the correctly rounded square roots.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from federation.query.bind import BoundQuery
from federation.query.bind_aggregates import pair_keys, product_fields
from federation.query.layout import FieldKind
from federation.query.outputs import Aggregate, AggregateFunction, Value
from federation.table import Cell, ColumnKind

__all__ = ["bivariate", "cell", "exact_value", "sqrt_ratio", "to_cell"]

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


def cell(bound: BoundQuery, agg: Aggregate, values: dict[Any, int]) -> Cell:  # noqa: PLR0911
    """A univariate aggregate's or ``SUM(a * b)``'s released value: integers exact, else
    the exact value rounded once to float (bivariate aggregates: :func:`bivariate`)."""
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


def _variance_ratio(func: AggregateFunction, n: int, s1: int, s2: int, f: int) -> tuple[int, int]:
    """The variance of a VAR_* or STDDEV_* aggregate as ``numerator / denominator``, exact,
    from ``n``, ``S1``, ``S2`` (``f`` fraction bits)."""
    pop = func in (AggregateFunction.VAR_POP, AggregateFunction.STDDEV_POP)
    return n * s2 - s1 * s1, (n * n if pop else n * (n - 1)) << (2 * f)


def _moment(func: AggregateFunction, n: int, s1: int, s2: int, f: int) -> float:
    """A variance or standard deviation, correctly rounded."""
    spread, den = _variance_ratio(func, n, s1, s2, f)
    if func in (AggregateFunction.VAR_POP, AggregateFunction.VAR_SAMP):
        return spread / den
    return sqrt_ratio(spread, den)


def bivariate(  # noqa: PLR0911 - one formula per function
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


def exact_value(  # noqa: PLR0911 - one formula per function
    bound: BoundQuery, agg: Aggregate, values: dict[Any, int]
) -> Value:
    """An aggregate's exact value (square roots: correctly rounded floats), or NULL."""
    if agg.function.bivariate:
        return bivariate(bound, agg, values)
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
    spread, den = _variance_ratio(func, n, s1, values[(FieldKind.SUM_SQUARES, agg.column)], f)
    if func in (AggregateFunction.VAR_POP, AggregateFunction.VAR_SAMP):
        return Fraction(spread, den)
    return sqrt_ratio(spread, den)


def to_cell(value: Value, kind: ColumnKind) -> Cell:
    """Round an exact value once to its output kind."""
    if value is None or isinstance(value, bool | str):
        return value
    if kind is ColumnKind.INTEGER:
        return int(value)  # integral by construction (see bind_clauses._integral)
    return float(value)
