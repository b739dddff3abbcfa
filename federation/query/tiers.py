"""The tiers of the local query, and which of them each item of a query may use.

Every tier gives the same exact integers (:mod:`federation.query.formulation`), but for
``S2`` on :attr:`Tier.CENTERED`, which is within a certified bound of it; a node tries
each item's fastest tier first and escalates when it does not fit its data.
"""

from __future__ import annotations

import enum

from federation.encoding import FixedPointFormat, LimbPlan
from federation.query.bind import BoundQuery
from federation.query.layout import ColumnAggregation
from federation.query.outputs import ValueExpr, aggregates_of
from federation.query.sql_text import double_literal, masked, quote
from federation.schema import Column, ColumnType

__all__ = [
    "NARROW_LIMIT",
    "Tier",
    "column_tiers",
    "item_tiers",
    "narrow_probes",
    "product_columns",
    "reference_tiers",
    "split_tiers",
    "three_limb_double",
]

NARROW_LIMIT = 2**11
"""``X = round(x·2**52)`` fits BIGINT for ``|x| < 2**11`` (and ``x = -2**11``), for no other x."""


class Tier(enum.Enum):
    """How one column's sums are computed; every tier gives the same integers, but for
    ``S2`` on CENTERED (:mod:`federation.query.centered`)."""

    CENTERED = "centered"
    CENTERED_WIDE = "centered_wide"
    SMALL = "small"
    NARROW = "narrow"
    REFERENCE = "reference"


def column_tiers(agg: ColumnAggregation) -> tuple[Tier, ...]:
    """The tiers a node may use for one column, fastest first (always ending in REFERENCE)."""
    fmt = agg.format
    if fmt is None or not agg.need_sum:
        return (Tier.REFERENCE,)
    if fmt.column_type is ColumnType.INTEGER:
        # Sums of integers are already cheap; only the squares gain from SMALL.
        return (Tier.SMALL, Tier.REFERENCE) if agg.need_squares else (Tier.REFERENCE,)
    if fmt.limbs is LimbPlan.ONE:  # |X| <= 2**31: the reference is as cheap
        return (Tier.REFERENCE,)
    if agg.need_squares and agg.expression is None:
        if fmt.limbs is LimbPlan.THREE:  # may hold values beyond NARROW's range
            return (Tier.CENTERED, Tier.CENTERED_WIDE, Tier.NARROW, Tier.REFERENCE)
        return (Tier.CENTERED, Tier.NARROW, Tier.REFERENCE)
    return (Tier.NARROW, Tier.REFERENCE)


def product_columns(bound: BoundQuery) -> list[tuple[Column, FixedPointFormat]]:
    """The distinct columns the cross products read, in first-use order; each is an item
    of the local query whose tier says how its ``X`` is split into limbs."""
    seen: dict[str, tuple[Column, FixedPointFormat]] = {}
    for p in bound.products:
        for col, fmt in ((p.left, p.left_format), (p.right, p.right_format)):
            seen.setdefault(col.name, (col, fmt))
    return list(seen.values())


def split_tiers(fmt: FixedPointFormat) -> tuple[Tier, ...]:
    """The tiers of a column read by cross products, fastest first.

    NARROW applies to a double column on the THREE limb plan (no bounds tighter than
    ``|x| < 2**10``): it is split into two BIGINT limbs instead of three
    (:func:`~federation.query.product_sums._narrow_limbs`), so a product of two such
    columns takes four sums, not nine.
    """
    return (Tier.NARROW, Tier.REFERENCE) if three_limb_double(fmt) else (Tier.REFERENCE,)


def item_tiers(bound: BoundQuery) -> list[tuple[Tier, ...]]:
    """The tiers of every item of the local query: ``bound.aggregations`` (see
    :func:`column_tiers`), then the product columns (:func:`product_columns`,
    :func:`split_tiers`).

    CENTERED is left out when the query has cross products (a ``ΣXY`` is exact, and with
    a ``ΣX²`` that is not, a correlation of a column with itself could pass 1), and for
    a column whose ``SUM(x * x)`` is asked for: sums are exact.
    """
    summed = _summed_squares(bound)
    centered = (Tier.CENTERED, Tier.CENTERED_WIDE)
    tiers = [
        tuple(t for t in column_tiers(a) if t not in centered)
        if bound.products or a.column.name in summed
        else column_tiers(a)
        for a in bound.aggregations
    ]
    return tiers + [split_tiers(fmt) for _, fmt in product_columns(bound)]


def _summed_squares(bound: BoundQuery) -> set[str]:
    """The columns ``a`` of every ``SUM(a * a)`` the query reads (output or HAVING)."""
    exprs: list[ValueExpr] = [out.source for out in bound.outputs]
    if bound.having is not None:
        exprs.append(bound.having)
    return {
        agg.column
        for expr in exprs
        for agg in aggregates_of(expr)
        if agg.column is not None and agg.column2 == agg.column
    }


def narrow_probes(bound: BoundQuery, tiers: tuple[Tier, ...]) -> list[tuple[int, str]]:
    """``(item, aggregate)`` for every item on the NARROW or CENTERED tier (both cast
    ``X`` to BIGINT): a count of its values that do not fit them (``|x| >= 2**11``, NaN,
    ±inf; conservatively also ``x = -2**11``). After the local query fails, these find
    the items to escalate."""
    values = [masked(a) for a in bound.aggregations]
    values += [quote(col.name) for col, _ in product_columns(bound)]
    limit = double_literal(float(NARROW_LIMIT))
    return [
        (i, f"count_if(NOT (abs(CAST({value} AS DOUBLE)) < {limit}))")
        for i, (value, tier) in enumerate(zip(values, tiers, strict=True))
        if tier in (Tier.NARROW, Tier.CENTERED)
    ]


def reference_tiers(bound: BoundQuery) -> tuple[Tier, ...]:
    """Every item of the local query on the reference tier."""
    return (Tier.REFERENCE,) * (len(bound.aggregations) + len(product_columns(bound)))


def three_limb_double(fmt: FixedPointFormat) -> bool:
    """True for a double column on the THREE limb plan (the columns NARROW splits in two)."""
    return fmt.column_type is ColumnType.DOUBLE and fmt.limbs is LimbPlan.THREE
