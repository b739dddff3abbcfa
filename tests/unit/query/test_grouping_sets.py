"""GROUP BY GROUPING SETS / ROLLUP / CUBE: parsing, layout, node formulations, release."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.dp.mechanism import calibrate, dp_fields, plan_noise
from federation.errors import (
    NonAggregateQueryError,
    UnknownColumnError,
    UnsupportedQueryError,
)
from federation.policy_check import local_query_set_size
from federation.query import bind_query, compute_local, finalize, local_sql, parse_query
from federation.query import formulation as formulation_module
from federation.query.grouping_sets import SetsMode
from federation.query.groups import GroupKey, WidthBucket, dyadic_width, group_sql
from federation.query.layout import MAX_GROUP_SLOTS
from federation.schema import Column, ColumnType, DatasetSchema
from tests.unit.query.conftest import arrow_table, run_federated

SCHEMA = DatasetSchema(
    "t",
    (
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        Column("h", ColumnType.CATEGORICAL, domain=("u", "v")),
        Column("age", ColumnType.INTEGER, bounds=(0, 119)),
        Column("x", ColumnType.DOUBLE),
        Column("note", ColumnType.TEXT),
    ),
)

PARTS: list[dict[str, list[Any]]] = [
    {
        "g": ["a", "b", None, "a", "c"],
        "h": ["u", "u", "v", None, "v"],
        "age": [3, 45, 77, None, 118],
        "x": [0.5, -1.25, None, 2.0, 3.75],
        "note": ["p", "q", "r", "s", "t"],
    },
    {
        "g": ["b", "b"],
        "h": ["v", "u"],
        "age": [30, 31],
        "x": [1.0, 7.5],
        "note": ["u", "v"],
    },
]


def _bind(sql: str) -> Any:
    return bind_query(parse_query(sql), SCHEMA)


def _pooled() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    pooled = {k: [v for p in PARTS for v in p[k]] for k in PARTS[0]}
    con.register("t", arrow_table(SCHEMA, pooled))
    return con


# ----------------------------------------------------------------- parsing and layout


@pytest.mark.parametrize(
    ("group_by", "sets"),
    [
        ("GROUPING SETS ((g), (h, g), ())", ((0,), (0, 1), ())),
        ("GROUPING SETS (g, h)", ((0,), (1,))),
        ("ROLLUP (g, h)", ((0, 1), (0,), ())),
        ("CUBE (g, h)", ((0, 1), (0,), (1,), ())),
        ("g, GROUPING SETS ((h), ())", ((0, 1), (0,))),
        ("GROUPING SETS ((g), (g), (h))", ((0,), (0,), (1,))),  # listed twice: rows twice
        ("GROUPING SETS ((1), (2))", ((0,), (1,))),  # select-list positions
        ("GROUPING SETS ((g), ROLLUP (h))", ((0,), (1,), ())),
    ],
)
def test_grouping_sets_expand_as_in_sql(group_by: str, sets: tuple[tuple[int, ...], ...]) -> None:
    bound = _bind(f"SELECT g, h, COUNT(*) FROM t GROUP BY {group_by}")
    assert bound.layout.sets == sets
    sizes = {(): 1, (0,): 4, (1,): 3, (0, 1): 12}
    assert bound.layout.slots == sum(sizes[s] for s in sets)
    assert "GROUPING SETS" in bound.canonical_sql


def test_one_set_of_every_key_is_an_ordinary_group_by() -> None:
    ordinary = _bind("SELECT g, h, COUNT(*) FROM t GROUP BY g, h")
    for spelled in ("GROUPING SETS ((g, h))", "GROUPING SETS ((h, g))", "ROLLUP (g), ROLLUP (h)"):
        same = _bind(f"SELECT g, h, COUNT(*) FROM t GROUP BY {spelled}")
        if "ROLLUP" in spelled:  # (g, h), (g), (h), ()
            assert len(same.layout.sets) == 4
            continue
        assert same.layout.sets == ((0, 1),)
        assert not same.layout.grouping_sets
    assert ordinary.layout.to_dict()["sets"] == [[0, 1]]
    assert "GROUPING" not in ordinary.canonical_sql


def test_the_fingerprint_binds_the_sets() -> None:
    prints = {
        _bind(f"SELECT g, h, COUNT(*) FROM t GROUP BY {g}").fingerprint
        for g in ("g, h", "GROUPING SETS ((g), (h))", "GROUPING SETS ((h), (g))", "ROLLUP (g, h)")
    }
    assert len(prints) == 4


def test_slot_helpers_walk_every_set() -> None:
    bound = _bind("SELECT g, h, COUNT(*) FROM t GROUP BY GROUPING SETS ((h), (g, h), ())")
    layout = bound.layout
    assert [k.name for k in bound.group_keys] == ["h", "g"]  # in first-use order
    assert layout.set_starts == (0, 3, 15)
    seen = []
    for slot in range(layout.slots):
        index = layout.slot_set(slot)
        positions = layout.slot_positions(slot)
        assert layout.slot_index(positions, index) == slot
        seen.append((index, layout.slot_labels(slot)))
    assert seen[0] == (0, ("u", None))
    assert seen[3] == (1, ("u", "a"))
    assert seen[-1] == (2, (None, None))
    assert layout.slot_is_sparse(2)  # h's NULL group
    assert not layout.slot_is_sparse(3)
    assert not layout.slot_is_sparse(15)  # the grand total is always reported
    with pytest.raises(IndexError):
        layout.slot_set(layout.slots)


@pytest.mark.parametrize(
    ("sql", "error", "needle"),
    [
        ("SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (nope))", UnknownColumnError, "nope"),
        (
            "SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (age))",
            UnsupportedQueryError,
            "age",
        ),
        (
            "SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (note))",
            UnsupportedQueryError,
            "note",
        ),
        (
            "SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (x + 1))",
            UnsupportedQueryError,
            r"x \+ 1",
        ),
        ("SELECT h, COUNT(*) FROM t GROUP BY GROUPING SETS ((g))", NonAggregateQueryError, "h"),
        ("SELECT GROUPING(h) FROM t GROUP BY GROUPING SETS ((g), ())", NonAggregateQueryError, "h"),
        (
            "SELECT COUNT(*) FROM t GROUP BY CUBE (g, h, g, h, g, h, g, h, g, h, g, h, g)",
            UnsupportedQueryError,
            "CUBE",
        ),
        ("SELECT COUNT(*) FROM t GROUP BY ALL", UnsupportedQueryError, "ALL"),
        ("SELECT g, COUNT(*) FROM t GROUP BY g, g", UnsupportedQueryError, "twice"),
    ],
)
def test_bad_grouping_sets_are_clear_errors(sql: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        _bind(sql)


def test_too_many_slots_in_all_is_a_clear_error() -> None:
    sets = ", ".join(f"(WIDTH_BUCKET(x, {i}, {i + 1}, 300000))" for i in range(4))
    with pytest.raises(UnsupportedQueryError, match=r"grouping sets give \d+ groups in all"):
        _bind(f"SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ({sets})")
    one = _bind("SELECT COUNT(*) FROM t GROUP BY GROUPING SETS ((WIDTH_BUCKET(x, 0, 1, 300000)))")
    assert one.layout.slots <= MAX_GROUP_SLOTS


# ----------------------------------------------------------------- released results


QUERIES = [
    "SELECT g, h, GROUPING(g, h) AS gid, COUNT(*) AS n, SUM(age) AS s, COUNT(x) AS nx "
    "FROM t GROUP BY GROUPING SETS ((g), (g, h), (), (h))",
    "SELECT g, FLOOR(age / 30) AS d, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY ROLLUP (g, d)",
    "SELECT g, h, COUNT(*) AS n FROM t WHERE age > 10 GROUP BY CUBE (g, h)",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_results_equal_duckdbs_grouping_sets(sql: str) -> None:
    table, _ = run_federated(sql, SCHEMA, PARTS)
    n = table.columns.index("n")
    ours = Counter(r for r in table.rows if r[n])  # the others: zero cells
    assert ours == Counter(_pooled().execute(sql).fetchall())


def test_rows_come_set_by_set_with_zero_cells_and_grouping() -> None:
    table, _ = run_federated(
        "SELECT g, h, GROUPING(g, h) AS gid, GROUPING(h) AS gh, COUNT(*) AS n FROM t "
        "GROUP BY GROUPING SETS ((h), (g), ())",
        SCHEMA,
        PARTS,
    )
    assert list(table.rows) == [
        (None, "u", 2, 0, 3),
        (None, "v", 2, 0, 3),
        (None, None, 2, 0, 1),  # h's NULL group: it has a row
        ("a", None, 1, 1, 2),
        ("b", None, 1, 1, 3),
        ("c", None, 1, 1, 1),
        (None, None, 1, 1, 1),  # g's NULL group
        (None, None, 3, 1, 7),  # the grand total
    ]


def test_having_order_and_limit_apply_to_every_sets_rows() -> None:
    table, _ = run_federated(
        "SELECT g, h, COUNT(*) AS n FROM t GROUP BY GROUPING SETS ((g), (h), ()) "
        "HAVING GROUPING(g) = 0 OR n > 3 ORDER BY n DESC, g NULLS FIRST LIMIT 3",
        SCHEMA,
        PARTS,
    )
    assert list(table.rows) == [(None, None, 7), ("b", None, 3), ("a", None, 2)]


def test_min_cell_size_suppresses_each_slot() -> None:
    bound = _bind("SELECT g, COUNT(*) AS n FROM t GROUP BY GROUPING SETS ((g), ())")
    _, vectors = run_federated(bound.canonical_sql, SCHEMA, PARTS)
    table = finalize(bound, vectors[0] + vectors[1], min_cell_size=3)
    by_g = {r[0]: r[1] for r in table.rows[:-1]}
    assert by_g == {"a": None, "b": 3, "c": None, None: None}  # 2, 3, 1 and 1 rows
    assert table.rows[-1] == (None, 7)


def test_a_nodes_query_set_size_counts_each_row_once() -> None:
    bound = _bind("SELECT g, COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (h), (), ())")
    _, vectors = run_federated(bound.canonical_sql, SCHEMA, PARTS)
    assert [local_query_set_size(bound, v) for v in vectors] == [5, 2]


def test_dp_pays_for_every_grouping_set() -> None:
    plain = _bind("SELECT g, COUNT(*) FROM t GROUP BY g")
    sets = _bind("SELECT g, h, COUNT(*) FROM t GROUP BY GROUPING SETS ((g), (h), ())")
    assert dp_fields(plain) == dp_fields(sets)
    one, three = plan_noise(plain, 0.5, 3, 5), plan_noise(sets, 0.5, 3, 5)
    assert one.multiplier == calibrate(0.5, 1, 3, 5)
    assert three.multiplier == calibrate(0.5, 3, 3, 5)  # a row is in three slots
    assert three.multiplier > one.multiplier * 1.5


# ----------------------------------------------------------------- node formulations


BUCKET_SQL = (
    "SELECT g, WIDTH_BUCKET(x, -2, 2, 4) AS b1, WIDTH_BUCKET(x, 0.5, 8.5, 16) AS b2, "
    "WIDTH_BUCKET(age, 0, 120, 3) AS b3, COUNT(*) AS n FROM t "
    "GROUP BY GROUPING SETS ((b1), (g, b2), (b3), (g, b1), (b1))"
)


def test_bucket_sets_use_the_union_formulation_and_agree_with_grouping_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = _bind(BUCKET_SQL)
    assert "UNION ALL" in local_sql(bound, "rel")
    table, vectors = run_federated(BUCKET_SQL, SCHEMA, PARTS)
    monkeypatch.setattr(formulation_module, "choose_mode", lambda _: SetsMode.GROUPING_SETS)
    assert "GROUPING SETS" in local_sql(bound, "rel")
    reference, expected = run_federated(BUCKET_SQL, SCHEMA, PARTS)
    for got, want in zip(vectors, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert table == reference
    nonzero = [r for r in table.rows if r[-1]]
    assert sum(r[-1] for r in nonzero if r[1] is not None and r[0] is None) == 2 * 6  # (b1) twice


def test_other_aggregates_keep_duckdbs_grouping_sets() -> None:
    bound = _bind(
        "SELECT WIDTH_BUCKET(x, 0, 4, 4) AS b, AVG(age) FROM t GROUP BY GROUPING SETS ((b), ())"
    )
    assert "GROUPING SETS" in local_sql(bound, "rel")


def test_a_bad_value_in_a_bucket_union_names_its_check() -> None:
    parts = [{**PARTS[0], "x": [0.5, float("nan"), None, 2.0, 3.75]}, PARTS[1]]
    with pytest.raises(Exception, match="NaN"):
        run_federated(BUCKET_SQL, SCHEMA, parts)
    late = [PARTS[0], {**PARTS[1], "age": [30, 131]}]
    with pytest.raises(Exception, match="age"):
        run_federated(
            "SELECT WIDTH_BUCKET(x, 0, 4, 4) AS b, FLOOR(age / 30) AS d, COUNT(*) FROM t "
            "GROUP BY GROUPING SETS ((b, d), (b))",
            SCHEMA,
            late,
        )


def test_an_empty_node_contributes_zeros() -> None:
    bound = _bind(BUCKET_SQL)
    con = duckdb.connect()
    con.register("empty", arrow_table(SCHEMA, {k: [] for k in PARTS[0]}))
    assert not compute_local(bound, con, "empty").any()


# ----------------------------------------------------------------- exact buckets


dyadic = st.tuples(
    st.integers(-1200, 60),  # exponent of the width
    st.integers(-(2**40), 2**40),  # lo as a multiple of the width
    st.sampled_from([1, 2, 3, 2048, 5, 64]),
)


@settings(max_examples=60, deadline=None)
@given(
    params=dyadic,
    picks=st.lists(
        st.tuples(st.integers(-1, 2100), st.sampled_from([-1, 0, 1])), min_size=1, max_size=30
    ),
)
def test_dyadic_width_buckets_are_exact(
    params: tuple[int, int, int], picks: list[tuple[int, int]]
) -> None:
    exponent, multiple, count = params
    width = math.ldexp(1.0, exponent)
    lo, hi = multiple * width, (multiple + count) * width
    if dyadic_width(lo, hi, count) is None:
        return  # too narrow for its magnitude: the floating-point formula applies
    values = []
    for k, step in picks:  # boundaries and their neighbouring doubles
        edge = lo + min(k, count + 1) * width
        values.append(edge if step == 0 else math.nextafter(edge, math.inf * step))
    key = WidthBucket("x", repr(lo), repr(hi), count)
    con = duckdb.connect()
    con.execute("CREATE TABLE v (x DOUBLE)")
    con.executemany("INSERT INTO v VALUES (?)", [[x] for x in values])
    sql = group_sql(GroupKey(key, tuple(range(count + 2)), frozenset(), "b"))
    got = [row[0] for row in con.execute(f"SELECT {sql} FROM v").fetchall()]
    for x, bucket in zip(values, got, strict=True):
        exact = Fraction(x)
        if exact < Fraction(lo):
            assert bucket == 0
        elif exact >= Fraction(hi):
            assert bucket == count + 1
        else:
            assert bucket == math.floor((exact - Fraction(lo)) / Fraction(width)) + 1


def test_dyadic_width_needs_a_power_of_two_aligned_and_resolvable() -> None:
    assert dyadic_width(0.0, 8.0, 4) == 2.0
    assert dyadic_width(1.0, 9.0, 4) is None  # lo not a multiple of the width
    assert dyadic_width(0.0, 6.0, 4) is None  # width 1.5
    assert dyadic_width(1e7, 1e7 + 2.0**-30 * 4, 4) is None  # buckets below the resolution
    assert dyadic_width(2.0, 1.0, 4) is None
