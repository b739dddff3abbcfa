"""How the SDK reads a quantile round's histogram table."""

from __future__ import annotations

import pytest

from federation.errors import QueryError
from federation.query.quantiles import BUCKETS
from federation.sdk.quantiles import _histograms
from federation.sdk.result import QueryResult
from federation.table import ColumnKind, ResultTable


def _result(rows: list[tuple[object, ...]]) -> QueryResult:
    table = ResultTable(
        ("g", "__bucket", "__n"),
        (ColumnKind.GROUP, ColumnKind.GROUP, ColumnKind.INTEGER),
        tuple(rows),  # type: ignore[arg-type]
    )
    return QueryResult("job", "sql", "secagg", 3, 3, table, 0.1)


def test_counts_land_in_their_group_and_bucket() -> None:
    counts = _histograms(
        _result([("a", 0, 2), ("a", 5, 3), ("b", BUCKETS + 1, 1), ("a", None, 0)]), 1
    )
    assert counts[("a",)][0] == 2
    assert counts[("a",)][5] == 3
    assert sum(counts[("a",)]) == 5
    assert counts[("b",)][BUCKETS + 1] == 1


def test_a_suppressed_bucket_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match="suppressed"):
        _histograms(_result([("a", 3, None)]), 1)
