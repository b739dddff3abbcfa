"""The GROUP BY key expressions, their bound form (:class:`GroupKey`) and the columns a
key reads (:func:`key_columns`).

The forms and their groups are described in :mod:`federation.query.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.query.expr import Expr, columns_of

__all__ = [
    "MAX_BUCKETS",
    "CaseBucket",
    "FloorBucket",
    "GroupColumn",
    "GroupExpr",
    "GroupKey",
    "Label",
    "WidthBucket",
    "key_columns",
]

MAX_BUCKETS = 2**20
"""The most groups one bucket expression may define."""

Label = str | int | float


@dataclass(frozen=True)
class GroupColumn:
    """A categorical column (in GROUP BY, or a select-list reference to one)."""

    column: str


@dataclass(frozen=True)
class FloorBucket:
    """``FLOOR(column / width)``; ``width`` is the text of a positive numeric literal."""

    column: str
    width: str = "1"


@dataclass(frozen=True)
class WidthBucket:
    """``WIDTH_BUCKET(column, low, high, count)`` (literal texts for the bounds)."""

    column: str
    low: str
    high: str
    count: int


@dataclass(frozen=True)
class CaseBucket:
    """``CASE WHEN predicate THEN 'label' ... [ELSE 'label'] END``."""

    branches: tuple[tuple[Expr, str], ...]
    default: str | None = None


GroupExpr = GroupColumn | FloorBucket | WidthBucket | CaseBucket


@dataclass(frozen=True)
class GroupKey:
    """A bound GROUP BY key and its groups.

    Attributes:
        expression: The key, with schema-spelled column names and bound predicates.
        labels: The non-NULL group values, in output order.
        sparse: Positions in ``labels`` reported only when they have rows (the
            out-of-range buckets 0 and n+1 of WIDTH_BUCKET); the NULL group is
            always sparse.
        name: The default output name.
    """

    expression: GroupExpr
    labels: tuple[Label, ...]
    sparse: frozenset[int]
    name: str

    def to_dict(self) -> list[object]:
        """Canonical JSON-ready form (bound into the layout and fingerprint)."""
        return [repr(self.expression), [repr(v) for v in self.labels], sorted(self.sparse)]


def key_columns(expr: GroupExpr) -> list[str]:
    """The dataset columns a group expression reads."""
    if isinstance(expr, CaseBucket):
        return [c for predicate, _ in expr.branches for c in columns_of(predicate)]
    return [expr.column]
