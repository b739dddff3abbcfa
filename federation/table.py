"""The aggregate table a query releases: column names, kinds and rows.

Cells are ``int`` (exact counts and integer sums), ``float`` (means, variances,
double sums), ``str`` (group labels) or ``None`` (SQL NULL: an empty aggregate
or the NULL group).
"""

from __future__ import annotations

import enum
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Cell", "ColumnKind", "NumericColumn", "ResultTable", "paused_gc"]

Cell = int | float | str | None

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Creating 10**6 row tuples otherwise triggers repeated full collections that
    cost several times the work itself; nothing built here forms cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class NumericColumn:
    """A column's values as a numpy array (0 at NULL rows) and its NULL mask."""

    values: npt.NDArray[Any]
    nulls: npt.NDArray[np.bool_] | None


class ColumnKind(enum.Enum):
    """What a result column holds."""

    GROUP = "group"
    """A label of a GROUP BY column (text or NULL)."""
    INTEGER = "integer"
    """Exact integers (counts, sums of integer columns)."""
    DOUBLE = "double"
    """Floating point values."""


@dataclass(frozen=True)
class ResultTable:
    """A small, fully materialized result table."""

    columns: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[NumericColumn | None, ...] | None = field(
        default=None, compare=False, repr=False, kw_only=True
    )
    """Optional numpy form of the INTEGER/DOUBLE columns (set by :meth:`from_columns`
    when the values are already in arrays): lets :meth:`to_pandas` skip per-cell work."""

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.kinds):
            raise ValueError("ResultTable: one kind per column is required")
        width = len(self.columns)
        widths = set(map(len, self.rows))
        if widths - {width}:
            bad = next(w for w in widths if w != width)
            raise ValueError(f"ResultTable: row of width {bad}, expected {width}")
        if self.numeric is not None and len(self.numeric) != width:
            raise ValueError("ResultTable: one numeric entry per column is required")

    @classmethod
    def from_columns(
        cls,
        columns: tuple[str, ...],
        kinds: tuple[ColumnKind, ...],
        values: Sequence[Sequence[Cell]],
        numeric: tuple[NumericColumn | None, ...] | None = None,
    ) -> ResultTable:
        """A table from its columns' values (all of one length).

        ``numeric``, when given, must hold exactly the same values as ``values``.
        """
        if len(values) != len(columns):
            raise ValueError("ResultTable: one value list per column is required")
        lengths = {len(v) for v in values}
        if len(lengths) > 1:
            raise ValueError(f"ResultTable: columns of different lengths {sorted(lengths)}")
        with paused_gc():
            rows = tuple(zip(*values, strict=True)) if values else ()
        table = cls(columns, kinds, rows, numeric=numeric)
        # Keep the columns too (same cell objects), so encoders need not transpose.
        object.__setattr__(table, "_by_column", tuple(values))
        return table

    def column_values(self) -> list[Sequence[Cell]]:
        """Every column's values, in row order."""
        known: tuple[Sequence[Cell], ...] | None = getattr(self, "_by_column", None)
        if known is not None:
            return list(known)
        if not self.rows:
            return [() for _ in self.columns]
        with paused_gc():
            return list(zip(*self.rows, strict=True))

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (nullable dtypes for integers)."""
        import pandas as pd

        data: dict[str, Any] = {}
        columns = self.column_values()
        for i, (name, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            known = self.numeric[i] if self.numeric is not None else None
            if known is None and kind is not ColumnKind.GROUP:
                known = _numeric(columns[i], kind)
            if known is None:
                data[name] = pd.Series(np.array(columns[i], dtype=object), dtype=object)
            elif kind is ColumnKind.INTEGER and known.values.dtype == np.int64:
                mask = (
                    known.nulls if known.nulls is not None else np.zeros(len(self.rows), np.bool_)
                )
                data[name] = pd.Series(pd.arrays.IntegerArray(known.values, mask))
            elif kind is ColumnKind.DOUBLE and known.values.dtype == np.float64:
                values = known.values
                if known.nulls is not None and known.nulls.any():
                    values = np.where(known.nulls, np.nan, values)
                data[name] = pd.Series(values, dtype="float64")
            else:
                data[name] = pd.Series(np.array(columns[i], dtype=object), dtype=object)
        return pd.DataFrame(data, columns=list(self.columns))

    def column(self, name: str) -> list[Cell]:
        """The values of one column, in row order."""
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


def _numeric(values: Sequence[Cell], kind: ColumnKind) -> NumericColumn | None:
    """The numpy form of an INTEGER (int64 range) or DOUBLE column, else None."""
    nulls = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
    present = [v for v in values if v is not None]
    if kind is ColumnKind.INTEGER:
        if any(type(v) is not int for v in present):
            return None
        try:
            arr = np.array(present, dtype=np.int64)
        except OverflowError:
            return None
    else:
        if any(type(v) is not float and type(v) is not int for v in present):
            return None
        arr = np.array(present, dtype=np.float64)
    full = np.zeros(len(values), dtype=arr.dtype)
    full[~nulls] = arr
    return NumericColumn(full, nulls if nulls.any() else None)
