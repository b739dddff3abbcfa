"""Schemas validate their declarations and fingerprint canonically."""

from __future__ import annotations

import pytest

from federation.errors import ConfigError, UnknownColumnError
from federation.schema import Classification, Column, ColumnType, DatasetSchema


def test_lookup_is_case_insensitive_and_unknown_columns_name_the_alternatives() -> None:
    s = DatasetSchema("t", (Column("Age", ColumnType.INTEGER),))
    assert s.column("age").name == "Age"
    with pytest.raises(UnknownColumnError, match=r"no column 'weight'.*\['Age'\]"):
        s.column("weight")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "1x", "type": ColumnType.INTEGER}, "plain identifier"),
        ({"name": "x; drop", "type": ColumnType.INTEGER}, "plain identifier"),
        ({"name": "c", "type": ColumnType.CATEGORICAL}, "needs a declared domain"),
        ({"name": "c", "type": ColumnType.CATEGORICAL, "domain": ("a", "a")}, "repeats"),
        ({"name": "c", "type": ColumnType.INTEGER, "domain": ("a",)}, "only categorical"),
        ({"name": "c", "type": ColumnType.TEXT, "bounds": (0.0, 1.0)}, "numeric columns only"),
        ({"name": "c", "type": ColumnType.DOUBLE, "bounds": (2.0, 1.0)}, "lower <= upper"),
        ({"name": "c", "type": ColumnType.DOUBLE, "bounds": (0.0, float("inf"))}, "finite"),
    ],
)
def test_bad_columns_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Column(**kwargs)  # type: ignore[arg-type]


def test_duplicate_columns_and_empty_schemas_are_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        DatasetSchema("t", (Column("a", ColumnType.INTEGER), Column("A", ColumnType.DOUBLE)))
    with pytest.raises(ConfigError, match="no columns"):
        DatasetSchema("t", ())


def test_from_dict_rejects_unknown_keys_types_and_levels() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        Column.from_dict({"name": "a", "type": "integer", "colour": "red"})
    with pytest.raises(ConfigError, match="type must be one of"):
        Column.from_dict({"name": "a", "type": "decimal"})
    with pytest.raises(ConfigError, match="classification must be one of"):
        Column.from_dict({"name": "a", "type": "integer", "classification": "secret"})


def test_json_roundtrip_and_fingerprint_are_canonical() -> None:
    s = DatasetSchema(
        "t",
        (
            Column("a", ColumnType.INTEGER, bounds=(0.0, 9.0)),
            Column(
                "g", ColumnType.CATEGORICAL, domain=("x", "y"), classification=Classification.PUBLIC
            ),
        ),
    )
    back = DatasetSchema.from_json(s.to_json())
    assert back == s
    assert back.fingerprint() == s.fingerprint()
    other = DatasetSchema(
        "t",
        (
            Column("a", ColumnType.INTEGER, bounds=(0.0, 9.0)),
            Column("g", ColumnType.CATEGORICAL, domain=("y", "x")),
        ),
    )
    assert other.fingerprint() != s.fingerprint()
    with pytest.raises(ConfigError, match="not valid JSON"):
        DatasetSchema.from_json("{")
