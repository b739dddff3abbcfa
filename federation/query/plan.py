"""One formulation of the local query: its stages, aggregates and checks (:class:`Plan`).

:func:`~federation.query.formulation.build_plan` fills a plan, the tier builders
(:mod:`federation.query.column_sums`, :mod:`federation.query.product_sums`) add their
stages and :class:`Sum` parts to it, and :func:`~federation.query.formulation.render`
writes its SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.errors import DataError
from federation.query.grouping_sets import SetsMode
from federation.query.layout import FieldKind
from federation.query.tiers import Tier

__all__ = ["CERTIFIED_LIMIT", "Centered", "Plan", "Sum"]

CERTIFIED_LIMIT = 2**53
"""A certified DOUBLE sum is exact when its result is below this."""


@dataclass(frozen=True)
class Sum:
    """An aggregate of the local query contributing ``value << shift`` to a quantity."""

    sql: str
    shift: int = 0


@dataclass(frozen=True)
class Centered:
    """A ``ΣX²`` on the CENTERED tier (:mod:`federation.query.centered`): the item, the
    index of its ``fsum`` aggregate, and its integer offset ``C``."""

    item: int
    aggregate: int
    offset: int


@dataclass
class Plan:
    """One formulation of the local query, and how its result columns make the quantities.

    Attributes:
        tiers: The tier of every aggregation (in ``bound.aggregations`` order).
        stages: Projections, each computed from the previous ones' aliases.
        aggregates: The aggregate expressions, after the group keys.
        quantities: ``(kind, column) -> [(aggregate index, shift)]``: the quantity is
            the sum of ``aggregate << shift``.
        checks: ``(aggregate index, error)``: a count of rows violating a column's
            range or domain, or a group key's bounds; must be 0, else ``error`` is raised.
        certified: ``(aggregate index, aggregation index)``: DOUBLE sums that are exact
            only below :data:`CERTIFIED_LIMIT`, and the column to escalate otherwise.
        centered: The quantities computed on the CENTERED tier, by ``(kind, column)``
            (not in ``quantities``): certified per group, else escalated.
    """

    tiers: tuple[Tier, ...]
    stages: list[list[tuple[str, str]]] = field(default_factory=lambda: [[] for _ in range(5)])
    aggregates: list[str] = field(default_factory=list)
    quantities: dict[tuple[FieldKind, str | None], list[tuple[int, int]]] = field(
        default_factory=dict
    )
    checks: list[tuple[int, DataError]] = field(default_factory=list)
    certified: list[tuple[int, int]] = field(default_factory=list)
    centered: dict[tuple[FieldKind, str | None], Centered] = field(default_factory=dict)
    limbs: dict[tuple[str, Tier], list[tuple[str, int]]] = field(default_factory=dict)
    """Limbs ``(alias, shift)`` of a column's ``X`` already split, by column and tier."""
    narrow_values: dict[str, str] = field(default_factory=dict)
    """Aliases of a column's ``X`` as BIGINT already computed by a NARROW column."""
    mode: SetsMode = SetsMode.SINGLE
    """How the rows are grouped (:mod:`federation.query.grouping_sets`)."""
    combined: dict[int, list[tuple[str, DataError]]] = field(default_factory=dict)
    """Checks counted together (aggregate index -> each condition over the relation's
    columns and its error), to find the one that failed."""

    def add(
        self, key: tuple[FieldKind, str | None], parts: list[Sum], certify: int | None = None
    ) -> None:
        for part in parts:
            index = len(self.aggregates)
            self.quantities.setdefault(key, []).append((index, part.shift))
            if certify is not None:
                self.certified.append((index, certify))
            self.aggregates.append(part.sql)

    def check(self, condition: str, error: DataError) -> None:
        self.checks.append((len(self.aggregates), error))
        self.aggregates.append(f"count_if(NOT ({condition}))")
