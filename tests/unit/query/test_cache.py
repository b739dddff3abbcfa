"""bind_sql / parse_sql: memoised, but the same answers and errors as the uncached path."""

from __future__ import annotations

import dataclasses

import pytest

from federation.errors import QuerySyntaxError, UnknownColumnError
from federation.query import bind_query, bind_sql, parse_query, parse_sql
from federation.schema import Column, ColumnType, DatasetSchema

SQL = "SELECT sex, COUNT(*), AVG(age), VAR_SAMP(weight) FROM patients GROUP BY sex"


def test_same_binding_as_the_uncached_path(schema: DatasetSchema) -> None:
    first = bind_sql(SQL, schema)
    assert first == bind_query(parse_query(SQL), schema)
    assert bind_sql(SQL, schema) is first  # memoised
    assert parse_sql(SQL) == parse_query(SQL)


def test_a_changed_schema_binds_afresh(schema: DatasetSchema) -> None:
    before = bind_sql(SQL, schema)
    wider = dataclasses.replace(
        schema,
        columns=tuple(
            Column("sex", ColumnType.CATEGORICAL, domain=("F", "M", "X")) if c.name == "sex" else c
            for c in schema.columns
        ),
    )
    after = bind_sql(SQL, wider)
    assert after.layout.slots == before.layout.slots + 1
    assert after.fingerprint != before.fingerprint


def test_errors_are_raised_every_time(schema: DatasetSchema) -> None:
    for _ in range(2):
        with pytest.raises(UnknownColumnError, match="nosuch"):
            bind_sql("SELECT AVG(nosuch) FROM patients", schema)
        with pytest.raises(QuerySyntaxError):
            parse_sql("SELECT FROM WHERE")
    with pytest.raises(QuerySyntaxError, match="SQL text"):
        bind_sql(42, schema)  # type: ignore[arg-type]
