"""What binding produces: a :class:`BoundQuery`, its output columns and ORDER BY keys.

:func:`~federation.query.bind.bind_query` builds them; nodes compute from them
(:mod:`federation.query.local`) and the coordinator finalizes with them
(:mod:`federation.query.finalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.query.expr import Expr
from federation.query.groups import GroupKey
from federation.query.layout import ColumnAggregation, ProductAggregation, VectorLayout
from federation.query.outputs import ValueExpr
from federation.query.parse_items import SelectExpr
from federation.schema import DatasetSchema
from federation.table import ColumnKind

__all__ = ["BoundOrder", "BoundQuery", "OutputColumn"]


@dataclass(frozen=True)
class OutputColumn:
    """One column of the result table."""

    name: str
    kind: ColumnKind
    source: SelectExpr


@dataclass(frozen=True)
class BoundOrder:
    """An ORDER BY key over the output: column index and direction."""

    index: int
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class BoundQuery:
    """A query validated against a schema, with its vector layout and fingerprint."""

    dataset: str
    schema: DatasetSchema
    outputs: tuple[OutputColumn, ...]
    group_keys: tuple[GroupKey, ...]
    where: Expr | None
    aggregations: tuple[ColumnAggregation, ...]
    layout: VectorLayout
    order_by: tuple[BoundOrder, ...]
    limit: int | None
    offset: int | None
    canonical_sql: str
    fingerprint: str
    having: ValueExpr | None = None
    products: tuple[ProductAggregation, ...] = ()

    @property
    def vector_length(self) -> int:
        """Length of the uint64 vector every node produces."""
        return self.layout.length
