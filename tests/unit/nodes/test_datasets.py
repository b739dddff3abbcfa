"""The node opens CSV, Parquet and DuckDB sources behind typed views and validates them."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from federation.errors import ConfigError, DataError
from federation.schema import Column, ColumnType, DatasetSchema
from nodes.config import DatasetConfig, SourceFormat
from nodes.datasets import LocalData

SCHEMA = DatasetSchema(
    "t",
    (
        Column("x", ColumnType.DOUBLE),
        Column("n", ColumnType.INTEGER),
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b")),
    ),
)
ROWS = "x,n,g,extra\n1.5,1,a,zzz\n2.5,2,b,yyy\n,3,,www\n"


def _csv(tmp_path: Path, text: str = ROWS) -> DatasetConfig:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return DatasetConfig(SCHEMA, path, SourceFormat.CSV)


def _rows(data: LocalData) -> list[tuple[object, ...]]:
    cur = data.cursor()
    try:
        return cur.execute(f"SELECT * FROM {data.relation('t')} ORDER BY n").fetchall()
    finally:
        cur.close()


def test_csv_source_exposes_only_declared_columns_with_declared_types(tmp_path: Path) -> None:
    data = LocalData((_csv(tmp_path),))
    assert _rows(data) == [(1.5, 1, "a"), (2.5, 2, "b"), (None, 3, None)]
    data.close()


def test_parquet_and_duckdb_sources(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE patients AS SELECT 1.5 AS x, 7 AS n, 'b' AS g")
    con.execute(f"COPY patients TO '{tmp_path / 't.parquet'}' (FORMAT parquet)")
    con.close()
    for cfg in (
        DatasetConfig(SCHEMA, tmp_path / "t.parquet", SourceFormat.PARQUET),
        DatasetConfig(SCHEMA, tmp_path / "db.duckdb", SourceFormat.DUCKDB, table="patients"),
    ):
        data = LocalData((cfg,))
        assert _rows(data) == [(1.5, 7, "b")]
        data.close()


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("x,n,g\n1.5,oops,a\n", DataError, "column 'n' holds value.*not valid integer"),
        ("x,n,g\n1.5,1,c\n", DataError, "column 'g' holds value.*outside its declared domain"),
        ("x,n,g\ninf,1,a\n", DataError, "column 'x' holds NaN or infinite"),
        ("x,g\n1.5,a\n", ConfigError, r"no column\(s\) \['n'\]"),
    ],
)
def test_nonconforming_sources_are_refused_without_revealing_values(
    tmp_path: Path, text: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        LocalData((_csv(tmp_path, text),))
    assert "oops" not in str(info.value)
    assert "'c'" not in str(info.value)


def test_missing_source_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalData((DatasetConfig(SCHEMA, tmp_path / "absent.csv", SourceFormat.CSV),))


def _types(data: LocalData) -> dict[str, str]:
    cur = data.cursor()
    try:
        rows = cur.execute(f"DESCRIBE SELECT * FROM {data.relation('t')}").fetchall()
    finally:
        cur.close()
    return {r[0]: r[1] for r in rows}


def test_in_memory_dataset_stores_categoricals_as_enums_of_their_domain(tmp_path: Path) -> None:
    data = LocalData((_csv(tmp_path),))
    assert _types(data) == {"x": "DOUBLE", "n": "BIGINT", "g": "ENUM('a', 'b')"}
    data.close()
    view = LocalData(
        (DatasetConfig(SCHEMA, tmp_path / "t.csv", SourceFormat.CSV, in_memory=False),)
    )
    assert _types(view)["g"] == "VARCHAR"
    view.close()


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_changed_source_is_served_as_it_now_is(tmp_path: Path, in_memory: bool) -> None:
    cfg = DatasetConfig(SCHEMA, tmp_path / "t.csv", SourceFormat.CSV, in_memory=in_memory)
    cfg.source.write_text(ROWS)
    data = LocalData((cfg,))
    data.refresh("t")  # unchanged: nothing to do
    assert _rows(data) == [(1.5, 1, "a"), (2.5, 2, "b"), (None, 3, None)]
    cfg.source.write_text("x,n,g\n9.25,4,b\n")
    data.refresh("t")
    assert _rows(data) == [(9.25, 4, "b")]
    data.close()


def test_a_source_that_stops_conforming_is_refused_until_fixed(tmp_path: Path) -> None:
    cfg = _csv(tmp_path)
    data = LocalData((cfg,))
    cfg.source.write_text("x,n,g\n1.5,1,zebra\n")
    with pytest.raises(DataError, match="outside its declared domain") as info:
        data.refresh("t")
    assert "zebra" not in str(info.value)
    with pytest.raises(DataError):  # still refused on the next task, never stale data
        data.refresh("t")
    cfg.source.write_text("x,n,g\n2.0,5,a\n")
    data.refresh("t")
    assert _rows(data) == [(2.0, 5, "a")]
    cfg.source.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        data.refresh("t")
    data.close()


def test_a_changed_duckdb_source_is_reloaded(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE patients AS SELECT 1.5 AS x, 7 AS n, 'b' AS g")
    con.close()
    data = LocalData((DatasetConfig(SCHEMA, db, SourceFormat.DUCKDB, table="patients"),))
    assert _rows(data) == [(1.5, 7, "b")]
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO patients VALUES (2.5, 8, 'a')")
    con.execute("CHECKPOINT")
    con.close()
    data.refresh("t")
    assert _rows(data) == [(1.5, 7, "b"), (2.5, 8, "a")]
    data.close()


def test_centers_are_the_double_columns_means_until_the_source_changes(tmp_path: Path) -> None:
    cfg = _csv(tmp_path)
    data = LocalData((cfg,))
    assert data.centers("t") == {"x": 2.0}  # the NULL is left out; integers have none
    cfg.source.write_text("x,n,g\n,4,b\n")
    data.refresh("t")
    assert data.centers("t") == {"x": None}  # no values: nothing to centre on
    cfg.source.write_text("x,n,g\n-3.5,4,b\n0.5,5,a\n")
    data.refresh("t")
    assert data.centers("t") == {"x": -1.5}
    assert data.centers("unknown") == {}
    data.close()
