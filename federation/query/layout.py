"""The layout of the uint64 vector a node produces for a bound query.

The vector is a sequence of *group slots*, one per combination of GROUP BY values
(each key's groups, in order, then NULL: a categorical column's declared domain, or a
bucket expression's buckets, :mod:`federation.query.groups`; the first GROUP BY key
varies slowest). A query without GROUP BY has one slot. With ``GROUP BY GROUPING SETS
(...)`` the vector is the concatenation of every grouping set's slots, in set order:
each set's slots are the combinations of its own keys' groups as above (the empty set
``()`` has one slot), and the keys outside a set are not part of its slots (they are
NULL in its rows). An ordinary GROUP BY is the single set of all its keys. Every slot
holds the same *fields*, each an exact integer written as a fixed number of balanced
digits (:mod:`federation.encoding`)::

    vector[slot * slot_width + field.offset + j] = digit j of the field (least significant first)

Fields, in order: ``ROWS`` (rows in the group); then, per aggregated column in
first-use order, ``COUNT`` (non-NULL values), and where the query needs them ``SUM``
(``ΣX``) and ``SUM_SQUARES`` (``ΣX²``) of its fixed-point values ``X``; then, per pair
of a bivariate aggregate, ``SUM_PRODUCTS`` (``ΣXY``). A field's ``column`` key is the
column name, ``"a|b"`` for column ``a`` restricted to the rows where ``b`` is also
non-NULL (the pair statistics of CORR, COVAR_* and REGR_*), or ``"a*b"`` for the cross
product. The layout depends only on the query and the schema, so every node's vector
is aligned.
"""

from __future__ import annotations

import bisect
import enum
import functools
import math
from dataclasses import dataclass
from typing import Any

from federation.encoding import MAX_ROWS_PER_NODE, FixedPointFormat, digits_for
from federation.errors import UnsupportedQueryError
from federation.query.groups import GroupKey, Label
from federation.schema import Column

__all__ = [
    "MAX_GROUPING_SETS",
    "MAX_GROUP_SLOTS",
    "MAX_VECTOR_LENGTH",
    "ColumnAggregation",
    "FieldKind",
    "ProductAggregation",
    "VectorField",
    "VectorLayout",
    "build_layout",
]

MAX_GROUP_SLOTS = 2**20
"""The most group slots (product of domain sizes + 1) a query may have."""

MAX_VECTOR_LENGTH = 2**24
"""The longest vector (uint64 elements, 128 MiB) a query may need."""

MAX_GROUPING_SETS = 4096
"""The most grouping sets a query may have."""


class FieldKind(enum.Enum):
    """What an encoded per-slot integer counts or sums."""

    ROWS = "rows"
    COUNT = "count"
    SUM = "sum"
    SUM_SQUARES = "sum_squares"
    SUM_PRODUCTS = "sum_products"


@dataclass(frozen=True)
class ColumnAggregation:
    """What the query needs of one aggregated column.

    Attributes:
        column: The schema column.
        format: Its fixed-point format (``None`` for categorical and text columns,
            which are only counted).
        need_sum: ``ΣX`` is needed (SUM, AVG, variances).
        need_squares: ``ΣX²`` is needed (variances and standard deviations).
        mask: When set, only rows where this other column is also non-NULL count
            (the pair statistics of the bivariate aggregates).
        expression: For ``SUM(expr)``: the DuckDB SQL of the per-row DOUBLE value;
            ``column`` is then a derived DOUBLE column named by the expression's key.
    """

    column: Column
    format: FixedPointFormat | None
    need_sum: bool
    need_squares: bool
    mask: Column | None = None
    expression: str | None = None
    reads: tuple[str, ...] = ()
    """The dataset columns ``expression`` reads."""

    @property
    def key(self) -> str:
        """The field key: the column name, or ``"a|b"`` when masked by ``b``."""
        return self.column.name if self.mask is None else f"{self.column.name}|{self.mask.name}"


@dataclass(frozen=True)
class ProductAggregation:
    """``ΣXY`` over the rows where both numeric columns are non-NULL."""

    left: Column
    right: Column
    left_format: FixedPointFormat
    right_format: FixedPointFormat

    @property
    def key(self) -> str:
        """The field key ``"a*b"``."""
        return f"{self.left.name}*{self.right.name}"


@dataclass(frozen=True)
class VectorField:
    """One exact integer in every group slot."""

    kind: FieldKind
    column: str | None
    offset: int
    digits: int


@dataclass(frozen=True)
class VectorLayout:
    """Group slots times fields, each field a fixed number of balanced digits.

    ``sets`` holds, per grouping set, the indices of its keys in ``group_keys``
    (ascending); the default is one set of every key (an ordinary GROUP BY). The slots
    of set ``s`` start at ``set_starts[s]``.
    """

    group_keys: tuple[GroupKey, ...]
    fields: tuple[VectorField, ...]
    slot_width: int
    slots: int
    sets: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.sets:
            object.__setattr__(self, "sets", (tuple(range(len(self.group_keys))),))

    @property
    def length(self) -> int:
        """Number of uint64 elements of the vector."""
        return self.slots * self.slot_width

    @property
    def grouping_sets(self) -> bool:
        """True when the query has several grouping sets, or one that is not all keys."""
        return self.sets != (tuple(range(len(self.group_keys))),)

    def set_slots(self, index: int) -> int:
        """How many slots grouping set ``index`` has."""
        return math.prod(len(self.group_keys[k].labels) + 1 for k in self.sets[index])

    @functools.cached_property
    def set_starts(self) -> tuple[int, ...]:
        """The first slot of every grouping set."""
        starts, start = [], 0
        for index in range(len(self.sets)):
            starts.append(start)
            start += self.set_slots(index)
        return tuple(starts)

    def slot_set(self, slot: int) -> int:
        """The grouping set a slot belongs to."""
        if not 0 <= slot < self.slots:
            raise IndexError(slot)
        return bisect.bisect_right(self.set_starts, slot) - 1

    def field(self, kind: FieldKind, column: str | None = None) -> VectorField:
        """Look a field up."""
        for f in self.fields:
            if f.kind is kind and f.column == column:
                return f
        raise KeyError((kind, column))

    def slot_index(self, positions: tuple[int, ...], grouping_set: int = 0) -> int:
        """The slot of a group of a grouping set: ``positions[i]`` is the label index of
        the set's i-th key (``len(labels)`` for NULL)."""
        slot = 0
        keys = [self.group_keys[k] for k in self.sets[grouping_set]]
        for key, pos in zip(keys, positions, strict=True):
            slot = slot * (len(key.labels) + 1) + pos
        return self.set_starts[grouping_set] + slot

    def slot_positions(self, slot: int) -> tuple[int, ...]:
        """The label index of every key of the slot's grouping set (``len(labels)`` for
        NULL), in the set's order."""
        index = self.slot_set(slot)
        slot -= self.set_starts[index]
        positions: list[int] = []
        for k in reversed(self.sets[index]):
            slot, pos = divmod(slot, len(self.group_keys[k].labels) + 1)
            positions.append(pos)
        return tuple(reversed(positions))

    def slot_labels(self, slot: int) -> tuple[Label | None, ...]:
        """The value of every group key in a slot (``None`` for the NULL group and for
        the keys outside the slot's grouping set)."""
        labels: list[Label | None] = [None] * len(self.group_keys)
        members = self.sets[self.slot_set(slot)]
        for k, pos in zip(members, self.slot_positions(slot), strict=True):
            key = self.group_keys[k]
            labels[k] = key.labels[pos] if pos < len(key.labels) else None
        return tuple(labels)

    def slot_is_sparse(self, slot: int) -> bool:
        """True when the slot is reported only if it has rows: one of its groups is NULL
        or a sparse bucket. Every other slot is reported, with count 0 when empty."""
        members = self.sets[self.slot_set(slot)]
        return any(
            pos == len(self.group_keys[k].labels) or pos in self.group_keys[k].sparse
            for k, pos in zip(members, self.slot_positions(slot), strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form (bound into the query fingerprint)."""
        return {
            "groups": [k.to_dict() for k in self.group_keys],
            "sets": [list(s) for s in self.sets],
            "fields": [[f.kind.value, f.column, f.offset, f.digits] for f in self.fields],
            "slot_width": self.slot_width,
            "slots": self.slots,
        }


def build_layout(
    group_keys: tuple[GroupKey, ...],
    aggregations: tuple[ColumnAggregation, ...],
    products: tuple[ProductAggregation, ...] = (),
    sets: tuple[tuple[int, ...], ...] | None = None,
) -> VectorLayout:
    """Compute the layout; digit counts come from the worst case per node.

    ``sets``: the grouping sets (key indices, ascending), default one set of all keys.

    Raises:
        UnsupportedQueryError: The query needs too many group slots or too long a vector.
    """
    if sets is None:
        sets = (tuple(range(len(group_keys))),)
    if not sets:
        raise UnsupportedQueryError("GROUPING SETS needs at least one grouping set")
    if len(sets) > MAX_GROUPING_SETS:
        raise UnsupportedQueryError(
            f"the query has {len(sets)} grouping sets; at most {MAX_GROUPING_SETS} are "
            "supported: split it into several queries"
        )
    sizes = [math.prod(len(group_keys[k].labels) + 1 for k in s) for s in sets]
    slots = sum(sizes)
    if slots > MAX_GROUP_SLOTS:
        if len(sets) == 1:
            names = ", ".join(group_keys[k].name for k in sets[0])
            what = f"GROUP BY {names} gives {slots} groups"
        else:
            what = (
                f"the {len(sets)} grouping sets give {slots} groups in all (largest set: "
                f"{max(sizes)})"
            )
        raise UnsupportedQueryError(
            f"{what} (each key's groups plus NULL, multiplied); at most {MAX_GROUP_SLOTS} "
            "are supported: group by fewer columns or wider buckets"
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
        name = agg.key
        add(FieldKind.COUNT, name, MAX_ROWS_PER_NODE)
        if agg.format is not None and agg.need_sum:
            add(FieldKind.SUM, name, agg.format.max_abs * MAX_ROWS_PER_NODE)
        if agg.format is not None and agg.need_squares:
            add(FieldKind.SUM_SQUARES, name, agg.format.max_abs**2 * MAX_ROWS_PER_NODE)
    for product in products:
        bound = product.left_format.max_abs * product.right_format.max_abs
        add(FieldKind.SUM_PRODUCTS, product.key, bound * MAX_ROWS_PER_NODE)
    default = sets == (tuple(range(len(group_keys))),)
    layout = VectorLayout(tuple(group_keys), tuple(fields), offset, slots, () if default else sets)
    if layout.length > MAX_VECTOR_LENGTH:
        raise UnsupportedQueryError(
            f"the query needs a vector of {layout.length} elements ({slots} groups x "
            f"{offset}); at most {MAX_VECTOR_LENGTH} are supported: group by fewer columns "
            "or select fewer aggregates"
        )
    return layout
