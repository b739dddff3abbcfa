"""How the SDK reads a quantile round's histogram table and shares intervals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from federation.errors import QueryError
from federation.query.quantiles import BUCKETS, RankSearch, ranks, split_quantiles
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk import quantiles as quantiles_sdk
from federation.sdk.quantiles import _histograms, rank_searches, refine, share_intervals
from federation.sdk.result import QueryResult
from federation.table import ColumnKind, ResultTable
from tests.unit.query.conftest import run_federated


def _result(rows: list[tuple[object, ...]], asks: int = 1) -> QueryResult:
    buckets = tuple(f"__b{i}" for i in range(asks))
    table = ResultTable(
        ("g", *buckets, "__n"),
        (ColumnKind.GROUP, *(ColumnKind.GROUP for _ in buckets), ColumnKind.INTEGER),
        tuple(rows),  # type: ignore[arg-type]
    )
    return QueryResult("job", "sql", "secagg", 3, 3, table, 0.1)


def test_counts_land_in_their_group_and_bucket() -> None:
    (counts,) = _histograms(
        _result([("a", 0, 2), ("a", 5, 3), ("b", BUCKETS + 1, 1), ("a", None, 0)]), 1
    )
    assert counts[("a",)][0] == 2
    assert counts[("a",)][5] == 3
    assert sum(counts[("a",)]) == 5
    assert counts[("b",)][BUCKETS + 1] == 1


def test_each_grouping_set_is_its_own_histogram() -> None:
    rows = [
        ("a", 3, None, 2),
        ("b", 3, None, 1),
        ("a", None, 7, 4),
        ("a", None, None, 9),  # NULL values of either column: in no histogram
    ]
    first, second = _histograms(_result(rows, asks=2), 1, 2)
    assert (first[("a",)][3], first[("b",)][3], sum(first[("a",)])) == (2, 1, 2)
    assert (second[("a",)][7], sum(second[("a",)]), ("b",) in second) == (4, 4, False)
    with pytest.raises(QueryError, match="two histograms"):
        _histograms(_result([("a", 1, 1, 1)], asks=2), 1, 2)


def test_a_suppressed_bucket_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match="suppressed"):
        _histograms(_result([("a", 3, None)]), 1)


def _search(rank: int, lo: float, hi: float) -> RankSearch:
    return RankSearch(rank, 100, lo, hi, False, 0.0, outer=(0.0, 10.0))


def test_overlapping_searches_of_a_column_share_their_hull() -> None:
    a, b, c = _search(10, 1.0, 2.0), _search(11, 1.5, 3.0), _search(50, 5.0, 6.0)
    e = _search(12, 1.0, 2.0)
    pending = [(("x", (), 10), a), (("X", (), 11), b), (("x", (), 50), c), (("x", ("g",), 12), e)]
    share_intervals(pending)
    assert a.interval == b.interval == (1.0, 3.0)  # overlapping: one histogram
    assert c.interval == (5.0, 6.0)  # apart: its own
    assert e.interval == (1.0, 2.0)  # another group: its own


def test_a_search_widens_only_within_its_verified_interval() -> None:
    search = _search(3, 2.0, 4.0)
    counts = [0] * (BUCKETS + 2)
    counts[0], counts[BUCKETS // 2], counts[BUCKETS + 1] = 3, 1, 96  # rank 3 verified
    search.update(counts)
    assert not search.done
    lo, hi = search.interval
    assert search.allows(lo, hi)
    assert search.allows(2.0, 4.0)  # the verified interval itself
    assert not search.allows(1.0, 4.0)  # beyond it
    with pytest.raises(ValueError, match="cannot widen"):
        search.widen(1.0, 4.0)
    search.widen(2.0, 4.0)
    assert search.interval == (2.0, 4.0)


def _schema() -> DatasetSchema:
    return DatasetSchema(
        "t",
        (
            Column("g", ColumnType.CATEGORICAL, domain=("p", "q")),
            Column("a", ColumnType.DOUBLE),
            Column("b", ColumnType.INTEGER),
            Column("c", ColumnType.DOUBLE, bounds=(-10.0, 10.0)),
        ),
    )


def _data() -> list[dict[str, list[object]]]:
    gen = np.random.default_rng(2)
    parts: list[dict[str, list[object]]] = []
    for n in (70, 50):
        parts.append(
            {
                "g": gen.choice(["p", "q"], n).tolist(),
                "a": gen.normal(5.0, 2.0, n).tolist(),
                "b": gen.integers(-50, 50, n).tolist(),
                "c": gen.uniform(-10.0, 10.0, n).tolist(),
            }
        )
    return parts


def _refined(
    group: bool, log: list[str]
) -> tuple[dict[tuple[str, tuple[object, ...], int], RankSearch], list[dict[str, list[object]]]]:
    schema, parts = _schema(), _data()
    sql = "SELECT MEDIAN(a), QUANTILE_CONT(a, 0.3), MEDIAN(b), QUANTILE_CONT(c, 0.9) FROM t"
    if group:
        sql = sql.replace("SELECT ", "SELECT g, ") + " GROUP BY g"
    plan = split_quantiles(sql)
    assert plan is not None
    columns = {c.name: c for c in schema.columns}
    groups: dict[tuple[object, ...], dict[str, list[float]]] = {}
    for part in parts:
        for i, g in enumerate(part["g"]):
            values = groups.setdefault((g,) if group else (), {"a": [], "b": [], "c": []})
            for name in values:
                values[name].append(part[name][i])  # type: ignore[arg-type]
    searches = {}
    for key, values in groups.items():
        for item in plan.items:
            data = values[item.column]
            wanted = dict.fromkeys(ranks(item, len(data)), 0.0)
            found = rank_searches(columns[item.column], None, len(data), wanted)
            for rank, search in found.items():
                searches.setdefault((item.column, key, rank), search)

    def run(sql: str) -> ResultTable:
        log.append(sql)
        return run_federated(sql, schema, parts)[0]

    refine(plan, searches, run, group_slots=3 if group else 1)
    return searches, parts


@pytest.mark.parametrize("group", [False, True])
def test_each_round_is_one_job_of_every_columns_histograms(group: bool) -> None:
    log: list[str] = []
    searches, parts = _refined(group, log)
    rounds = max(s.rounds for s in searches.values())
    assert len(log) == rounds  # one job a round, all columns (and groups) at once
    assert all("GROUPING SETS" in sql or sql.count("WIDTH_BUCKET") == 1 for sql in log)
    for (column, key, rank), search in searches.items():
        assert search.done
        values = sorted(
            v
            for part in parts
            for g, v in zip(part["g"], part[column], strict=True)
            if not key or g == key[0]
        )
        value, error = search.estimate()
        assert error == 0  # tolerance 0: to the double (or integer)
        assert value == Fraction(values[rank])  # type: ignore[arg-type]


def test_a_round_past_a_jobs_limits_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantiles_sdk, "MAX_GROUP_SLOTS", 2 * (BUCKETS + 3))
    log: list[str] = []
    searches, _ = _refined(False, log)
    assert max(s.rounds for s in searches.values()) < len(log)  # some rounds took two jobs
    assert all(sql.count("WIDTH_BUCKET") <= 2 for sql in log)
    assert all(s.done for s in searches.values())
