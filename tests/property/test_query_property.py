"""Federated == pooled: random data split over 1-10 nodes, against exact references.

Each node's partition is a real DuckDB relation; the nodes' vectors are summed mod
2**64 exactly as secure aggregation does; the finalized table must match the same
query on the pooled rows computed in exact rational arithmetic (``tests.reference``),
within the documented bound ``|err| <= 1e-12·|exact| + E`` (``E`` from the 2**-53
resolution of double columns; zero for integer columns), and match pandas on ordinary
data.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from unittest import mock

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.encoding import DOUBLE_LIMIT, INTEGER_LIMIT
from federation.errors import FederationError
from federation.query import bind_query, compute_local, finalize, formulation, parse_query
from federation.query.formulation import reference_tiers
from federation.query.grouping_sets import SetsMode, choose_mode
from federation.query.layout import FieldKind
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ResultTable
from tests.reference import (
    close,
    exact_bivariate,
    exact_mean,
    exact_sum,
    exact_sum_of_products,
    exact_var,
    fixed_point_52,
    signed_sqrt,
)

SCHEMA = DatasetSchema(
    "d",
    (
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        Column("h", ColumnType.CATEGORICAL, domain=("x", "y")),
        Column("i", ColumnType.INTEGER),
        Column("j", ColumnType.INTEGER, bounds=(-1000, 1000)),
        Column("x", ColumnType.DOUBLE),
        Column("y", ColumnType.DOUBLE, bounds=(-50.0, 50.0)),
        Column("s", ColumnType.TEXT),
    ),
)
ARROW = {
    ColumnType.INTEGER: pa.int64(),
    ColumnType.DOUBLE: pa.float64(),
    ColumnType.CATEGORICAL: pa.string(),
    ColumnType.TEXT: pa.string(),
}
DELTA = 2.0**-53  # encoding error bound of one double value (round(x·2**52) / 2**52)

Row = dict[str, Any]


@dataclass(frozen=True)
class Where:
    sql: str
    keep: Callable[[Row], bool]


WHERES = [
    Where("", lambda r: True),
    Where("WHERE i > 0", lambda r: r["i"] is not None and r["i"] > 0),
    Where(
        "WHERE g = 'a' OR s LIKE 'q%'",
        lambda r: r["g"] == "a" or (r["s"] is not None and r["s"].startswith("q")),
    ),
    Where(
        "WHERE x BETWEEN -1000 AND 1e12",
        lambda r: r["x"] is not None and -1000 <= r["x"] <= 1e12,
    ),
    Where(
        "WHERE h IS NULL AND NOT (j IN (1, 2, 3))",
        lambda r: r["h"] is None and r["j"] is not None and r["j"] not in (1, 2, 3),
    ),
]
AGGS = ["COUNT", "SUM", "AVG", "VAR_SAMP", "VAR_POP", "STDDEV_SAMP", "STDDEV_POP"]


def nullable(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s, s, s)


big_ints = st.one_of(
    st.integers(-100, 100),
    st.integers(INTEGER_LIMIT - 1000, INTEGER_LIMIT),
    st.integers(-INTEGER_LIMIT, -INTEGER_LIMIT + 1000),
    st.integers(-INTEGER_LIMIT, INTEGER_LIMIT),
)
doubles = st.one_of(
    st.floats(-DOUBLE_LIMIT, DOUBLE_LIMIT, allow_nan=False, allow_subnormal=True),
    st.floats(-1.0, 1.0, allow_nan=False),
    st.floats(1e7, 1e7 + 0.1),
    st.sampled_from([DOUBLE_LIMIT, -DOUBLE_LIMIT, 0.0, -0.0, 2.0**-60]),
)
rows = st.fixed_dictionaries(
    {
        "g": nullable(st.sampled_from(["a", "b", "c"])),
        "h": nullable(st.sampled_from(["x", "y"])),
        "i": nullable(big_ints),
        "j": nullable(st.integers(-1000, 1000)),
        "x": nullable(doubles),
        "y": nullable(st.floats(-50.0, 50.0, allow_nan=False)),
        "s": nullable(st.sampled_from(["q1", "qq", "r", "", "q'"])),
    }
)
partitions = st.lists(st.lists(rows, max_size=12), min_size=1, max_size=10)


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], tuple[str, ...], Where]:
    group = draw(st.sampled_from([(), ("g",), ("h",), ("g", "h")]))
    aggs = draw(
        st.lists(
            st.tuples(st.sampled_from(AGGS), st.sampled_from(["i", "j", "x", "y"])),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    where = draw(st.sampled_from(WHERES))
    items = [*group, "COUNT(*)", *(f"{f}({c})" for f, c in aggs)]
    sql = f"SELECT {', '.join(items)} FROM d {where.sql}"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    return sql, aggs, group, where


def federated(sql: str, parts: list[list[Row]]) -> ResultTable:
    bound = bind_query(parse_query(sql), SCHEMA)
    con = duckdb.connect()
    total = np.zeros(bound.vector_length, dtype=np.uint64)
    for k, part in enumerate(parts):
        table = pa.table(
            {c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in SCHEMA.columns}
        )
        con.register(f"node{k}", table)
        vector = compute_local(bound, con, f'"node{k}"')
        assert vector.dtype == np.uint64
        assert vector.shape == (bound.vector_length,)
        total += vector
    return finalize(bound, total)


def pooled_groups(
    parts: list[list[Row]], group: tuple[str, ...], where: Where
) -> list[tuple[tuple[Any, ...], list[Row]]]:
    """Rows per group of the pooled, filtered data, in domain order with NULL last.

    Every combination of domain values is a group (zero cells included); combinations
    with a NULL only when they have rows.
    """
    pooled = [r for part in parts for r in part if where.keep(r)]
    if not group:
        return [((), pooled)]

    def rank(col: str, value: Any) -> int:
        domain = SCHEMA.column(col).domain
        return domain.index(value) if value is not None else len(domain)

    present = {tuple(r[c] for c in group) for r in pooled}
    present |= set(itertools.product(*(SCHEMA.column(c).domain for c in group)))
    keys = sorted(
        present,
        key=lambda k: [rank(c, v) for c, v in zip(group, k, strict=True)],
    )
    return [(k, [r for r in pooled if tuple(r[c] for c in group) == k]) for k in keys]


def allowance(func: str, col: str, values: list[Any]) -> float:
    """The documented absolute error term E for one aggregate (0 for integer columns)."""
    if SCHEMA.column(col).type is ColumnType.INTEGER:
        return 0.0
    n = len(values)
    sd = math.sqrt(float(exact_var(values, 0) or 0))
    if func == "SUM":
        return n * DELTA
    if func in ("AVG", "STDDEV_POP"):
        return DELTA
    if func == "STDDEV_SAMP":
        return math.sqrt(n / (n - 1)) * DELTA
    var_pop = 2 * sd * DELTA + DELTA**2
    return var_pop if func == "VAR_POP" else n / (n - 1) * var_pop


def check(func: str, got: Any, values: list[Any], col: str) -> None:
    present = [v for v in values if v is not None]
    if func == "COUNT":
        assert got == len(present)
        return
    if func == "SUM":
        expected = exact_sum(present)
        if SCHEMA.column(col).type is ColumnType.INTEGER:
            assert got == (None if expected is None else int(expected))
            return
    elif func == "AVG":
        expected = exact_mean(present)
    else:
        ddof = 1 if func.endswith("SAMP") else 0
        var = exact_var(present, ddof)
        if func.startswith("STDDEV") and var is not None:
            expected = Fraction(math.sqrt(var))  # float sqrt: within 1 ulp, inside 1e-12
        else:
            expected = var
    bound = allowance(func, col, present) if expected is not None else 0.0
    assert close(got, expected, rel=1e-12, abs_=bound), (func, col, got, expected)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(parts=partitions, query=queries())
def test_federated_equals_pooled_exact(parts: list[list[Row]], query: Any) -> None:
    sql, aggs, group, where = query
    table = federated(sql, parts)
    expected = pooled_groups(parts, group, where)
    assert [row[: len(group)] for row in table.rows] == [k for k, _ in expected]
    for row, (_, members) in zip(table.rows, expected, strict=True):
        assert row[len(group)] == len(members)
        for (func, col), got in zip(aggs, row[len(group) + 1 :], strict=True):
            check(func, got, [r[col] for r in members], col)


ordinary_rows = st.fixed_dictionaries(
    {
        "g": nullable(st.sampled_from(["a", "b", "c"])),
        "j": nullable(st.integers(-1000, 1000)),
        "y": nullable(st.floats(-50.0, 50.0, allow_nan=False, allow_subnormal=False)),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.lists(ordinary_rows, max_size=15), min_size=1, max_size=6))
def test_federated_matches_pandas_on_ordinary_data(parts: list[list[dict[str, Any]]]) -> None:
    full = [{"h": None, "i": None, "x": None, "s": None, **r} for p in parts for r in p]
    table = federated(
        "SELECT g, COUNT(*), COUNT(y), SUM(j), AVG(y), VAR_SAMP(y), STDDEV_POP(j) "
        "FROM d GROUP BY g",
        [[{"h": None, "i": None, "x": None, "s": None, **r} for r in p] for p in parts],
    )
    df = pd.DataFrame(full, columns=["g", "j", "y"]).astype(
        {"g": "object", "j": "Int64", "y": "float64"}
    )
    df["g"] = df["g"].astype(pd.CategoricalDtype(["a", "b", "c"]))
    grouped = df.groupby("g", observed=True, dropna=False, sort=True)
    ref = pd.DataFrame(
        {
            "n": grouped.size(),
            "ny": grouped["y"].count(),
            "sj": grouped["j"].sum(min_count=1),
            "my": grouped["y"].mean(),
            "vy": grouped["y"].var(ddof=1),
            "sdj": grouped["j"].apply(lambda s: s.astype("float64").std(ddof=0)),
        }
    )
    got = table.to_pandas()
    got = got[got["count(*)"] > 0].reset_index(drop=True)  # pandas omits the zero cells
    assert len(got) == len(ref)
    assert got["g"].tolist() == [None if pd.isna(k) else k for k in ref.index]
    assert got["count(*)"].tolist() == ref["n"].tolist()
    assert got["count(y)"].tolist() == ref["ny"].tolist()
    assert [None if pd.isna(v) else int(v) for v in got["sum(j)"]] == [
        None if pd.isna(v) else int(v) for v in ref["sj"]
    ]
    for ours, theirs in (("avg(y)", "my"), ("var_samp(y)", "vy"), ("stddev_pop(j)", "sdj")):
        np.testing.assert_allclose(
            got[ours].to_numpy(dtype=float), ref[theirs].to_numpy(dtype=float), rtol=1e-9, atol=1e-9
        )


narrow_edges = st.sampled_from(
    [
        2.0**11,
        -(2.0**11),
        math.nextafter(2.0**11, 0.0),
        -math.nextafter(2.0**11, 0.0),
        2.0**10.5,
        -(2.0**10.5),
        1448.0,
        1449.0,
        2.0**-53,
        3 * 2.0**-54,
        -(3 * 2.0**-54),
        0.5 + 2.0**-53,
        -0.0,
    ]
)
small_edges = st.sampled_from([2**26, 2**27, -(2**26) - 1, 94906265, 94906266, 2**31, -(2**53)])
edge_rows = st.fixed_dictionaries(
    {
        "g": nullable(st.sampled_from(["a", "b", "c"])),
        "h": nullable(st.sampled_from(["x", "y"])),
        "i": nullable(st.one_of(big_ints, small_edges)),
        "j": nullable(st.integers(-1000, 1000)),
        "x": nullable(st.one_of(doubles, narrow_edges, st.floats(-2048.0, 2048.0))),
        "y": nullable(st.floats(-50.0, 50.0, allow_nan=False)),
        "s": nullable(st.sampled_from(["q1", "qq", "r", "", "q'"])),
    }
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(part=st.lists(st.one_of(rows, edge_rows), max_size=20), query=queries())
def test_every_formulation_gives_the_same_vector(part: list[Row], query: Any) -> None:
    """The fast tiers (with their fallbacks) and the reference give identical vectors."""
    sql = query[0]
    bound = bind_query(parse_query(sql), SCHEMA)
    con = duckdb.connect()
    table = pa.table(
        {c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in SCHEMA.columns}
    )
    con.register("node", table)
    reference = reference_tiers(bound)
    outcomes = []
    for tiers in (None, reference):
        try:
            outcomes.append(compute_local(bound, con, "node", tiers=tiers))
        except FederationError as exc:
            outcomes.append(type(exc))
    fast, ref = outcomes
    if isinstance(ref, np.ndarray):
        assert isinstance(fast, np.ndarray), (sql, fast)
        assert np.array_equal(fast, ref), sql
    else:
        assert fast is ref, sql


# ---------------------------------------------------------------- bivariate statistics,
# arithmetic on aggregates, HAVING and bucket GROUP BY keys. The data are exact in the
# fixed point (multiples of 2**-40, integers), so every rational result must equal the
# pooled exact value correctly rounded, and CORR its correctly rounded square root.

BIVARIATE = ["CORR", "COVAR_SAMP", "COVAR_POP", "REGR_SLOPE", "REGR_INTERCEPT", "REGR_R2"]
PAIRS = [("y", "x"), ("x", "y"), ("i", "j"), ("j", "x"), ("x", "x")]


def _exact_fixed(k: int, scale: int) -> float:
    return k / 2**scale


def _stat_row(mode: str) -> st.SearchStrategy[Row]:
    k = st.integers(-40 * 1024, 40 * 1024)
    if mode == "random":
        x = st.integers(-(2**30), 2**30).map(lambda v: _exact_fixed(v, 10))
        y = st.integers(-50 * 1024, 50 * 1024).map(lambda v: _exact_fixed(v, 10))
        i = big_ints
        j = st.integers(-1000, 1000)
    elif mode == "offset":  # large offsets, tiny spread: no cancellation allowed
        x = st.integers(0, 100).map(lambda v: 1e7 + _exact_fixed(v, 10))
        y = st.integers(-5, 5).map(lambda v: 49.0 + _exact_fixed(v, 30))
        i = st.integers(0, 10).map(lambda v: 10**15 + v)
        j = st.integers(995, 1000)
    elif mode == "constant":  # zero variances
        x, y, i, j = st.just(3.5), st.just(-2.0), st.just(7), st.just(-1000)
    else:  # nearly collinear
        return st.fixed_dictionaries(
            {
                "g": nullable(st.sampled_from(["a", "b", "c"])),
                "h": nullable(st.sampled_from(["x", "y"])),
                "k": k,
                "d": st.sampled_from([-1, 0, 0, 1]),
                "nx": st.booleans(),
            }
        ).map(
            lambda r: {
                "g": r["g"],
                "h": r["h"],
                "x": None if r["nx"] else _exact_fixed(r["k"], 10),
                "y": _exact_fixed(r["k"], 10) + r["d"] * 2.0**-40,
                "i": 3 * r["k"] + r["d"],
                "j": r["k"] // 64,
                "s": None,
            }
        )
    return st.fixed_dictionaries(
        {
            "g": nullable(st.sampled_from(["a", "b", "c"])),
            "h": nullable(st.sampled_from(["x", "y"])),
            "i": nullable(i),
            "j": nullable(j),
            "x": nullable(x),
            "y": nullable(y),
            "s": st.none(),
        }
    )


stat_partitions = st.sampled_from(["random", "offset", "constant", "collinear"]).flatmap(
    lambda mode: st.lists(st.lists(_stat_row(mode), max_size=8), min_size=1, max_size=5)
)


@dataclass(frozen=True)
class GroupSpec:
    sql: str
    labels: tuple[Any, ...]
    label_of: Callable[[Row], Any]
    sparse: frozenset[Any] = frozenset()


def _width_bucket(y: float | None) -> int | None:
    if y is None:
        return None
    if y < -10:
        return 0
    if y >= 10:
        return 5
    return min(math.floor(4 * ((y + 10) / 20)), 3) + 1


GROUP_SPECS = [
    GroupSpec("g", ("a", "b", "c"), lambda r: r["g"]),
    GroupSpec("h", ("x", "y"), lambda r: r["h"]),
    GroupSpec(
        "FLOOR(j / 100)",
        tuple(float(v) for v in range(-10, 11)),
        lambda r: None if r["j"] is None else float(math.floor(r["j"] / 100)),
    ),
    GroupSpec(
        "WIDTH_BUCKET(y, -10, 10, 4)",
        (0, 1, 2, 3, 4, 5),
        lambda r: _width_bucket(r["y"]),
        frozenset({0, 5}),
    ),
    GroupSpec(
        "CASE WHEN y < 0 THEN 'neg' WHEN y < 10 THEN 'small' ELSE 'big' END",
        ("neg", "small", "big"),
        lambda r: (
            "neg"
            if r["y"] is not None and r["y"] < 0
            else "small"
            if r["y"] is not None and r["y"] < 10
            else "big"
        ),
    ),
]


def _sum(rows: list[Row], col: str) -> Fraction | None:
    return exact_sum([r[col] for r in rows])


def _minus(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    return None if a is None or b is None else a - b


COMPUTED: list[tuple[str, Callable[[list[Row]], Fraction | None]]] = [
    ("SUM(j) - SUM(i)", lambda rs: _minus(_sum(rs, "j"), _sum(rs, "i"))),
    (
        "SUM(x) / COUNT(*)",
        lambda rs: None if not rs or _sum(rs, "x") is None else _sum(rs, "x") / len(rs),  # type: ignore[operator]
    ),
    (
        "AVG(y) * 2 + 1",
        lambda rs: (
            None
            if exact_mean([r["y"] for r in rs]) is None
            else exact_mean([r["y"] for r in rs]) * 2 + 1
        ),  # type: ignore[operator]
    ),
    (
        "-(COVAR_POP(y, x) - 0.5)",
        lambda rs: (
            None
            if exact_bivariate("COVAR_POP", [r["y"] for r in rs], [r["x"] for r in rs]) is None
            else Fraction(1, 2)
            - exact_bivariate("COVAR_POP", [r["y"] for r in rs], [r["x"] for r in rs])
        ),  # type: ignore[operator]
    ),
]


@st.composite
def stat_queries(draw: st.DrawFn) -> tuple[str, list[GroupSpec], list[Any], bool]:
    groups = draw(st.lists(st.sampled_from(GROUP_SPECS), max_size=2, unique=True))
    stats = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(BIVARIATE), st.sampled_from(PAIRS)),
                st.sampled_from(COMPUTED),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda s: repr(s[0]) + repr(s[1]) if isinstance(s[1], tuple) else s[0],
        )
    )
    having = draw(st.booleans())
    items = [g.sql for g in groups] + ["COUNT(*)"]
    for stat in stats:
        items.append(
            f"{stat[0]}({stat[1][0]}, {stat[1][1]})" if isinstance(stat[1], tuple) else stat[0]
        )
    sql = f"SELECT {', '.join(items)} FROM d"
    if groups:
        sql += " GROUP BY " + ", ".join(g.sql for g in groups)
    if having:
        sql += " HAVING COUNT(*) >= 2"
    return sql, groups, stats, having


def expected_cells(
    parts: list[list[Row]], groups: list[GroupSpec]
) -> list[tuple[tuple[Any, ...], list[Row]]]:
    pooled = [r for part in parts for r in part]
    if not groups:
        return [((), pooled)]
    present = {tuple(g.label_of(r) for g in groups) for r in pooled}
    dense = set(itertools.product(*([v for v in g.labels if v not in g.sparse] for g in groups)))

    def rank(key: tuple[Any, ...]) -> list[int]:
        return [
            g.labels.index(v) if v is not None else len(g.labels)
            for g, v in zip(groups, key, strict=True)
        ]

    keys = sorted(present | dense, key=rank)
    return [(k, [r for r in pooled if tuple(g.label_of(r) for g in groups) == k]) for k in keys]


def check_stat(stat: Any, got: Any, members: list[Row]) -> None:
    name, spec = stat
    if not isinstance(spec, tuple):
        expected = spec(members)
        assert (got is None) == (expected is None), (name, got, expected)
        if expected is not None:
            assert got == (int(expected) if name.startswith("SUM(j)") else float(expected)), (
                name,
                got,
                expected,
            )
        return
    ycol, xcol = spec
    value = exact_bivariate(name, [r[ycol] for r in members], [r[xcol] for r in members])
    if value is None:
        assert got is None, (name, spec, got)
    elif name == "CORR":
        assert got == signed_sqrt(value), (name, spec, got, value)
    else:
        assert got == float(value), (name, spec, got, value)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(parts=stat_partitions, query=stat_queries())
def test_statistics_equal_the_pooled_exact_answer(parts: list[list[Row]], query: Any) -> None:
    sql, groups, stats, having = query
    table = federated(sql, parts)
    expected = expected_cells(parts, groups)
    if having:
        expected = [(k, m) for k, m in expected if len(m) >= 2]
    assert [row[: len(groups)] for row in table.rows] == [k for k, _ in expected], sql
    for row, (_, members) in zip(table.rows, expected, strict=True):
        assert row[len(groups)] == len(members)
        for stat, got in zip(stats, row[len(groups) + 1 :], strict=True):
            check_stat(stat, got, members)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(part=st.lists(st.one_of(rows, edge_rows), max_size=20), query=stat_queries())
def test_every_formulation_gives_the_same_pair_vector(part: list[Row], query: Any) -> None:
    """Pair statistics (masked columns, cross products) agree across tiers too."""
    bound = bind_query(parse_query(query[0]), SCHEMA)
    con = duckdb.connect()
    table = pa.table(
        {c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in SCHEMA.columns}
    )
    con.register("node", table)
    outcomes = []
    for tiers in (None, reference_tiers(bound)):
        try:
            outcomes.append(compute_local(bound, con, "node", tiers=tiers))
        except FederationError as exc:
            outcomes.append(type(exc))
    fast, ref = outcomes
    if isinstance(ref, np.ndarray):
        assert isinstance(fast, np.ndarray), (query[0], fast)
        assert np.array_equal(fast, ref), query[0]
    else:
        assert fast is ref, query[0]


# ---------------------------------------------------------------- SUM(a * b) and SUM(expr),
# and the product tiers. PSCHEMA has two unbounded doubles (the NARROW split tier of
# products on both sides), a bounded one and an integer column.

PSCHEMA = DatasetSchema(
    "p",
    (
        Column("u", ColumnType.DOUBLE),
        Column("v", ColumnType.DOUBLE),
        Column("w", ColumnType.DOUBLE, bounds=(-50.0, 50.0)),
        Column("k", ColumnType.INTEGER),
    ),
)
product_doubles = st.one_of(
    st.integers(-(2**40), 2**40).map(lambda v: v / 2**20),  # random, exact in the encoding
    st.integers(0, 50).map(lambda v: 1e7 + v / 2**20),  # large offset, tiny spread
    st.integers(-(2**20), 2**20).map(lambda v: v * 2.0**-52),  # tiny
    st.floats(-DOUBLE_LIMIT, DOUBLE_LIMIT, allow_nan=False),  # anything (bits below 2**-52)
    narrow_edges,  # around 2**11, where the NARROW split stops
    st.sampled_from([DOUBLE_LIMIT, -DOUBLE_LIMIT, 0.0, -0.0, 2.0**-53, 3 * 2.0**-54, 2.0**40]),
)
product_rows = st.fixed_dictionaries(
    {
        "u": nullable(product_doubles),
        "v": nullable(product_doubles),
        "w": nullable(st.floats(-50.0, 50.0, allow_nan=False)),
        "k": nullable(st.one_of(big_ints, st.integers(-(2**31), 2**31))),
    }
)
PRODUCTS = [("u", "v"), ("v", "u"), ("u", "u"), ("u", "w"), ("u", "k"), ("k", "k"), ("w", "k")]


def product_federated(sql: str, parts: list[list[Row]]) -> ResultTable:
    bound = bind_query(parse_query(sql), PSCHEMA)
    con = duckdb.connect()
    total = np.zeros(bound.vector_length, dtype=np.uint64)
    for k, part in enumerate(parts):
        columns = {
            c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in PSCHEMA.columns
        }
        con.register(f"node{k}", pa.table(columns))
        total += compute_local(bound, con, f'"node{k}"')
    return finalize(bound, total)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    parts=st.lists(st.lists(product_rows, max_size=8), min_size=1, max_size=4),
    pairs=st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=4, unique=True),
)
def test_sum_of_products_equals_the_exact_pooled_sum(
    parts: list[list[Row]], pairs: list[tuple[str, str]]
) -> None:
    """SUM(a * b): the exact sum of the encoded products, correctly rounded (an int for
    two integer columns); NULL without a row where both are present."""
    sql = "SELECT " + ", ".join(f"SUM({a} * {b})" for a, b in pairs) + " FROM p"
    (row,) = product_federated(sql, parts).rows
    pooled = [r for part in parts for r in part]
    for (a, b), got in zip(pairs, row, strict=True):
        expected = exact_sum_of_products([(r[a], r[b]) for r in pooled])
        if expected is None:
            assert got is None, (a, b, got)
        elif a == b == "k":
            assert got == expected, (a, b, got, expected)
        else:
            assert got == float(expected), (a, b, got, expected)


EXPRESSIONS: list[tuple[str, Callable[[Row], float | None]]] = [
    ("u + v", lambda r: None if r["u"] is None or r["v"] is None else r["u"] + r["v"]),
    ("u - 2 * w", lambda r: None if r["u"] is None or r["w"] is None else r["u"] - 2 * r["w"]),
    ("(u + w) / 4", lambda r: None if r["u"] is None or r["w"] is None else (r["u"] + r["w"]) / 4),
    ("-v * 0.5", lambda r: None if r["v"] is None else -r["v"] * 0.5),
]
bounded_doubles = product_doubles.filter(lambda v: abs(v) < 2.0**38)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    parts=st.lists(
        st.lists(
            st.fixed_dictionaries(
                {
                    "u": nullable(bounded_doubles),
                    "v": nullable(bounded_doubles),
                    "w": nullable(st.floats(-50.0, 50.0, allow_nan=False)),
                    "k": st.none(),
                }
            ),
            max_size=8,
        ),
        min_size=1,
        max_size=4,
    ),
    exprs=st.lists(st.sampled_from(EXPRESSIONS), min_size=1, max_size=3, unique_by=lambda e: e[0]),
)
def test_sum_of_an_expression_equals_the_exact_pooled_sum(
    parts: list[list[Row]], exprs: list[tuple[str, Callable[[Row], float | None]]]
) -> None:
    """SUM(expr): each row's DOUBLE value (as DuckDB computes it: IEEE, like Python's
    floats), encoded, summed exactly and rounded once; NULL rows are skipped."""
    sql = "SELECT " + ", ".join(f"SUM({text})" for text, _ in exprs) + " FROM p"
    (row,) = product_federated(sql, parts).rows
    pooled = [r for part in parts for r in part]
    for (text, per_row), got in zip(exprs, row, strict=True):
        values = [per_row(r) for r in pooled]
        present = [fixed_point_52(v) for v in values if v is not None]
        if not present:
            assert got is None, text
        else:
            assert got == float(sum(present, Fraction(0))), (text, got)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    part=st.lists(product_rows, max_size=16),
    pairs=st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=5, unique=True),
    with_sums=st.booleans(),
)
def test_every_formulation_gives_the_same_product_vector(
    part: list[Row], pairs: list[tuple[str, str]], with_sums: bool
) -> None:
    """The NARROW split of products (alone, with the columns' own fast tiers, and after
    escalation) gives the reference vector, or the same error."""
    items = [f"SUM({a} * {b})" for a, b in pairs]
    if with_sums:
        items += ["VAR_POP(u)", "AVG(v)"]
    bound = bind_query(parse_query(f"SELECT {', '.join(items)} FROM p"), PSCHEMA)
    con = duckdb.connect()
    columns = {c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in PSCHEMA.columns}
    con.register("node", pa.table(columns))
    outcomes = []
    for tiers in (None, reference_tiers(bound)):
        try:
            outcomes.append(compute_local(bound, con, "node", tiers=tiers))
        except FederationError as exc:
            outcomes.append(type(exc))
    fast, ref = outcomes
    if isinstance(ref, np.ndarray):
        assert isinstance(fast, np.ndarray), fast
        assert np.array_equal(fast, ref)
    else:
        assert fast is ref


# ----------------------------------------------------------------- grouping sets

_SET_KEYS = {
    "g": "g",
    "h": "h",
    "bx": "WIDTH_BUCKET(x, -2, 2, 4)",
    "by": "WIDTH_BUCKET(y, -50, 14, 8)",  # dyadic: exact buckets
    "bj": "WIDTH_BUCKET(j, -1000, 1000, 7)",
    "fj": "FLOOR(j / 250)",
}


@st.composite
def grouping_queries(draw: st.DrawFn) -> str:
    buckets = [k for k in _SET_KEYS if k.startswith("b")]
    sets = draw(
        st.lists(
            st.tuples(
                st.sampled_from(buckets),
                st.lists(st.sampled_from(list(_SET_KEYS)), unique=True, max_size=2),
            ),
            min_size=2,
            max_size=5,
        )
    )
    spec = ", ".join("(" + ", ".join(dict.fromkeys([b, *rest])) + ")" for b, rest in sets)
    used = sorted({k for b, rest in sets for k in (b, *rest)}, key=list(_SET_KEYS).index)
    keys = ", ".join(f"{_SET_KEYS[k]} AS {k}" for k in used)
    aggregates = draw(st.sampled_from(["COUNT(*)", "COUNT(*), SUM(j), AVG(x)"]))
    where = draw(st.sampled_from(WHERES)).sql
    return f"SELECT {keys}, {aggregates} FROM d {where} GROUP BY GROUPING SETS ({spec})"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    part=st.lists(st.one_of(rows, edge_rows), max_size=25),
    sql=grouping_queries(),
    nan=st.booleans(),
)
def test_every_grouping_sets_formulation_gives_the_same_vector(
    part: list[Row], sql: str, nan: bool
) -> None:
    """DuckDB's GROUPING SETS and the bucket-split UNION ALL give identical vectors
    (or the same error), and the released rows of every set add up to the same total."""
    if nan and part:
        part = [*part[:-1], {**part[-1], "x": math.nan}]
    bound = bind_query(parse_query(sql), SCHEMA)
    con = duckdb.connect()
    table = pa.table(
        {c.name: pa.array([r[c.name] for r in part], ARROW[c.type]) for c in SCHEMA.columns}
    )
    con.register("node", table)
    outcomes = []
    for mode in (SetsMode.BUCKET_UNION, SetsMode.GROUPING_SETS):
        if mode is SetsMode.BUCKET_UNION and choose_mode(bound) is not mode:
            continue
        with mock.patch.object(formulation, "choose_mode", lambda _, m=mode: m):
            try:
                outcomes.append(compute_local(bound, con, "node"))
            except FederationError as exc:
                outcomes.append(type(exc))
    if len(outcomes) == 2:
        union, grouping = outcomes
        if isinstance(grouping, np.ndarray):
            assert isinstance(union, np.ndarray), (sql, union)
            assert np.array_equal(union, grouping), sql
        else:
            assert union is grouping, sql
    vector = outcomes[-1]
    if not isinstance(vector, np.ndarray):
        return
    result = finalize(bound, vector)
    n = result.columns.index("count(*)")
    totals = Counter()
    layout = bound.layout
    for s in range(len(layout.sets)):
        start, stop = layout.set_starts[s], layout.set_starts[s] + layout.set_slots(s)
        rows_field = layout.field(FieldKind.ROWS)
        totals[s] = int(
            vector.reshape(layout.slots, layout.slot_width)[start:stop, rows_field.offset].sum()
        )
    assert len(set(totals.values())) == 1  # every set holds every row once
    assert sum(r[n] for r in result.rows) == totals[0] * len(layout.sets)
