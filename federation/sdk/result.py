"""What an analyst gets back from a query."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from federation.dp.report import PrivacyReport
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
        jobs: Every job the answer took (one, except for quantiles: the base job
            then the histogram rounds).
        error_bounds: The largest absolute error of each approximate column (the
            quantiles; 0.0 when exact). Columns not listed are exact.
        privacy: For a differentially private query: the mechanism, the epsilon,
            delta and rho spent, and the noise std of each noised aggregate in the
            result's units (``privacy.sigma("SUM(x)")``); None otherwise.
    """

    job_id: str
    sql: str
    protocol: str
    node_count: int
    selected_nodes: int
    table: ResultTable
    elapsed: float
    jobs: tuple[str, ...] = ()
    error_bounds: Mapping[str, float] = field(default_factory=dict)
    privacy: PrivacyReport | None = None

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
        if self.privacy is not None:
            footer += f"\nDP: {self.privacy.summary()}"
        return f"{render_table(self.table)}\n{footer}"
