"""The node's data, opened in DuckDB behind typed views.

Each dataset becomes a view ``ds_<name>`` that reads its source (CSV or Parquet
file, or a table of a DuckDB database attached read-only) and casts every
declared column to its declared type. Rows never leave DuckDB; only
per-group aggregates are fetched, by the query layer.
"""

from __future__ import annotations

import logging
import threading

import duckdb

from federation.errors import ConfigError, DataError
from federation.policy import DEFAULT_POLICY, Policy
from federation.schema import ColumnType, DatasetSchema
from nodes.config import DatasetConfig, SourceFormat

__all__ = ["LocalData"]

log = logging.getLogger(__name__)

_SQL_TYPES = {
    ColumnType.INTEGER: "BIGINT",
    ColumnType.DOUBLE: "DOUBLE",
    ColumnType.CATEGORICAL: "VARCHAR",
    ColumnType.TEXT: "VARCHAR",
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class LocalData:
    """A DuckDB database holding one typed view per dataset."""

    def __init__(self, datasets: tuple[DatasetConfig, ...], *, threads: int = 1) -> None:
        self._con = duckdb.connect(":memory:", config={"threads": threads})
        self._lock = threading.Lock()
        self._datasets = {d.schema.name: d for d in datasets}
        for i, dataset in enumerate(datasets):
            self._open(dataset, i)

    @property
    def schemas(self) -> tuple[DatasetSchema, ...]:
        """The published schemas, in config order."""
        return tuple(d.schema for d in self._datasets.values())

    @property
    def policies(self) -> tuple[tuple[str, Policy], ...]:
        """(dataset name, policy) of every dataset served."""
        return tuple((name, d.policy) for name, d in self._datasets.items())

    def policy(self, name: str) -> Policy:
        """The policy of dataset ``name`` (the default policy if it is not served)."""
        d = self._datasets.get(name)
        return d.policy if d is not None else DEFAULT_POLICY

    def schema(self, name: str) -> DatasetSchema | None:
        """The schema of a served dataset, or None."""
        d = self._datasets.get(name)
        return d.schema if d else None

    @staticmethod
    def relation(name: str) -> str:
        """The quoted view name that holds dataset ``name``."""
        return _ident(f"ds_{name}")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one task (DuckDB cursors may run concurrently)."""
        with self._lock:
            return self._con.cursor()

    def close(self) -> None:
        """Close the database."""
        self._con.close()

    def _open(self, dataset: DatasetConfig, index: int) -> None:
        schema = dataset.schema
        if not dataset.source.exists():
            raise ConfigError(
                f"dataset {schema.name!r}: source file {str(dataset.source)!r} does not exist"
            )
        path = _literal(str(dataset.source))
        if dataset.format is SourceFormat.CSV:
            # all_varchar: the declared schema decides types, never the sniffer
            scan = f"read_csv({path}, header = true, all_varchar = true)"
        elif dataset.format is SourceFormat.PARQUET:
            scan = f"read_parquet({path})"
        else:
            alias = _ident(f"src_{index}")
            self._con.execute(f"ATTACH {path} AS {alias} (READ_ONLY)")
            scan = f"{alias}.{_ident(dataset.table or '')}"
        try:
            present = {
                row[0].lower(): row[0]
                for row in self._con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
            }
        except duckdb.Error as exc:
            raise ConfigError(
                f"dataset {schema.name!r}: cannot read {dataset.format.value} source "
                f"{str(dataset.source)!r} ({type(exc).__name__})"
            ) from None
        missing = [c.name for c in schema.columns if c.name.lower() not in present]
        if missing:
            raise ConfigError(
                f"dataset {schema.name!r}: the source has no column(s) {missing}; "
                f"it has {sorted(present.values())}"
            )
        select = ", ".join(
            f"CAST({_ident(present[c.name.lower()])} AS {_SQL_TYPES[c.type]}) AS {_ident(c.name)}"
            for c in schema.columns
        )
        self._con.execute(
            f"CREATE VIEW {self.relation(schema.name)} AS SELECT {select} FROM {scan}"
        )
        self._validate(dataset, scan, present)

    def _validate(self, dataset: DatasetConfig, scan: str, present: dict[str, str]) -> None:
        """Check every value converts to its declared type and lies in its domain.

        Messages name the column and the rule, never a value.
        """
        schema = dataset.schema
        checks: list[tuple[str, str]] = []
        for c in schema.columns:
            raw = _ident(present[c.name.lower()])
            sql_type = _SQL_TYPES[c.type]
            checks.append(
                (
                    f"count(*) FILTER (WHERE {raw} IS NOT NULL "
                    f"AND TRY_CAST({raw} AS {sql_type}) IS NULL)",
                    f"column {c.name!r} holds value(s) that are not valid {c.type.value} values",
                )
            )
            if c.type is ColumnType.CATEGORICAL:
                domain = ", ".join(_literal(v) for v in c.domain)
                checks.append(
                    (
                        f"count(*) FILTER (WHERE {raw} IS NOT NULL "
                        f"AND CAST({raw} AS VARCHAR) NOT IN ({domain}))",
                        f"column {c.name!r} holds value(s) outside its declared domain",
                    )
                )
            if c.type is ColumnType.DOUBLE:
                checks.append(
                    (
                        f"count(*) FILTER (WHERE NOT isfinite(TRY_CAST({raw} AS DOUBLE)))",
                        f"column {c.name!r} holds NaN or infinite value(s)",
                    )
                )
        sql = f"SELECT count(*), {', '.join(expr for expr, _ in checks)} FROM {scan}"
        try:
            counts = self._con.execute(sql).fetchone()
        except duckdb.Error as exc:
            raise DataError(
                f"dataset {schema.name!r}: reading the source failed ({type(exc).__name__})"
            ) from None
        if counts is None:  # pragma: no cover - an aggregate always returns a row
            return
        problems = [msg for (_, msg), bad in zip(checks, counts[1:], strict=True) if bad]
        if problems:
            raise DataError(f"dataset {schema.name!r}: " + "; ".join(problems))
        log.info(
            "dataset %s: %s source ready (%d columns)",
            schema.name,
            dataset.format.value,
            len(schema.columns),
        )
