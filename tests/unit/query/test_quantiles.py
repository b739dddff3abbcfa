"""Quantiles by histogram refinement: the query split and the search (no network)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import duckdb
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from federation.errors import QueryError, UnsupportedQueryError
from federation.query import bind_query, parse_query
from federation.query.groups import dyadic_width
from federation.query.quantiles import (
    BUCKETS,
    RESOLUTION,
    QuantileItem,
    RankSearch,
    dyadic_cover,
    histogram_sql,
    interpolate,
    ranks,
    split_quantiles,
)
from federation.schema import Column, ColumnType, DatasetSchema


def _width_bucket(x: float, lo: float, hi: float) -> int:
    """WIDTH_BUCKET as the nodes' DuckDB SQL computes it (same IEEE double operations;
    exact for dyadic bounds)."""
    if x < lo:
        return 0
    if x >= hi:
        return BUCKETS + 1
    width = dyadic_width(lo, hi, BUCKETS)
    if width is not None:
        return math.floor((Fraction(x) - Fraction(lo)) / Fraction(width)) + 1
    return min(math.floor(BUCKETS * ((x - lo) / (hi - lo))), BUCKETS - 1) + 1


def _counts(data: list[float], lo: float, hi: float, jitter: random.Random | None) -> list[int]:
    exact = dyadic_width(lo, hi, BUCKETS) is not None
    counts = [0] * (BUCKETS + 2)
    for x in data:
        b = _width_bucket(x, lo, hi)
        if jitter is not None and not exact and 1 <= b <= BUCKETS and jitter.random() < 0.3:
            b = min(max(b + jitter.choice((-1, 1)), 1), BUCKETS)  # a floating-point slip
        counts[b] += 1
    return counts


def _search(
    data: list[float],
    rank: int,
    integral: bool,
    tolerance: float,
    jitter: random.Random | None,
    start: tuple[float, float] | None = None,
) -> RankSearch:
    lo, hi = (-(2.0**62), 2.0**62) if integral else (-(2.0**41), 2.0**41)
    lo, hi = start or (lo, math.nextafter(hi, math.inf))  # not dyadic: floating point
    search = RankSearch(rank, len(data), lo, hi, integral, tolerance)
    for _ in range(60):
        if search.done:
            return search
        search.update(_counts(data, *search.interval, jitter))
    raise AssertionError("the search did not converge")


doubles = st.floats(min_value=-(2.0**40), max_value=2.0**40, allow_nan=False, width=64)


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(doubles, min_size=1, max_size=60),
    where=st.floats(0, 1),
    slips=st.booleans(),
)
@example(data=[0.1, 0.1, 0.1, 0.30000000000000004], where=0.5, slips=False)
@example(data=[5e-324, -5e-324, 0.0, 2.0**40], where=0.4, slips=True)
@example(data=[1e7 + i * 1e-9 for i in range(20)], where=0.55, slips=True)
def test_a_search_at_full_resolution_finds_the_order_statistic(
    data: list[float], where: float, slips: bool
) -> None:
    rank = min(int(where * len(data)), len(data) - 1)
    search = _search(data, rank, False, 0.0, random.Random(7) if slips else None)
    value, error = search.estimate()
    truth = Fraction(sorted(data)[rank])
    assert abs(value - truth) <= error <= Fraction(RESOLUTION) * max(1, abs(truth))
    assert search.rounds <= 14


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(doubles, min_size=1, max_size=60),
    where=st.floats(0, 1),
    tolerance=st.sampled_from([0.0, 1e-9, 1e-3]),
)
@example(data=[50.0, 50.0 + 2.0**-40, 49.0], where=0.5, tolerance=0.0)
def test_exact_buckets_narrow_by_the_bucket_count_each_round(
    data: list[float], where: float, tolerance: float
) -> None:
    rank = min(int(where * len(data)), len(data) - 1)
    cover = dyadic_cover(min(data) - 1.0, max(data) + 1.0)
    assert cover is not None
    exact = _search(data, rank, False, tolerance, random.Random(5), start=cover)
    floating = _search(data, rank, False, tolerance, random.Random(5))
    value, error = exact.estimate()
    truth = Fraction(sorted(data)[rank])
    assert abs(value - truth) <= error
    assert error <= Fraction(max(tolerance, RESOLUTION)) * max(1, abs(truth)) or (
        math.nextafter(exact.lo, math.inf) >= exact.hi
    )
    assert exact.rounds <= floating.rounds


@settings(max_examples=30, deadline=None)
@given(data=st.lists(st.integers(-(2**50), 2**50), min_size=1, max_size=60), where=st.floats(0, 1))
def test_integer_searches_end_exactly(data: list[int], where: float) -> None:
    rank = min(int(where * len(data)), len(data) - 1)
    search = _search([float(v) for v in data], rank, True, 1e-3, None)
    assert search.estimate() == (Fraction(sorted(data)[rank]), Fraction(0))


@settings(max_examples=30, deadline=None)
@given(data=st.lists(doubles, min_size=1, max_size=40), where=st.floats(0, 1))
def test_a_tolerant_search_states_an_error_that_holds(data: list[float], where: float) -> None:
    rank = min(int(where * len(data)), len(data) - 1)
    exact = _search(data, rank, False, 0.0, None)
    loose = _search(data, rank, False, 1e-6, None)
    value, error = loose.estimate()
    assert abs(value - Fraction(sorted(data)[rank])) <= error
    assert loose.rounds <= exact.rounds


def test_counts_that_do_not_add_up_are_refused() -> None:
    search = RankSearch(0, 3, 0.0, 1.0, False, 0.0)
    with pytest.raises(QueryError, match="changed"):
        search.update([0] * (BUCKETS + 2))


@pytest.mark.parametrize(("q", "n"), [(Fraction(1, 2), 4), (Fraction(3, 5), 4), (0, 5), (1, 5)])
def test_ranks_and_interpolation_match_duckdb(q: Fraction, n: int) -> None:
    values = [Fraction(v) for v in (3, 11, 4, 17, 8)[:n]]
    ordered = sorted(values)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES (3), (11), (4), (17), (8)) v(x) LIMIT ?", [n]
    )
    cont, disc = con.execute(
        f"SELECT quantile_cont(x, {float(q)}), quantile_disc(x, {float(q)}) FROM t"
    ).fetchone()
    for discrete, expected in ((False, cont), (True, disc)):
        item = QuantileItem(0, "q", "x", Fraction(q), discrete)
        got = interpolate(item, n, {r: ordered[r] for r in ranks(item, n)})
        assert float(got) == pytest.approx(float(expected), rel=1e-15)


def test_split_rewrites_quantiles_into_counts() -> None:
    plan = split_quantiles(
        "SELECT g, MEDIAN(x), QUANTILE_CONT(x, 0.9) AS q9, "
        "PERCENTILE_DISC(0.25) WITHIN GROUP (ORDER BY k), COUNT(*) FROM t "
        "WHERE y > 1 GROUP BY 1"
    )
    assert plan is not None
    assert [(i.index, i.column, i.q, i.discrete) for i in plan.items] == [
        (1, "x", Fraction(1, 2), False),
        (2, "x", Fraction(9, 10), False),
        (3, "k", Fraction(1, 4), True),
    ]
    assert plan.group_columns == ("g",)
    assert plan.where == "y > 1"
    assert 'COUNT("x") AS "q9"' in plan.base_sql
    assert split_quantiles(plan.base_sql) is None  # no quantile left in the base query
    assert plan.items[2].name == "percentile_disc(0.25)"
    sql = histogram_sql(plan, [("x", (0.5, 2.0)), ("k", (-3.0, 1e300))])
    assert 'WIDTH_BUCKET("x", 0.5, 2.0, 2048) AS "__b0"' in sql
    assert 'WIDTH_BUCKET("k", -3.0, 1e+300, 2048) AS "__b1"' in sql
    schema = DatasetSchema(
        "t",
        (
            Column("g", ColumnType.CATEGORICAL, domain=("it's", "b")),
            Column("x", ColumnType.DOUBLE),
            Column("k", ColumnType.INTEGER),
            Column("y", ColumnType.DOUBLE),
        ),
    )
    bound = bind_query(parse_query(sql), schema)  # one job, a grouping set per ask
    assert bound.layout.sets == ((0, 1), (0, 2))
    assert bound.layout.slots == 2 * 3 * (BUCKETS + 3)
    one = bind_query(parse_query(histogram_sql(plan, [("x", (0.5, 2.0))])), schema)
    assert one.layout.sets == ((0, 1),)
    assert split_quantiles("SELECT COUNT(*) FROM t") is None


@pytest.mark.parametrize(
    ("sql", "error", "match"),
    [
        ("SELECT QUANTILE_CONT(x, 1.5) FROM t", QueryError, r"\[0, 1\]"),
        ("SELECT QUANTILE_CONT(x, -0.1) FROM t", QueryError, r"\[0, 1\]"),
        ("SELECT MEDIAN(x) * 2 FROM t", UnsupportedQueryError, "select item of its own"),
        ("SELECT MEDIAN(x + 1) FROM t", UnsupportedQueryError, "plain column"),
        ("SELECT QUANTILE_CONT(x, [0.1, 0.9]) FROM t", UnsupportedQueryError, "one QUANTILE"),
        ("SELECT g, MEDIAN(x) AS m FROM t GROUP BY g ORDER BY m", UnsupportedQueryError, "ORDER"),
        (
            "SELECT g, MEDIAN(x) FROM t GROUP BY g HAVING MEDIAN(x) > 1",
            UnsupportedQueryError,
            "HAVING",
        ),
        ("SELECT MEDIAN(x) FROM t GROUP BY FLOOR(x / 10)", UnsupportedQueryError, "plain"),
    ],
)
def test_unsupported_quantile_shapes_are_clear_errors(
    sql: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        split_quantiles(sql)


@pytest.mark.parametrize("func", ["MIN", "MAX", "min"])
def test_min_and_max_are_refused_naming_the_disclosure(func: str) -> None:
    with pytest.raises(UnsupportedQueryError, match="single record"):
        parse_query(f"SELECT {func}(x) FROM t")
