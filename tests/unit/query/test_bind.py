"""bind_query: schema checks, output naming, vector layout, canonical SQL, fingerprint."""

from __future__ import annotations

import pytest

from federation.encoding import DOUBLE_LIMIT, INTEGER_LIMIT, LimbPlan
from federation.errors import (
    QueryError,
    QueryTypeError,
    SchemaMismatchError,
    UnknownColumnError,
    UnsupportedQueryError,
)
from federation.query import FieldKind, bind_query, parse_query
from federation.query.layout import MAX_GROUP_SLOTS
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind


def bind(sql: str, schema: DatasetSchema):  # type: ignore[no-untyped-def]
    return bind_query(parse_query(sql), schema)


def test_outputs_named_by_alias_or_canonical_name(schema: DatasetSchema) -> None:
    b = bind(
        "SELECT SEX, count(*), COUNT(note) AS notes, sum(AGE), sum(weight), stddev(weight) "
        "FROM patients GROUP BY sex",
        schema,
    )
    assert [o.name for o in b.outputs] == [
        "sex",
        "count(*)",
        "notes",
        "sum(age)",
        "sum(weight)",
        "stddev_samp(weight)",
    ]
    assert [o.kind for o in b.outputs] == [
        ColumnKind.GROUP,
        ColumnKind.INTEGER,
        ColumnKind.INTEGER,
        ColumnKind.INTEGER,
        ColumnKind.DOUBLE,
        ColumnKind.DOUBLE,
    ]
    assert b.dataset == "patients"


def test_layout_holds_only_needed_fields(schema: DatasetSchema) -> None:
    b = bind("SELECT COUNT(note), AVG(age), VAR_POP(weight) FROM patients", schema)
    kinds = [(f.kind, f.column) for f in b.layout.fields]
    assert kinds == [
        (FieldKind.ROWS, None),
        (FieldKind.COUNT, "note"),
        (FieldKind.COUNT, "age"),
        (FieldKind.SUM, "age"),
        (FieldKind.COUNT, "weight"),
        (FieldKind.SUM, "weight"),
        (FieldKind.SUM_SQUARES, "weight"),
    ]
    digits = {(f.kind, f.column): f.digits for f in b.layout.fields}
    # counts < 2**40 need one 48-bit digit; |S1| < 2**102 three; S2 of doubles < 2**227 five.
    assert digits[(FieldKind.ROWS, None)] == 1
    assert digits[(FieldKind.SUM, "age")] == 3
    assert digits[(FieldKind.SUM_SQUARES, "weight")] == 5
    assert b.layout.slots == 1
    assert b.vector_length == b.layout.slot_width == sum(digits.values())


def test_group_slots_cover_domain_and_null(schema: DatasetSchema) -> None:
    b = bind("SELECT sex, site, COUNT(*) FROM patients GROUP BY sex, site", schema)
    assert b.layout.slots == 3 * 4
    assert b.vector_length == 12
    labels = [b.layout.slot_labels(s) for s in range(b.layout.slots)]
    assert labels[0] == ("F", "north")
    assert labels[3] == ("F", None)
    assert labels[-1] == (None, None)
    for s, lab in enumerate(labels):
        pos = tuple(
            k.labels.index(v) if v is not None else len(k.labels)
            for k, v in zip(b.group_keys, lab, strict=True)
        )
        assert b.layout.slot_index(pos) == s


def test_bounds_choose_format_and_limbs(schema: DatasetSchema) -> None:
    b = bind("SELECT VAR_POP(score), VAR_POP(weight), VAR_POP(age) FROM patients", schema)
    fmts = {a.column.name: a.format for a in b.aggregations}
    assert fmts["score"] is not None
    assert (fmts["score"].lower, fmts["score"].upper) == (-100.0, 100.0)
    assert fmts["score"].limbs is LimbPlan.TWO
    assert fmts["weight"] is not None
    assert fmts["weight"].upper == DOUBLE_LIMIT
    assert fmts["weight"].limbs is LimbPlan.THREE
    assert fmts["age"] is not None
    assert fmts["age"].upper == INTEGER_LIMIT
    assert fmts["age"].limbs is LimbPlan.TWO
    digits = {(f.kind, f.column): f.digits for f in b.layout.fields}
    assert digits[(FieldKind.SUM_SQUARES, "score")] < digits[(FieldKind.SUM_SQUARES, "weight")]


def test_fingerprint_is_canonical(schema: DatasetSchema) -> None:
    a = bind("select sex, avg(AGE) from patients where age>1 group by sex", schema)
    b = bind("SELECT p.Sex, MEAN(p.age)\nFROM Patients AS p WHERE (AGE > 1) GROUP BY 1", schema)
    assert a.canonical_sql == b.canonical_sql
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    assert '"patients"' in a.canonical_sql
    assert '"age" > 1' in a.canonical_sql


@pytest.mark.parametrize(
    "other",
    [
        "SELECT sex, avg(age) AS m FROM patients WHERE age > 1 GROUP BY sex",
        "SELECT sex, avg(age) FROM patients WHERE age > 2 GROUP BY sex",
        "SELECT sex, sum(age) FROM patients WHERE age > 1 GROUP BY sex",
        "SELECT sex, avg(age) FROM patients WHERE age > 1 GROUP BY sex LIMIT 1",
    ],
)
def test_fingerprint_changes_with_the_query(schema: DatasetSchema, other: str) -> None:
    base = bind("SELECT sex, avg(age) FROM patients WHERE age > 1 GROUP BY sex", schema)
    assert bind(other, schema).fingerprint != base.fingerprint


def test_fingerprint_changes_with_the_schema(schema: DatasetSchema) -> None:
    sql = "SELECT sex, COUNT(*) FROM patients GROUP BY sex"
    cols = tuple(
        Column("sex", ColumnType.CATEGORICAL, domain=("F", "M", "X")) if c.name == "sex" else c
        for c in schema.columns
    )
    other = DatasetSchema("patients", cols)
    assert bind(sql, schema).fingerprint != bind(sql, other).fingerprint


BIND_ERRORS: list[tuple[str, type[QueryError] | type[SchemaMismatchError], str]] = [
    ("SELECT COUNT(*) FROM visits", SchemaMismatchError, "'visits'"),
    ("SELECT AVG(height) FROM patients", UnknownColumnError, "'height'"),
    ("SELECT COUNT(*) FROM patients WHERE height > 1", UnknownColumnError, "'height'"),
    ("SELECT height, COUNT(*) FROM patients GROUP BY height", UnknownColumnError, "height"),
    ("SELECT age, COUNT(*) FROM patients GROUP BY age", UnsupportedQueryError, "integer"),
    ("SELECT note, COUNT(*) FROM patients GROUP BY note", UnsupportedQueryError, "categorical"),
    ("SELECT SUM(sex) FROM patients", QueryTypeError, "numeric"),
    ("SELECT AVG(note) FROM patients", QueryTypeError, "'note' is text"),
    ("SELECT VAR_POP(sex) FROM patients", QueryTypeError, "COUNT(sex)"),
    ("SELECT COUNT(*) FROM patients WHERE age = 'x'", QueryTypeError, "numeric and string"),
    ("SELECT COUNT(*) FROM patients WHERE sex > 1", QueryTypeError, "same type"),
    ("SELECT COUNT(*) FROM patients WHERE age LIKE 'x'", QueryTypeError, "LIKE"),
    ("SELECT COUNT(*) FROM patients WHERE note + 1 > 0", QueryTypeError, "arithmetic"),
    ("SELECT COUNT(*) FROM patients WHERE age", QueryTypeError, "boolean"),
    ("SELECT COUNT(*) FROM patients WHERE NOT age", QueryTypeError, "NOT"),
    ("SELECT COUNT(*) FROM patients WHERE age IN (1, 'a')", QueryTypeError, "IN"),
    ("SELECT COUNT(*) FROM patients WHERE abs(note) > 1", QueryTypeError, "ABS"),
    ("SELECT COUNT(*) FROM patients WHERE lower(age) = 'a'", QueryTypeError, "LOWER"),
    ("SELECT COUNT(*), COUNT(*) FROM patients", UnsupportedQueryError, "alias"),
    ("SELECT COUNT(*) AS a, SUM(age) AS A FROM patients", UnsupportedQueryError, "alias"),
    ("SELECT COUNT(*) FROM patients ORDER BY 2", UnsupportedQueryError, "out of range"),
    ("SELECT COUNT(*) FROM patients ORDER BY age", UnsupportedQueryError, "output column"),
    ("SELECT COUNT(*) FROM patients ORDER BY AVG(age)", UnsupportedQueryError, "output"),
]


@pytest.mark.parametrize(("sql", "error", "needle"), BIND_ERRORS)
def test_bind_errors_say_why(
    schema: DatasetSchema, sql: str, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error) as info:
        bind(sql, schema)
    assert type(info.value) is error
    assert needle in str(info.value)


def test_order_by_resolves_alias_name_position_and_aggregate(schema: DatasetSchema) -> None:
    b = bind(
        "SELECT sex, COUNT(*) AS n, AVG(age) FROM patients GROUP BY sex "
        "ORDER BY avg(age) DESC, n, 1, sex",
        schema,
    )
    assert [o.index for o in b.order_by] == [2, 1, 0, 0]
    assert [o.descending for o in b.order_by] == [True, False, False, False]


def test_too_many_groups_is_refused() -> None:
    big = tuple(f"v{i}" for i in range(1100))
    s = DatasetSchema(
        "d",
        (
            Column("a", ColumnType.CATEGORICAL, domain=big),
            Column("b", ColumnType.CATEGORICAL, domain=big),
        ),
    )
    assert MAX_GROUP_SLOTS < 1101 * 1101
    with pytest.raises(UnsupportedQueryError, match="groups"):
        bind("SELECT a, b, COUNT(*) FROM d GROUP BY a, b", s)


def test_where_columns_are_canonicalised(schema: DatasetSchema) -> None:
    b = bind("SELECT COUNT(*) FROM patients WHERE AGE BETWEEN 1 AND 2 AND NOTE LIKE 'a%'", schema)
    assert '"age" BETWEEN 1 AND 2' in b.canonical_sql
    assert "\"note\" LIKE 'a%'" in b.canonical_sql
