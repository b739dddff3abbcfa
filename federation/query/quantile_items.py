"""The quantile items of a split query (:class:`QuantileItem`, :class:`QuantileQuery`),
the ranks whose order statistics each needs (:func:`ranks`) and the quantile they give
(:func:`interpolate`); the semantics are DuckDB's (:mod:`federation.query.quantiles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["QuantileItem", "QuantileQuery", "interpolate", "ranks"]


@dataclass(frozen=True)
class QuantileItem:
    """One quantile in the select list.

    Attributes:
        index: Its position among the output columns.
        name: Its output column name.
        column: The column it ranks (as written).
        q: The quantile, in [0, 1].
        discrete: ``QUANTILE_DISC`` (a data value) rather than ``QUANTILE_CONT``.
        extreme: ``MIN`` or ``MAX`` (``QUANTILE_DISC`` at 0 or 1, found exactly; a
            single record's value, so only on columns a policy classifies public).
    """

    index: int
    name: str
    column: str
    q: Fraction
    discrete: bool
    extreme: bool = False


@dataclass(frozen=True)
class QuantileQuery:
    """A query with quantiles, split for refinement.

    Attributes:
        base_sql: The query with every quantile item replaced by ``COUNT(column)``
            under the item's output name.
        dataset: The FROM dataset.
        where: The WHERE predicate as DuckDB SQL, or ``None``.
        group_columns: The GROUP BY columns, in order.
        items: The quantile items.
        moments: Per ranked column, the names of two extra output columns of the
            base query, ``AVG(column)`` and ``VAR_POP(column)`` (each the correctly
            rounded exact value): with the count they bound where each order
            statistic lies, so searches start narrow. They are dropped from the answer.
    """

    base_sql: str
    dataset: str
    where: str | None
    group_columns: tuple[str, ...]
    items: tuple[QuantileItem, ...]
    moments: dict[str, tuple[str, str]] = field(default_factory=dict)


def ranks(item: QuantileItem, n: int) -> tuple[int, ...]:
    """The 0-based ranks whose order statistics ``item`` needs among ``n`` values."""
    if n <= 0:
        return ()
    if item.discrete:
        return (max(math.ceil(item.q * n) - 1, 0),)
    h = (n - 1) * item.q
    return tuple(sorted({math.floor(h), math.ceil(h)}))


def interpolate(item: QuantileItem, n: int, values: dict[int, Fraction]) -> Fraction:
    """The quantile from the order statistics of :func:`ranks` (exact)."""
    if item.discrete:
        return values[ranks(item, n)[0]]
    h = (n - 1) * item.q
    low, high = math.floor(h), math.ceil(h)
    return values[low] + (h - low) * (values[high] - values[low])
