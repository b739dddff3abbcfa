"""The local query's tiers: same vector whichever runs, and the fallbacks are taken."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import duckdb
import numpy as np
import pytest

from federation.errors import DataError, ValueOutOfRangeError
from federation.query import bind_query, compute_local, finalize, local_sql, parse_query
from federation.query.formulation import Tier, column_tiers, reference_tiers
from federation.schema import Column, ColumnType, DatasetSchema

from .conftest import Partition, arrow_table

NARROW_EDGE = math.nextafter(2.0**11, 0.0)


def vectors(
    schema: DatasetSchema, sql: str, data: Partition, tried: list[tuple[Tier, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """The vector of the default run and of the reference formulation.

    ``tried`` is left holding the tiers of the default run only.
    """
    bound = bind_query(parse_query(sql), schema)
    con = duckdb.connect()
    con.register("node", arrow_table(schema, data))
    reference = compute_local(bound, con, "node", tiers=reference_tiers(bound))
    assert tried == [reference_tiers(bound)]
    tried.clear()
    return compute_local(bound, con, "node"), reference


def rows_of(schema: DatasetSchema, sql: str, data: Partition) -> tuple[tuple[Any, ...], ...]:
    bound = bind_query(parse_query(sql), schema)
    con = duckdb.connect()
    con.register("node", arrow_table(schema, data))
    return finalize(bound, compute_local(bound, con, "node")).rows


def test_tiers_per_column(schema: DatasetSchema) -> None:
    bound = bind_query(
        parse_query(
            "SELECT COUNT(sex), SUM(age), VAR_POP(age), AVG(weight), VAR_POP(score) FROM patients"
        ),
        schema,
    )
    by_name = {a.column.name: column_tiers(a) for a in bound.aggregations}
    assert by_name == {
        "sex": (Tier.REFERENCE,),
        "age": (Tier.SMALL, Tier.REFERENCE),
        "weight": (Tier.NARROW, Tier.REFERENCE),
        "score": (Tier.CENTERED, Tier.NARROW, Tier.REFERENCE),
    }


@pytest.mark.parametrize("group", ["", "sex, "])
def test_fast_tiers_run_alone_on_ordinary_data(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]], group: str
) -> None:
    sql = f"SELECT {group}AVG(weight), VAR_SAMP(weight), VAR_POP(age) FROM patients"
    sql += " GROUP BY sex" if group else ""
    data = {"sex": ["F", "M", "F", None], "weight": [51.5, -0.1, 1447.5, None], "age": [3, 4, 5, 6]}
    fast, reference = vectors(schema, sql, data, tried)
    assert np.array_equal(fast, reference)
    assert tried == [(Tier.NARROW, Tier.SMALL)]


@pytest.mark.parametrize("group", ["", "sex, "])
@pytest.mark.parametrize("big", [2048.0, -2048.0, 5000.5, -(2.0**40), 2.0**41 - 1])
def test_narrow_falls_back_beyond_its_range(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]], group: str, big: float
) -> None:
    sql = f"SELECT {group}SUM(weight), VAR_POP(weight) FROM patients"
    sql += " GROUP BY sex" if group else ""
    data = {"sex": ["F", "M", "F"], "weight": [1.25, big, NARROW_EDGE]}
    fast, reference = vectors(schema, sql, data, tried)
    assert np.array_equal(fast, reference)
    assert tried == [(Tier.NARROW,), (Tier.REFERENCE,)]


@pytest.mark.parametrize(("value", "falls_back"), [(1400.0, False), (1500.0, True)])
def test_ungrouped_narrow_falls_back_when_its_products_overflow(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]], value: float, falls_back: bool
) -> None:
    """Without GROUP BY the TWO limb plan on X: ``a*a`` overflows once |X| > 2**62.5."""
    fast, reference = vectors(
        schema, "SELECT VAR_POP(weight) FROM patients", {"weight": [value, -value, 3.0]}, tried
    )
    assert np.array_equal(fast, reference)
    assert tried == ([(Tier.NARROW,), (Tier.REFERENCE,)] if falls_back else [(Tier.NARROW,)])


@pytest.mark.parametrize("values", [[1, 2**27], [-(2**40), 5], [2**26, 2**26, 2**26]])
def test_small_escalates_when_its_sum_does_not_certify(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]], values: list[int]
) -> None:
    """|x| >= 2**26.5, or a sum of squares reaching 2**53 (3·2**52), escalate to REFERENCE."""
    sql = "SELECT sex, SUM(age), VAR_SAMP(age) FROM patients GROUP BY sex"
    fast, reference = vectors(schema, sql, {"sex": ["F"] * len(values), "age": values}, tried)
    assert np.array_equal(fast, reference)
    assert tried == [(Tier.SMALL,), (Tier.REFERENCE,)]
    rows = rows_of(schema, sql, {"sex": ["F"] * len(values), "age": values})
    assert rows[0][:2] == ("F", sum(values))
    assert rows[1] == ("M", None, None)  # the zero cell of the declared domain


def test_only_the_failing_column_escalates(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]]
) -> None:
    sql = "SELECT sex, VAR_POP(age), VAR_POP(weight) FROM patients GROUP BY sex"
    fast, reference = vectors(
        schema, sql, {"sex": ["F", "M"], "age": [2**40, 1], "weight": [0.5, 7.0]}, tried
    )
    assert np.array_equal(fast, reference)
    assert tried == [(Tier.SMALL, Tier.NARROW), (Tier.REFERENCE, Tier.NARROW)]


def test_uncertified_double_sums_escalate_with_many_rows(
    schema: DatasetSchema, tried: list[tuple[Tier, ...]]
) -> None:
    """2.1e6 rows whose low limbs are 2**16-1: Σ f0·f0 passes 2**53, so NARROW declines."""
    n = 2_100_000
    value = (2**32 - 1) / 2**52  # X = 2**32 - 1, exactly
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE big AS SELECT 'F' AS sex, CAST('{value!r}' AS DOUBLE) AS weight "
        f"FROM range({n})"
    )
    bound = bind_query(
        parse_query(
            "SELECT sex, COUNT(*), SUM(weight), VAR_POP(weight) FROM patients GROUP BY sex"
        ),
        schema,
    )
    table = finalize(bound, compute_local(bound, con, "big"))
    assert tried == [(Tier.NARROW,), (Tier.REFERENCE,)]
    assert table.rows[0] == ("F", n, float(Fraction(value) * n), 0.0)


@pytest.mark.parametrize("group", ["", "sex, "])
@pytest.mark.parametrize(
    ("column", "bad", "error"),
    [
        ("weight", math.nan, DataError),
        ("weight", math.inf, DataError),
        ("weight", 2.0**41, ValueOutOfRangeError),
        ("score", 100.5, ValueOutOfRangeError),
        ("score", -2048.0, ValueOutOfRangeError),
        ("age", 2**62, ValueOutOfRangeError),
    ],
)
def test_errors_are_the_reference_ones_in_every_tier(
    schema: DatasetSchema, group: str, column: str, bad: float, error: type[DataError]
) -> None:
    sql = f"SELECT {group}AVG({column}), VAR_POP({column}) FROM patients"
    sql += " GROUP BY sex" if group else ""
    data = {"sex": ["F", "M", "F"], column: [1, bad, 2]}
    with pytest.raises(error) as info:
        rows_of(schema, sql, data)
    assert type(info.value) is error
    assert f"'{column}'" in str(info.value)
    if math.isfinite(bad):
        assert repr(bad) not in str(info.value)


def test_range_check_is_kept_only_where_the_tier_does_not_imply_it(
    schema: DatasetSchema,
) -> None:
    def sql(query: str) -> str:
        return local_sql(bind_query(parse_query(query), schema), "node")

    assert "count_if" not in sql("SELECT VAR_POP(weight) FROM patients")  # |x| < 2**11 by cast
    assert "count_if" not in sql("SELECT VAR_POP(age) FROM patients")  # |x| < 2**26.5
    assert "count_if" in sql("SELECT VAR_POP(score) FROM patients")  # bounds +-100
    assert "count_if" in sql("SELECT AVG(age) FROM patients")  # reference tier


def test_tiers_must_fit_the_columns(schema: DatasetSchema) -> None:
    bound = bind_query(parse_query("SELECT AVG(weight), VAR_POP(age) FROM patients"), schema)
    con = duckdb.connect()
    con.register("node", arrow_table(schema, {"weight": [1.0], "age": [2]}))
    for tiers in [(Tier.SMALL, Tier.SMALL), (Tier.REFERENCE,), (Tier.NARROW, Tier.NARROW)]:
        with pytest.raises(ValueError, match="do not fit"):
            compute_local(bound, con, "node", tiers=tiers)
    assert "#f0_0" not in local_sql(bound, "node", (Tier.REFERENCE, Tier.REFERENCE))


@pytest.mark.parametrize(("categories", "limbs"), [(15, True), (16, False)])
def test_many_groups_use_the_bigint_product_plan(
    tried: list[tuple[Tier, ...]], categories: int, limbs: bool
) -> None:
    """Up to 16 slots (15 categories and NULL) DOUBLE limb products, beyond them BIGINT ones."""
    domain = tuple(f"c{k}" for k in range(categories))
    schema = DatasetSchema(
        "d",
        (Column("c", ColumnType.CATEGORICAL, domain=domain), Column("v", ColumnType.DOUBLE)),
    )
    sql = "SELECT c, AVG(v), VAR_SAMP(v) FROM d GROUP BY c"
    bound = bind_query(parse_query(sql), schema)
    assert ("#f0_0" in local_sql(bound, "node")) is limbs
    tried.clear()
    rng = np.random.default_rng(3)
    data = {
        "c": [*rng.choice(domain, 300).tolist(), None],
        "v": [*rng.normal(50.0, 10.0, 300).tolist(), -1447.5],
    }
    fast, reference = vectors(schema, sql, data, tried)
    assert np.array_equal(fast, reference)
    assert tried == [(Tier.NARROW,)]
    tried.clear()
    fast, reference = vectors(schema, sql, {"c": ["c1", "c2"], "v": [1500.0, 0.25]}, tried)
    assert np.array_equal(fast, reference)
    assert tried == ([(Tier.NARROW,)] if limbs else [(Tier.NARROW,), (Tier.REFERENCE,)])
