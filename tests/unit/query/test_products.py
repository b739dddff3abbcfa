"""SUM(a * b) as an exact cross product, exact-integer outputs, and SUM(expr) per row."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from federation.errors import (
    DataError,
    QueryTypeError,
    UnsupportedQueryError,
    ValueOutOfRangeError,
)
from federation.query import bind_query, parse_query
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind
from tests.unit.query.conftest import run_federated

SCHEMA = DatasetSchema(
    "t",
    (
        Column("a", ColumnType.DOUBLE),
        Column("b", ColumnType.DOUBLE),
        Column("i", ColumnType.INTEGER),
        Column("small", ColumnType.DOUBLE, bounds=(-10.0, 10.0)),
        Column("g", ColumnType.CATEGORICAL, domain=("u", "v")),
    ),
)
PARTS = [
    {
        "a": [1e7 + 0.5, 2.25, None, -3.0],
        "b": [1e-3, 1e6, 7.0, None],
        "i": [2**40, -3, 5, 7],
        "small": [1.5, -2.0, 0.25, 9.0],
        "g": ["u", "v", "u", "v"],
    },
    {
        "a": [1e9 + 1 / 1024, 0.1],
        "b": [3.0, 0.3],
        "i": [-(2**41), 1],
        "small": [0.0, 1.0],
        "g": ["v", "u"],
    },
]
F52 = 2**52


def _enc(value: float, column: str) -> Fraction:
    """A value as the fixed point encodes it (doubles: the nearest multiple of 2**-52)."""
    if column == "i":
        return Fraction(value)
    return Fraction(round(Fraction(value) * F52), F52)


def _exact(col1: str, col2: str) -> Fraction | None:
    pairs = [
        (p[col1][k], p[col2][k])
        for p in PARTS
        for k in range(len(p[col1]))
        if p[col1][k] is not None and p[col2][k] is not None
    ]
    products = (_enc(x, col1) * _enc(y, col2) for x, y in pairs)
    return sum(products, Fraction(0)) if pairs else None


def test_sum_of_a_product_is_exact_and_typed() -> None:
    table, _ = run_federated(
        "SELECT SUM(a * b), SUM(a * a), SUM(i * i), SUM(i * a), SUM((b) * (small)) FROM t",
        SCHEMA,
        PARTS,
    )
    ab, aa, ii, ia, bs = table.rows[0]
    assert table.kinds == (
        ColumnKind.DOUBLE,
        ColumnKind.DOUBLE,
        ColumnKind.INTEGER,
        ColumnKind.DOUBLE,
        ColumnKind.DOUBLE,
    )
    assert ab == float(_exact("a", "b"))  # type: ignore[arg-type]
    assert aa == float(_exact("a", "a"))  # type: ignore[arg-type]
    assert ii == _exact("i", "i")
    assert ia == float(_exact("i", "a"))  # type: ignore[arg-type]
    assert bs == float(_exact("b", "small"))  # type: ignore[arg-type]
    assert table.columns[0] == "sum(a * b)"


def test_scaled_sums_of_doubles_are_released_as_exact_integers() -> None:
    table, _ = run_federated(
        f"SELECT {F52} * SUM(a) AS s, {F52 * F52} * SUM(a * b) AS p, {F52} * SUM(i * a) AS q, "
        f"{F52 // 2} * SUM(a) AS half, 2 * {F52} * SUM(a) - 1 AS shifted FROM t",
        SCHEMA,
        PARTS,
    )
    s, p, q, half, shifted = table.rows[0]
    assert table.kinds == (
        ColumnKind.INTEGER,
        ColumnKind.INTEGER,
        ColumnKind.INTEGER,
        ColumnKind.DOUBLE,
        ColumnKind.INTEGER,
    )
    # 0.1 has bits below 2**-52: it enters as round(0.1 * 2**52), as documented.
    encoded_a = [round(Fraction(v) * F52) for part in PARTS for v in part["a"] if v is not None]
    assert s == sum(encoded_a)
    assert isinstance(p, int)
    assert isinstance(q, int)
    assert Fraction(q, F52) == _exact("i", "a")
    assert shifted == 2 * s - 1
    assert isinstance(half, float)


def test_sum_of_a_product_with_no_pairs_is_null_and_rows_with_nulls_are_skipped() -> None:
    table, _ = run_federated("SELECT SUM(a * b) FROM t WHERE b IS NULL", SCHEMA, PARTS)
    assert table.rows[0] == (None,)
    table, _ = run_federated("SELECT g, SUM(a * b) FROM t GROUP BY g", SCHEMA, PARTS)
    by_group = dict(table.rows)
    expected = _enc(1e7 + 0.5, "a") * _enc(1e-3, "b") + _enc(0.1, "a") * _enc(0.3, "b")
    assert by_group["u"] == float(expected)


def test_product_columns_are_range_checked_and_typed() -> None:
    bad = [{"a": [1.0], "b": [2.0], "i": [1], "small": [11.0], "g": ["u"]}]
    with pytest.raises(ValueOutOfRangeError, match="small"):
        run_federated("SELECT SUM(a * small) FROM t", SCHEMA, bad)
    nan = [{"a": [math.nan], "b": [2.0], "i": [1], "small": [1.0], "g": ["u"]}]
    with pytest.raises(DataError, match="NaN"):
        run_federated("SELECT SUM(a * b) FROM t", SCHEMA, nan)
    with pytest.raises(QueryTypeError, match="numeric"):
        bind_query(parse_query("SELECT SUM(a * g) FROM t"), SCHEMA)


def test_sum_of_a_per_row_expression() -> None:
    table, _ = run_federated(
        "SELECT SUM(a * (1 - 1 / (1 + EXP(-(0.5 * small))))) AS e, SUM(-small + 2) AS f, "
        f"{F52} * SUM(small * small * small) AS cube FROM t",
        SCHEMA,
        PARTS,
    )
    e, f, cube = table.rows[0]
    rows = [(p["a"][k], p["small"][k]) for p in PARTS for k in range(len(p["a"]))]
    expected = sum(a * (1 - 1 / (1 + math.exp(-(0.5 * s)))) for a, s in rows if a is not None)
    assert e == pytest.approx(expected, rel=1e-14)
    assert f == sum(-s + 2 for _, s in rows)
    assert cube == sum(round(Fraction(s * s * s) * F52) for _, s in rows)
    assert table.kinds[2] is ColumnKind.INTEGER


def test_per_row_expressions_refuse_other_functions_and_text() -> None:
    with pytest.raises(UnsupportedQueryError, match="inside SUM"):
        parse_query("SELECT SUM(SQRT(a)) FROM t")
    with pytest.raises(UnsupportedQueryError):
        parse_query("SELECT AVG(a * b) FROM t")
    with pytest.raises(QueryTypeError, match="numeric columns"):
        bind_query(parse_query("SELECT SUM(a + g) FROM t"), SCHEMA)
    overflow = [{"a": [50.0], "b": [1.0], "i": [1], "small": [1.0], "g": ["u"]}]
    with pytest.raises(DataError, match="NaN or infinite"):
        run_federated("SELECT SUM(EXP(a * 100)) FROM t", SCHEMA, overflow)
    with pytest.raises(ValueOutOfRangeError, match="expression"):
        run_federated("SELECT SUM(EXP(a)) FROM t", SCHEMA, overflow)


def test_fingerprints_differ_by_expression() -> None:
    one = bind_query(parse_query("SELECT SUM(a * (b + 1)) FROM t"), SCHEMA)
    two = bind_query(parse_query("SELECT SUM(a * (b + 2)) FROM t"), SCHEMA)
    assert one.fingerprint != two.fingerprint
    assert "sum(" in one.canonical_sql.lower()
