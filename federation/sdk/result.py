"""What an analyst gets back from a query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from federation.render import render_table
from federation.table import Cell, ResultTable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["QueryResult"]


@dataclass(frozen=True)
class QueryResult:
    """The released aggregate of one job, with where it came from.

    Attributes:
        job_id: The coordinator's id for the job (``client.job(job_id)`` recalls it).
        sql: The query as submitted.
        protocol: The aggregation protocol that produced the result.
        node_count: How many nodes' data the result covers.
        selected_nodes: How many nodes the job started on (more than ``node_count``
            when some dropped out before uploading their input).
        table: The result table itself.
        elapsed: Seconds from submission to release, as seen by the analyst.
    """

    job_id: str
    sql: str
    protocol: str
    node_count: int
    selected_nodes: int
    table: ResultTable
    elapsed: float

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names."""
        return self.table.columns

    @property
    def rows(self) -> list[tuple[Cell, ...]]:
        """The result rows."""
        return list(self.table.rows)

    def to_pandas(self) -> pd.DataFrame:
        """The result as a pandas DataFrame."""
        return self.table.to_pandas()

    def __str__(self) -> str:
        footer = (
            f"job {self.job_id} · {self.protocol} · {self.node_count} of "
            f"{self.selected_nodes} node(s) · {self.elapsed:.3f} s"
        )
        return f"{render_table(self.table)}\n{footer}"
