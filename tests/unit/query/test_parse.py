"""parse_query: the accept/reject matrix of the supported SQL subset."""

from __future__ import annotations

import pytest

from federation.errors import (
    NonAggregateQueryError,
    QueryError,
    QuerySyntaxError,
    UnsupportedQueryError,
)
from federation.query import Aggregate, AggregateFunction, GroupColumn, parse_query
from federation.query.expr import (
    Between,
    ColumnRef,
    Comparison,
    ComparisonOp,
    InList,
    IsNull,
    Like,
    Logical,
    LogicalOp,
    NumberLiteral,
    StringLiteral,
)


def test_parses_the_full_shape() -> None:
    q = parse_query(
        "SELECT sex, COUNT(*) AS n, AVG(age) FROM patients WHERE age > 30 "
        "GROUP BY sex ORDER BY n DESC NULLS FIRST LIMIT 5 OFFSET 1"
    )
    assert q.dataset == "patients"
    assert q.group_by == (GroupColumn("sex"),)
    assert [i.expression for i in q.items] == [
        GroupColumn("sex"),
        Aggregate(AggregateFunction.COUNT, None),
        Aggregate(AggregateFunction.AVG, "age"),
    ]
    assert [i.alias for i in q.items] == [None, "n", None]
    assert q.where == Comparison(ComparisonOp.GT, ColumnRef("age"), NumberLiteral("30"))
    assert q.order_by[0].target == "n"
    assert q.order_by[0].descending
    assert q.order_by[0].nulls_first
    assert (q.limit, q.offset) == (5, 1)


@pytest.mark.parametrize(
    ("sql", "function"),
    [
        ("SELECT COUNT(x) FROM t", AggregateFunction.COUNT),
        ("SELECT SUM(x) FROM t", AggregateFunction.SUM),
        ("SELECT AVG(x) FROM t", AggregateFunction.AVG),
        ("SELECT MEAN(x) FROM t", AggregateFunction.AVG),
        ("SELECT VAR_SAMP(x) FROM t", AggregateFunction.VAR_SAMP),
        ("SELECT VARIANCE(x) FROM t", AggregateFunction.VAR_SAMP),
        ("SELECT VAR_POP(x) FROM t", AggregateFunction.VAR_POP),
        ("SELECT STDDEV(x) FROM t", AggregateFunction.STDDEV_SAMP),
        ("SELECT STDDEV_SAMP(x) FROM t", AggregateFunction.STDDEV_SAMP),
        ("SELECT STDDEV_POP(x) FROM t", AggregateFunction.STDDEV_POP),
        ("select stddev_pop(T.x) from t", AggregateFunction.STDDEV_POP),
    ],
)
def test_aggregate_functions_and_synonyms(sql: str, function: AggregateFunction) -> None:
    item = parse_query(sql).items[0].expression
    assert item == Aggregate(function, "x")


def test_count_star_and_count_one() -> None:
    for sql in ("SELECT COUNT(*) FROM t", "SELECT count(1) FROM t"):
        assert parse_query(sql).items[0].expression == Aggregate(AggregateFunction.COUNT, None)


def test_table_alias_qualifies_columns() -> None:
    q = parse_query("SELECT p.sex, COUNT(*) FROM patients AS p WHERE p.age > 1 GROUP BY p.sex")
    assert q.group_by == (GroupColumn("sex"),)
    assert q.where == Comparison(ComparisonOp.GT, ColumnRef("age"), NumberLiteral("1"))


def test_group_by_position() -> None:
    assert parse_query("SELECT sex, COUNT(*) FROM t GROUP BY 1").group_by == (GroupColumn("sex"),)


def test_where_constructs() -> None:
    q = parse_query(
        "SELECT COUNT(*) FROM t WHERE a IN (1, 2) AND b NOT BETWEEN 1 AND 2 "
        "OR s IS NOT NULL AND s NOT LIKE 'x%' AND NOT (s ILIKE 'Y')"
    )
    assert isinstance(q.where, Logical)
    assert q.where.op is LogicalOp.OR
    found = repr(q.where)
    for node in ("InList", "Between", "IsNull", "Like", "negated=True", "case_insensitive=True"):
        assert node in found
    left = q.where.left
    assert isinstance(left, Logical)
    assert left.left == InList(ColumnRef("a"), (NumberLiteral("1"), NumberLiteral("2")))
    assert left.right == Between(ColumnRef("b"), NumberLiteral("1"), NumberLiteral("2"), True)
    right = q.where.right
    assert isinstance(right, Logical)
    assert isinstance(right.left, Logical)
    assert right.left.left == IsNull(ColumnRef("s"), negated=True)
    assert right.left.right == Like(ColumnRef("s"), "x%", negated=True)
    assert right.right == Like(ColumnRef("s"), "Y", negated=True, case_insensitive=True)


def test_string_literal_keeps_quotes_as_data() -> None:
    q = parse_query("SELECT COUNT(*) FROM t WHERE s = 'x'' OR 1=1 --'")
    assert q.where == Comparison(ComparisonOp.EQ, ColumnRef("s"), StringLiteral("x' OR 1=1 --"))


REJECTED: list[tuple[str, type[QueryError], str]] = [
    ("", QuerySyntaxError, "empty"),
    ("   ;  ", QuerySyntaxError, "empty"),
    ("SELEC COUNT(*) FROM t", QuerySyntaxError, "parse"),
    ("SELECT COUNT(* FROM t", QuerySyntaxError, "parse"),
    ("SELECT * FROM t", NonAggregateQueryError, "SELECT *"),
    ("SELECT t.* FROM t", NonAggregateQueryError, "SELECT *"),
    ("SELECT age FROM t", NonAggregateQueryError, "neither aggregated nor in GROUP BY"),
    ("SELECT age, COUNT(*) FROM t GROUP BY sex", NonAggregateQueryError, "'age'"),
    ("SELECT age + 1 FROM t", NonAggregateQueryError, "individual rows"),
    ("SELECT age FROM t LIMIT 10", NonAggregateQueryError, "individual rows"),
    ("SELECT COUNT(*) FROM t; SELECT 1", UnsupportedQueryError, "2 statements"),
    ("INSERT INTO t VALUES (1)", UnsupportedQueryError, "INSERT"),
    ("DROP TABLE t", UnsupportedQueryError, "DROP"),
    ("SELECT COUNT(*) FROM t UNION SELECT COUNT(*) FROM u", UnsupportedQueryError, "UNION"),
    ("SELECT 1", UnsupportedQueryError, "no FROM"),
    ("SELECT COUNT(*) FROM (SELECT * FROM t)", UnsupportedQueryError, "subqueries"),
    ("SELECT COUNT(*) FROM t JOIN u ON t.a = u.a", UnsupportedQueryError, "joins"),
    ("SELECT COUNT(*) FROM t, u", UnsupportedQueryError, "joins"),
    ("SELECT COUNT(*) FROM db.t", UnsupportedQueryError, "plain dataset name"),
    ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", UnsupportedQueryError, "plain dataset"),
    ("WITH a AS (SELECT 1) SELECT COUNT(*) FROM a", UnsupportedQueryError, "WITH"),
    ("SELECT COUNT(*) FROM t HAVING COUNT(*) LIKE 'a'", UnsupportedQueryError, "HAVING"),
    ("SELECT COUNT(*) FROM t HAVING AVG(a + 1) > 1", UnsupportedQueryError, "plain column"),
    ("SELECT DISTINCT COUNT(*) FROM t", UnsupportedQueryError, "DISTINCT"),
    ("SELECT COUNT(DISTINCT a) FROM t", UnsupportedQueryError, "DISTINCT"),
    ("SELECT SUM(a) OVER () FROM t", UnsupportedQueryError, "window"),
    ("SELECT COUNT(*) FILTER (WHERE a > 1) FROM t", UnsupportedQueryError, "FILTER"),
    ("SELECT MAX(a) FROM t", UnsupportedQueryError, "reveals a single record"),
    ("SELECT MIN(a) FROM t", UnsupportedQueryError, "MIN"),
    ("SELECT MEDIAN(a) FROM t", UnsupportedQueryError, "MEDIAN"),
    ("SELECT foo(a) FROM t", UnsupportedQueryError, "FOO"),
    ("SELECT AVG(a + 1) FROM t", UnsupportedQueryError, "plain column name"),
    ("SELECT SUM(*) FROM t", UnsupportedQueryError, "SUM(*)"),
    ("SELECT SQRT(COUNT(*)) FROM t", UnsupportedQueryError, "over aggregates"),
    ("SELECT AVG(a) / b FROM t", NonAggregateQueryError, "outside an aggregate"),
    ("SELECT REGR_SLOPE(a, b + 1) FROM t", UnsupportedQueryError, "plain column names"),
    ("SELECT COUNT(*) FROM t GROUP BY FLOOR(a + 1)", UnsupportedQueryError, "FLOOR(column"),
    ("SELECT COUNT(*) FROM t GROUP BY FLOOR(a / 0)", UnsupportedQueryError, "positive"),
    ("SELECT COUNT(*) FROM t GROUP BY FLOOR(a / -2)", UnsupportedQueryError, "positive"),
    ("SELECT COUNT(*) FROM t GROUP BY WIDTH_BUCKET(a, 10, 0, 5)", UnsupportedQueryError, "<"),
    ("SELECT COUNT(*) FROM t GROUP BY WIDTH_BUCKET(a, 0, 10, 0)", UnsupportedQueryError, "count"),
    ("SELECT COUNT(*) FROM t GROUP BY WIDTH_BUCKET(a, 0, b, 2)", UnsupportedQueryError, "literal"),
    (
        "SELECT COUNT(*) FROM t GROUP BY CASE WHEN a < 1 THEN 1 ELSE 2 END",
        UnsupportedQueryError,
        "string-literal labels",
    ),
    (
        "SELECT COUNT(*) FROM t GROUP BY CASE a WHEN 1 THEN 'x' END",
        UnsupportedQueryError,
        "CASE WHEN <predicate>",
    ),
    ("SELECT COUNT(*) FROM t GROUP BY a + 1", UnsupportedQueryError, "bucket expressions"),
    ("SELECT COUNT(*) AS n FROM t GROUP BY 1", UnsupportedQueryError, "aggregate"),
    ("SELECT 1, COUNT(*) FROM t", UnsupportedQueryError, "not an aggregate"),
    ("SELECT COUNT(*) FROM t WHERE a IN (SELECT b FROM u)", UnsupportedQueryError, "subquer"),
    ("SELECT COUNT(*) FROM t WHERE EXISTS (SELECT 1)", UnsupportedQueryError, "subquer"),
    ("SELECT COUNT(*) FROM t WHERE COUNT(*) > 1", UnsupportedQueryError, "not allowed in WHERE"),
    ("SELECT COUNT(*) FROM t WHERE random() > 0.5", UnsupportedQueryError, "RAND"),
    ("SELECT COUNT(*) FROM t WHERE read_text('x') = ''", UnsupportedQueryError, "READ_TEXT"),
    ("SELECT COUNT(*) FROM t WHERE CAST(a AS INT) = 1", UnsupportedQueryError, "CAST"),
    ("SELECT COUNT(*) FROM t WHERE a = ?", UnsupportedQueryError, "parameters"),
    ("SELECT COUNT(*) FROM t WHERE a IS TRUE", UnsupportedQueryError, "IS NULL"),
    ("SELECT COUNT(*) FROM t WHERE s LIKE b", UnsupportedQueryError, "string literal"),
    ("SELECT COUNT(*) FROM t WHERE u.a = 1", UnsupportedQueryError, "not the FROM table"),
    ("SELECT COUNT(*) FROM t GROUP BY a + 1", UnsupportedQueryError, "GROUP BY"),
    ("SELECT COUNT(*) FROM t GROUP BY ALL", UnsupportedQueryError, "GROUP BY ALL"),
    (
        "SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((a), (a + 1))",
        UnsupportedQueryError,
        "grouping sets",
    ),
    ("SELECT COUNT(*) FROM t GROUP BY ROLLUP (a) WITH TOTALS", UnsupportedQueryError, "TOTALS"),
    ("SELECT a, COUNT(*) FROM t GROUP BY a, A", UnsupportedQueryError, "twice"),
    ("SELECT a, COUNT(*) FROM t GROUP BY 3", UnsupportedQueryError, "out of range"),
    ("SELECT COUNT(*), a FROM t GROUP BY 1", UnsupportedQueryError, "aggregate"),
    ("SELECT COUNT(*) FROM t LIMIT -1", UnsupportedQueryError, "LIMIT"),
    ("SELECT COUNT(*) FROM t LIMIT a", UnsupportedQueryError, "LIMIT"),
    ("SELECT COUNT(*) FROM t ORDER BY a + 1", UnsupportedQueryError, "ORDER BY"),
    ("SELECT COUNT(*) FROM t WHERE a > 1e999", UnsupportedQueryError, "range of a double"),
]


@pytest.mark.parametrize(("sql", "error", "needle"), REJECTED)
def test_rejections_say_why(sql: str, error: type[QueryError], needle: str) -> None:
    with pytest.raises(error) as info:
        parse_query(sql)
    assert type(info.value) is error
    assert needle.lower() in str(info.value).lower()


def test_non_string_input_is_a_syntax_error() -> None:
    with pytest.raises(QuerySyntaxError, match="SQL text"):
        parse_query(b"SELECT 1")  # type: ignore[arg-type]


def test_overlong_text_is_refused_before_parsing() -> None:
    with pytest.raises(QuerySyntaxError, match="characters long"):
        parse_query("SELECT COUNT(*) FROM t WHERE " + " OR ".join(["a = 1"] * 30_000))


def test_nesting_is_bounded_with_a_clear_error_not_a_recursion_error() -> None:
    from federation.query.parse import MAX_NESTING

    chain = "SELECT COUNT(*) FROM t WHERE " + " AND ".join(["x > 1"] * (MAX_NESTING + 50))
    with pytest.raises(UnsupportedQueryError, match=r"nests \d+ levels deep"):
        parse_query(chain)
    deep = "SELECT COUNT(*) FROM t WHERE " + "(" * 3000 + "x > 1" + ")" * 3000
    with pytest.raises(UnsupportedQueryError, match="too many levels deep"):
        parse_query(deep)
    ok = "SELECT COUNT(*) FROM t WHERE " + " AND ".join([f"x > {i}" for i in range(150)])
    assert parse_query(ok).where is not None
