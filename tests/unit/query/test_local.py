"""compute_local + finalize on real DuckDB: SQL semantics, errors, alignment."""

from __future__ import annotations

import math
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from federation.errors import (
    DataError,
    ProtocolError,
    SchemaMismatchError,
    ValueOutOfRangeError,
)
from federation.query import bind_query, compute_local, finalize, local_sql, parse_query
from federation.schema import DatasetSchema
from federation.table import ResultTable

from .conftest import arrow_table, run_federated

Federated = Callable[..., ResultTable]


def test_null_semantics(schema: DatasetSchema, federated: Federated) -> None:
    parts = [
        {"sex": ["F", None, "F"], "age": [10, 20, None], "note": ["a", None, None]},
        {"sex": ["F"], "age": [None], "note": [None]},
    ]
    t = federated(
        "SELECT sex, COUNT(*), COUNT(age), COUNT(note), SUM(age), AVG(age), VAR_SAMP(age), "
        "VAR_POP(age), STDDEV_POP(age) FROM patients GROUP BY sex",
        schema,
        parts,
    )
    # M has no rows: a zero cell. NULL group has one row. F: ages 10, NULL, NULL.
    assert t.rows == (
        ("F", 3, 1, 1, 10, 10.0, None, 0.0, 0.0),
        ("M", 0, 0, 0, None, None, None, None, None),
        (None, 1, 1, 0, 20, 20.0, None, 0.0, 0.0),
    )


def test_all_null_column_gives_null_aggregates(schema: DatasetSchema, federated: Federated) -> None:
    t = federated(
        "SELECT COUNT(*), COUNT(weight), SUM(weight), AVG(weight), STDDEV_SAMP(weight) "
        "FROM patients",
        schema,
        [{"weight": [None, None]}, {"weight": []}],
    )
    assert t.rows == ((2, 0, None, None, None),)


def test_where_filtering_everything(schema: DatasetSchema, federated: Federated) -> None:
    parts = [{"sex": ["F", "M"], "age": [1, 2]}]
    ungrouped = federated(
        "SELECT COUNT(*), SUM(age), AVG(age) FROM patients WHERE age > 100", schema, parts
    )
    assert ungrouped.rows == ((0, None, None),)
    grouped = federated(
        "SELECT sex, COUNT(*) FROM patients WHERE age > 100 GROUP BY sex", schema, parts
    )
    assert grouped.rows == (("F", 0), ("M", 0))  # zero cells; no NULL group
    assert grouped.columns == ("sex", "count(*)")
    having = federated(
        "SELECT sex, COUNT(*) FROM patients WHERE age > 100 GROUP BY sex HAVING COUNT(*) > 0",
        schema,
        parts,
    )
    assert having.rows == ()


def test_no_nodes_rows_at_all(schema: DatasetSchema, federated: Federated) -> None:
    t = federated("SELECT VAR_POP(score) FROM patients", schema, [{}, {}])
    assert t.rows == ((None,),)


def test_integer_sum_is_exact_beyond_2_53(schema: DatasetSchema, federated: Federated) -> None:
    big = 2**62 - 1
    parts = [{"age": [big, big, 2**53 + 1]}, {"age": [big, -3]}, {"age": [big]}]
    t = federated("SELECT SUM(age), AVG(age) FROM patients", schema, parts)
    total = 4 * big + 2**53 + 1 - 3
    assert t.rows[0][0] == total
    assert isinstance(t.rows[0][0], int)
    assert t.rows[0][1] == total / 6  # int/int true division: correctly rounded


def test_group_order_is_domain_order_null_last(schema: DatasetSchema, federated: Federated) -> None:
    parts = [{"site": [None, "east", "north"]}, {"site": ["east", None]}]
    t = federated("SELECT site, COUNT(*) AS n FROM patients GROUP BY site", schema, parts)
    assert t.rows == (("north", 1), ("south", 0), ("east", 2), (None, 2))


def test_order_by_limit_offset_on_output(schema: DatasetSchema, federated: Federated) -> None:
    parts = [{"site": ["south", "south", "east", "north", "north", "north", None]}]
    base = "SELECT site, COUNT(*) AS n FROM patients GROUP BY site"
    assert federated(base + " ORDER BY n DESC", schema, parts).column("site") == [
        "north",
        "south",
        "east",
        None,
    ]
    assert federated(base + " ORDER BY site DESC NULLS FIRST", schema, parts).column("site") == [
        None,
        "south",
        "north",
        "east",
    ]
    assert federated(base + " ORDER BY 1", schema, parts).column("site") == [
        "east",
        "north",
        "south",
        None,
    ]
    # ties keep the default (domain) order: east before NULL
    assert federated(base + " ORDER BY n LIMIT 2 OFFSET 1", schema, parts).rows == (
        (None, 1),
        ("south", 2),
    )


def test_two_group_columns(schema: DatasetSchema, federated: Federated) -> None:
    parts = [
        {
            "sex": ["M", "F", "F", None],
            "site": ["east", "east", None, "north"],
            "age": [1, 2, 3, 4],
        },
        {"sex": ["F"], "site": ["east"], "age": [5]},
    ]
    t = federated("SELECT sex, site, SUM(age) FROM patients GROUP BY sex, site", schema, parts)
    assert t.rows == (
        ("F", "north", None),
        ("F", "south", None),
        ("F", "east", 7),
        ("F", None, 3),
        ("M", "north", None),
        ("M", "south", None),
        ("M", "east", 1),
        (None, "north", 4),
    )


def test_where_predicates(schema: DatasetSchema, federated: Federated) -> None:
    parts = [
        {
            "age": [10, 20, 30, None, 50],
            "note": ["apple", "Avocado", "banana", None, "x'y"],
            "sex": ["F", "M", None, "F", "M"],
            "weight": [1.5, -2.0, 3.25, 4.0, None],
        }
    ]
    cases = {
        "age BETWEEN 15 AND 35": 2,
        "age NOT BETWEEN 15 AND 35": 2,
        "age IN (10, 50) OR note IS NULL": 3,
        "note LIKE 'a%'": 1,
        "note ILIKE 'a%'": 2,
        "note NOT LIKE '%a%'": 1,
        "sex IS NULL": 1,
        "NOT (sex = 'F')": 2,
        "age * 2 + 1 > 41 AND age % 20 = 10": 2,
        "abs(weight) > 1.9 AND length(note) = 7": 1,
        "lower(note) = 'avocado' OR upper(note) = 'BANANA'": 2,
        "weight / 2 < 0": 1,
        "-age < -25": 2,
        "note = 'x''y'": 1,
        "note = 'x'' OR 1=1 --'": 0,
        "sex IN ('F', NULL)": 2,
        "TRUE": 5,
        "NULL": 0,
    }
    for where, expected in cases.items():
        t = federated(f"SELECT COUNT(*) FROM patients WHERE {where}", schema, parts)
        assert t.rows == ((expected,),), where


def test_rows_order_does_not_change_the_vector(schema: DatasetSchema) -> None:
    rng = np.random.default_rng(7)
    n = 200
    data = {
        "sex": list(rng.choice(["F", "M"], n)),
        "age": [int(v) for v in rng.integers(-(2**62) + 1, 2**62 - 1, n)],
        "weight": [float(v) for v in rng.normal(0, 1e9, n)],
    }
    perm = rng.permutation(n)
    shuffled = {k: [v[i] for i in perm] for k, v in data.items()}
    sql = "SELECT sex, AVG(age), VAR_POP(age), VAR_SAMP(weight) FROM patients GROUP BY sex"
    _, (a,) = run_federated(sql, schema, [data])
    _, (b,) = run_federated(sql, schema, [shuffled])
    assert a.dtype == np.uint64
    assert np.array_equal(a, b)


def test_vectors_are_aligned_whatever_groups_a_node_has(schema: DatasetSchema) -> None:
    sql = "SELECT site, COUNT(*) FROM patients GROUP BY site"
    table, vectors = run_federated(sql, schema, [{"site": ["east"]}, {"site": ["north"]}, {}])
    assert {v.shape for v in vectors} == {(4,)}  # 4 slots x one ROWS digit
    assert table.rows == (("north", 1), ("south", 0), ("east", 1))


def test_categorical_enum_relation(schema: DatasetSchema) -> None:
    con = duckdb.connect()
    con.register("raw", pa.table({"sex": ["F", "M", "F", None]}))
    con.execute("CREATE VIEW v AS SELECT sex::ENUM('F', 'M') AS sex FROM raw")
    bound = bind_query(parse_query("SELECT sex, COUNT(*) FROM patients GROUP BY sex"), schema)
    table = finalize(bound, compute_local(bound, con, "v"))
    assert table.rows == (("F", 2), ("M", 1), (None, 1))


SECRET = 123456789.5


@pytest.mark.parametrize(
    ("column", "bad", "error", "needle"),
    [
        ("age", 2**62, ValueOutOfRangeError, "[-4611686018427387903, 4611686018427387903]"),
        ("age", -(2**63), ValueOutOfRangeError, "'age'"),
        ("weight", 2.0**41, ValueOutOfRangeError, "2199023255551.9998"),
        ("weight", -(2.0**50), ValueOutOfRangeError, "'weight'"),
        ("weight", 1e300, ValueOutOfRangeError, "'weight'"),
        ("weight", math.nan, DataError, "NaN"),
        ("weight", math.inf, DataError, "infinite"),
        ("weight", -math.inf, DataError, "infinite"),
        ("score", 100.5, ValueOutOfRangeError, "[-100.0, 100.0]"),
        ("score", math.nan, DataError, "NaN"),
    ],
)
@pytest.mark.parametrize("func", ["SUM", "AVG", "VAR_POP"])
def test_bad_values_raise_naming_the_column(
    schema: DatasetSchema,
    federated: Federated,
    column: str,
    bad: float,
    error: type[DataError],
    needle: str,
    func: str,
) -> None:
    parts = [{column: [1, SECRET, bad, None] if column != "age" else [1, 7, bad, None]}]
    with pytest.raises(error) as info:
        federated(f"SELECT {func}({column}) FROM patients", schema, parts)
    assert type(info.value) is error
    msg = str(info.value)
    assert f"'{column}'" in msg
    assert needle in msg
    if math.isfinite(bad):  # ("inf" is part of the word "infinite")
        assert repr(bad) not in msg
    assert str(SECRET) not in msg


def test_bad_values_are_fine_when_filtered_out_or_only_counted(
    schema: DatasetSchema, federated: Federated
) -> None:
    parts = [{"weight": [1.0, math.nan, 2.0**45], "age": [1, 2, 3]}]
    t = federated("SELECT SUM(weight) FROM patients WHERE age = 1", schema, parts)
    assert t.rows == ((1.0,),)
    t = federated("SELECT COUNT(weight) FROM patients", schema, parts)
    assert t.rows == ((3,),)


def test_value_at_the_edge_of_the_range_is_accepted(
    schema: DatasetSchema, federated: Federated
) -> None:
    edge = math.nextafter(2.0**41, 0.0)
    t = federated(
        "SELECT SUM(weight), SUM(age), SUM(score) FROM patients",
        schema,
        [
            {
                "weight": [edge, -edge, edge],
                "age": [2**62 - 1, -(2**62) + 1, 5],
                "score": [100.0, None, -0.0],
            }
        ],
    )
    assert t.rows == ((edge, 5, 100.0),)


@pytest.mark.parametrize(
    "query", ["SELECT sex, COUNT(*) FROM patients GROUP BY sex", "SELECT COUNT(sex) FROM patients"]
)
def test_out_of_domain_category_is_a_data_error(
    schema: DatasetSchema, federated: Federated, query: str
) -> None:
    with pytest.raises(DataError) as info:
        federated(query, schema, [{"sex": ["F", "Zebra-Secret"]}])
    assert "'sex'" in str(info.value)
    assert "Zebra" not in str(info.value)


def test_where_evaluation_failure_hides_values(schema: DatasetSchema, federated: Federated) -> None:
    parts = [{"age": [987654321987, 2]}]
    for where in ("age * age > 0", "age % (age - 2) = 0"):
        with pytest.raises(DataError) as info:
            federated(f"SELECT COUNT(*) FROM patients WHERE {where}", schema, parts)
        assert type(info.value) is DataError
        assert "987654321987" not in str(info.value)
        assert "WHERE" in str(info.value)


def test_relation_must_match_the_schema(schema: DatasetSchema) -> None:
    bound = bind_query(parse_query("SELECT AVG(weight) FROM patients"), schema)
    con = duckdb.connect()
    con.register("wrong", pa.table({"weight": pa.array([1, 2], pa.int64())}))
    with pytest.raises(SchemaMismatchError, match=r"'weight' is declared double .* BIGINT"):
        compute_local(bound, con, "wrong")
    con.register("missing", pa.table({"age": pa.array([1, 2], pa.int64())}))
    with pytest.raises(SchemaMismatchError, match="no column 'weight'"):
        compute_local(bound, con, "missing")
    with pytest.raises(DataError, match="cannot read"):
        compute_local(bound, con, "no_such_view")


def test_injection_through_literals_stays_data(schema: DatasetSchema) -> None:
    bound = bind_query(
        parse_query(
            "SELECT COUNT(*) FROM patients WHERE note = 'a''; DROP TABLE keep; --' "
            "OR note LIKE '%'' OR ''1''=''1'"
        ),
        schema,
    )
    con = duckdb.connect()
    con.execute("CREATE TABLE keep AS SELECT 1 AS x")
    con.register("node", arrow_table(schema, {"note": ["a'; DROP TABLE keep; --", "b"]}))
    assert finalize(bound, compute_local(bound, con, "node")).rows == ((1,),)
    assert con.execute("SELECT count(*) FROM keep").fetchall() == [(1,)]
    assert len(con.extract_statements(local_sql(bound, "node"))) == 1


def test_finalize_rejects_bad_totals(schema: DatasetSchema) -> None:
    bound = bind_query(parse_query("SELECT sex, VAR_POP(age) FROM patients GROUP BY sex"), schema)
    with pytest.raises(ProtocolError, match="length"):
        finalize(bound, np.zeros(bound.vector_length + 1, dtype=np.uint64))
    with pytest.raises(ProtocolError, match="uint64"):
        finalize(bound, np.zeros(bound.vector_length, dtype=np.int64))
    garbage = np.random.default_rng(1).integers(0, 2**63, bound.vector_length, dtype=np.uint64)
    with pytest.raises(ProtocolError, match="inconsistent"):
        finalize(bound, garbage)


def test_zero_vector_finalizes_to_empty_result(schema: DatasetSchema) -> None:
    bound = bind_query(parse_query("SELECT sex, AVG(age) FROM patients GROUP BY sex"), schema)
    zero = np.zeros(bound.vector_length, dtype=np.uint64)
    assert finalize(bound, zero).rows == (("F", None), ("M", None))
