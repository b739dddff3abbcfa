"""The layout of the uint64 vector a node produces for a bound query.

The vector is a sequence of *group slots*, one per combination of GROUP BY values
(each categorical column's declared domain, in order, then NULL; the first GROUP BY
column varies slowest). A query without GROUP BY has one slot. Every slot holds the
same *fields*, each an exact integer written as a fixed number of balanced digits
(:mod:`federation.encoding`)::

    vector[slot * slot_width + field.offset + j] = digit j of the field (least significant first)

Fields, in order: ``ROWS`` (rows in the group); then, per aggregated column in
first-use order, ``COUNT`` (non-NULL values), and where the query needs them ``SUM``
(``ΣX``) and ``SUM_SQUARES`` (``ΣX²``) of its fixed-point values ``X``. The layout
depends only on the query and the schema, so every node's vector is aligned.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from federation.encoding import MAX_ROWS_PER_NODE, FixedPointFormat, digits_for
from federation.errors import UnsupportedQueryError
from federation.schema import Column

__all__ = [
    "MAX_GROUP_SLOTS",
    "MAX_VECTOR_LENGTH",
    "ColumnAggregation",
    "FieldKind",
    "VectorField",
    "VectorLayout",
    "build_layout",
]

MAX_GROUP_SLOTS = 2**20
"""The most group slots (product of domain sizes + 1) a query may have."""

MAX_VECTOR_LENGTH = 2**24
"""The longest vector (uint64 elements, 128 MiB) a query may need."""


class FieldKind(enum.Enum):
    """What an encoded per-slot integer counts or sums."""

    ROWS = "rows"
    COUNT = "count"
    SUM = "sum"
    SUM_SQUARES = "sum_squares"


@dataclass(frozen=True)
class ColumnAggregation:
    """What the query needs of one aggregated column.

    Attributes:
        column: The schema column.
        format: Its fixed-point format (``None`` for categorical and text columns,
            which are only counted).
        need_sum: ``ΣX`` is needed (SUM, AVG, variances).
        need_squares: ``ΣX²`` is needed (variances and standard deviations).
    """

    column: Column
    format: FixedPointFormat | None
    need_sum: bool
    need_squares: bool


@dataclass(frozen=True)
class VectorField:
    """One exact integer in every group slot."""

    kind: FieldKind
    column: str | None
    offset: int
    digits: int


@dataclass(frozen=True)
class VectorLayout:
    """Group slots times fields, each field a fixed number of balanced digits."""

    group_columns: tuple[Column, ...]
    fields: tuple[VectorField, ...]
    slot_width: int
    slots: int

    @property
    def length(self) -> int:
        """Number of uint64 elements of the vector."""
        return self.slots * self.slot_width

    def field(self, kind: FieldKind, column: str | None = None) -> VectorField:
        """Look a field up."""
        for f in self.fields:
            if f.kind is kind and f.column == column:
                return f
        raise KeyError((kind, column))

    def slot_index(self, positions: tuple[int, ...]) -> int:
        """The slot of a group: ``positions[k]`` is the domain index of group column k
        (``len(domain)`` for NULL)."""
        slot = 0
        for col, pos in zip(self.group_columns, positions, strict=True):
            slot = slot * (len(col.domain) + 1) + pos
        return slot

    def slot_labels(self, slot: int) -> tuple[str | None, ...]:
        """The group values of a slot (``None`` for the NULL group)."""
        labels: list[str | None] = []
        for col in reversed(self.group_columns):
            slot, pos = divmod(slot, len(col.domain) + 1)
            labels.append(col.domain[pos] if pos < len(col.domain) else None)
        return tuple(reversed(labels))

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form (bound into the query fingerprint)."""
        return {
            "groups": [[c.name, list(c.domain)] for c in self.group_columns],
            "fields": [[f.kind.value, f.column, f.offset, f.digits] for f in self.fields],
            "slot_width": self.slot_width,
            "slots": self.slots,
        }


def build_layout(
    group_columns: tuple[Column, ...], aggregations: tuple[ColumnAggregation, ...]
) -> VectorLayout:
    """Compute the layout; digit counts come from the worst case per node.

    Raises:
        UnsupportedQueryError: The query needs too many group slots or too long a vector.
    """
    slots = math.prod(len(c.domain) + 1 for c in group_columns)
    if slots > MAX_GROUP_SLOTS:
        names = ", ".join(c.name for c in group_columns)
        raise UnsupportedQueryError(
            f"GROUP BY {names} gives {slots} groups (each domain plus NULL, multiplied); at "
            f"most {MAX_GROUP_SLOTS} are supported: group by fewer columns"
        )
    fields: list[VectorField] = []
    offset = 0

    def add(kind: FieldKind, column: str | None, max_abs: int) -> None:
        nonlocal offset
        digits = digits_for(max_abs)
        fields.append(VectorField(kind, column, offset, digits))
        offset += digits

    add(FieldKind.ROWS, None, MAX_ROWS_PER_NODE)
    for agg in aggregations:
        name = agg.column.name
        add(FieldKind.COUNT, name, MAX_ROWS_PER_NODE)
        if agg.format is not None and agg.need_sum:
            add(FieldKind.SUM, name, agg.format.max_abs * MAX_ROWS_PER_NODE)
        if agg.format is not None and agg.need_squares:
            add(FieldKind.SUM_SQUARES, name, agg.format.max_abs**2 * MAX_ROWS_PER_NODE)
    layout = VectorLayout(tuple(group_columns), tuple(fields), offset, slots)
    if layout.length > MAX_VECTOR_LENGTH:
        raise UnsupportedQueryError(
            f"the query needs a vector of {layout.length} elements ({slots} groups x "
            f"{offset}); at most {MAX_VECTOR_LENGTH} are supported: group by fewer columns "
            "or select fewer aggregates"
        )
    return layout
