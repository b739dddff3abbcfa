"""The aggregate table a query releases: column names, kinds and rows.

Cells are ``int`` (exact counts and integer sums), ``float`` (means, variances,
double sums), ``str`` (group labels) or ``None`` (SQL NULL: an empty aggregate
or the NULL group).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Cell", "ColumnKind", "ResultTable"]

Cell = int | float | str | None


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

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.kinds):
            raise ValueError("ResultTable: one kind per column is required")
        width = len(self.columns)
        for row in self.rows:
            if len(row) != width:
                raise ValueError(f"ResultTable: row of width {len(row)}, expected {width}")

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (nullable dtypes for integers)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for i, (name, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            values: Sequence[Cell] = [row[i] for row in self.rows]
            if kind is ColumnKind.INTEGER:
                if all(v is None or (isinstance(v, int) and -(2**63) <= v < 2**63) for v in values):
                    data[name] = pd.Series(values, dtype="Int64")
                else:
                    data[name] = pd.Series(values, dtype=object)
            elif kind is ColumnKind.DOUBLE:
                data[name] = pd.Series(
                    [float("nan") if v is None else v for v in values], dtype="float64"
                )
            else:
                data[name] = pd.Series(values, dtype=object)
        return pd.DataFrame(data, columns=list(self.columns))

    def column(self, name: str) -> list[Cell]:
        """The values of one column, in row order."""
        i = self.columns.index(name)
        return [row[i] for row in self.rows]
