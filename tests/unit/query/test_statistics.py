"""Bivariate aggregates, arithmetic on aggregates, HAVING and bucket GROUP BY keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pytest

from federation.errors import (
    NonAggregateQueryError,
    QueryError,
    QueryTypeError,
    UnsupportedQueryError,
    ValueOutOfRangeError,
)
from federation.query import bind_query, parse_query
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind, ResultTable

Federated = Callable[..., ResultTable]

SCHEMA = DatasetSchema(
    "t",
    (
        Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
        Column("site", ColumnType.CATEGORICAL, domain=("n", "s")),
        Column("age", ColumnType.INTEGER, bounds=(0, 99)),
        Column("k", ColumnType.INTEGER),
        Column("x", ColumnType.DOUBLE),
        Column("y", ColumnType.DOUBLE, bounds=(-10.0, 10.0)),
        Column("note", ColumnType.TEXT),
    ),
)
PARTS: list[dict[str, list[Any]]] = [
    {
        "sex": ["F", "M", None, "F"],
        "site": ["n", "n", "s", None],
        "age": [10, 25, 31, 99],
        "k": [1, 2, 3, None],
        "x": [1.0, 2.0, 3.0, 1e7],
        "y": [2.0, 4.5, None, 3.0],
    },
    {
        "sex": ["M", "M"],
        "site": ["s", "n"],
        "age": [40, None],
        "k": [5, 8],
        "x": [None, 2.5],
        "y": [-1.0, 0.25],
    },
]


def pooled(sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (sex VARCHAR, site VARCHAR, age BIGINT, k BIGINT, x DOUBLE, y DOUBLE, "
        "note VARCHAR)"
    )
    for part in PARTS:
        n = len(part["sex"])
        for r in range(n):
            con.execute(
                "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, NULL)",
                [part[c][r] for c in ("sex", "site", "age", "k", "x", "y")],
            )
    return con.execute(sql).fetchall()


def test_bivariate_match_duckdb(federated: Federated) -> None:
    sql = (
        "SELECT CORR(y, x), COVAR_SAMP(y, x), COVAR_POP(x, y), REGR_SLOPE(y, x), "
        "REGR_INTERCEPT(y, x), REGR_R2(y, x), CORR(k, age) FROM t"
    )
    got = federated(sql, SCHEMA, PARTS).rows[0]
    want = pooled(sql)[0]
    assert got == pytest.approx(want, rel=1e-12)


def test_degenerate_bivariate_follow_postgresql(federated: Federated) -> None:
    parts = [{"x": [1.0, 1.0, 1.0], "y": [2.0, 4.0, 5.0]}]
    t = federated(
        "SELECT CORR(y, x), REGR_SLOPE(y, x), REGR_INTERCEPT(y, x), REGR_R2(y, x), "
        "REGR_R2(x, y), REGR_SLOPE(x, y), COVAR_SAMP(y, x) FROM t",
        SCHEMA,
        parts,
    )
    # DuckDB gives NaN for CORR and REGR_SLOPE(y, x); SQL/PostgreSQL give NULL.
    assert t.rows == ((None, None, None, None, 1.0, 0.0, 0.0),)
    one = federated(
        "SELECT COVAR_SAMP(y, x), COVAR_POP(y, x), CORR(y, x) FROM t",
        SCHEMA,
        [{"x": [1.0, None], "y": [2.0, 3.0]}],
    )
    assert one.rows == ((None, 0.0, None),)


def test_arithmetic_on_aggregates(federated: Federated) -> None:
    sql = (
        "SELECT SUM(k) - SUM(age) AS d, SUM(x) / COUNT(*) AS m, AVG(y) * 2 + 1 AS a, "
        "COUNT(*) * 2, -(SUM(k)) FROM t"
    )
    t = federated(sql, SCHEMA, PARTS)
    assert t.kinds == (
        ColumnKind.INTEGER,
        ColumnKind.DOUBLE,
        ColumnKind.DOUBLE,
        ColumnKind.INTEGER,
        ColumnKind.INTEGER,
    )
    assert t.columns[3:] == ("count(*) * 2", "-sum(k)")
    assert t.rows[0] == pytest.approx(pooled(sql)[0], rel=1e-15)
    assert federated("SELECT SUM(k) / (COUNT(*) - 6) FROM t", SCHEMA, PARTS).rows == ((None,),)


def test_having_aliases_and_zero_cells(federated: Federated) -> None:
    sql = (
        "SELECT sex, site, COUNT(*) AS n, AVG(k) AS mk FROM t GROUP BY sex, site "
        "HAVING n >= 1 AND (mk IS NULL OR mk < 6) ORDER BY n DESC, sex, site"
    )
    assert federated(sql, SCHEMA, PARTS).rows == tuple(pooled(sql))
    cross = federated("SELECT sex, site, COUNT(*) FROM t GROUP BY sex, site", SCHEMA, PARTS)
    cells = {(r[0], r[1]): r[2] for r in cross.rows}
    assert cells[("F", "s")] == 0  # zero cell reported
    assert (None, "n") not in cells  # NULL combination without rows omitted
    assert cells[(None, "s")] == 1


def test_histograms(federated: Federated) -> None:
    t = federated(
        "SELECT FLOOR(age / 25) AS b, COUNT(*) AS n FROM t GROUP BY b ORDER BY b", SCHEMA, PARTS
    )
    assert t.rows == ((0.0, 1), (1.0, 3), (2.0, 0), (3.0, 1), (None, 1))
    w = federated("SELECT WIDTH_BUCKET(y, 0, 5, 2), COUNT(*) FROM t GROUP BY 1", SCHEMA, PARTS)
    assert w.rows == ((0, 1), (1, 2), (2, 2), (None, 1))
    c = federated(
        "SELECT CASE WHEN age < 30 THEN 'young' WHEN age < 60 THEN 'mid' END AS band, "
        "COUNT(*), AVG(age) FROM t GROUP BY band",
        SCHEMA,
        PARTS,
    )
    assert c.rows == (("young", 2, 17.5), ("mid", 2, 35.5), (None, 2, 99.0))


def test_value_outside_declared_bounds_is_refused(federated: Federated) -> None:
    with pytest.raises(ValueOutOfRangeError, match=r"'age'.*declared bounds"):
        federated("SELECT FLOOR(age / 10), COUNT(*) FROM t GROUP BY 1", SCHEMA, [{"age": [150]}])
    ok = federated(
        "SELECT COUNT(*) FROM t WHERE age < 100 GROUP BY FLOOR(age / 50)",
        SCHEMA,
        [{"age": [150, 20]}],
    )
    assert ok.rows == ((1,), (0,))


@pytest.mark.parametrize(
    ("sql", "error", "needle"),
    [
        ("SELECT COUNT(*) FROM t GROUP BY k", UnsupportedQueryError, "WIDTH_BUCKET(k"),
        ("SELECT COUNT(*) FROM t GROUP BY note", UnsupportedQueryError, "categorical"),
        ("SELECT COUNT(*) FROM t GROUP BY FLOOR(x / 10)", UnsupportedQueryError, "bounds"),
        ("SELECT COUNT(*) FROM t GROUP BY FLOOR(note)", QueryTypeError, "numeric"),
        ("SELECT COUNT(*) FROM t GROUP BY FLOOR(age / 0.00001)", UnsupportedQueryError, "buckets"),
        ("SELECT CORR(sex, x) FROM t", QueryTypeError, "numeric"),
        ("SELECT COVAR_POP(x, nope) FROM t", QueryError, "nope"),
        ("SELECT FLOOR(age / 10), COUNT(*) FROM t", NonAggregateQueryError, "GROUP BY"),
        ("SELECT COUNT(*) FROM t HAVING x > 1", NonAggregateQueryError, "'x'"),
        ("SELECT COUNT(*) FROM t HAVING nope > 1", UnsupportedQueryError, "nope"),
        ("SELECT sex, COUNT(*) FROM t GROUP BY sex HAVING sex > 1", QueryTypeError, "string"),
        ("SELECT COUNT(*) FROM t HAVING COUNT(*)", UnsupportedQueryError, "HAVING"),
        ("SELECT COUNT(*) AS n FROM t GROUP BY n", UnsupportedQueryError, "aggregate"),
        ("SELECT COUNT(*) FROM t ORDER BY SUM(k) / 2", UnsupportedQueryError, "ORDER BY"),
    ],
)
def test_errors_name_the_problem(sql: str, error: type[QueryError], needle: str) -> None:
    with pytest.raises(error, match=needle.replace("(", r"\(")):
        bind_query(parse_query(sql), SCHEMA)


def test_pairs_share_fields_and_fingerprints_differ() -> None:
    a = bind_query(parse_query("SELECT CORR(y, x), CORR(x, y), COVAR_POP(y, x) FROM t"), SCHEMA)
    assert len(a.products) == 1
    b = bind_query(parse_query("SELECT CORR(y, x) FROM t HAVING COUNT(*) > 2"), SCHEMA)
    assert a.fingerprint != b.fingerprint
    assert "HAVING" in b.canonical_sql
