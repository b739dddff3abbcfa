"""The node's data, in DuckDB under typed relations.

Each dataset's source (CSV or Parquet file, or a table of a DuckDB database
attached read-only) is validated against its declared schema, then becomes the
relation ``ds_<name>`` with every declared column in its declared type. By default
that relation is an in-memory table, loaded once, with categorical columns as ENUMs
of their declared domains (grouping on them takes DuckDB's perfect-hash path), and
reloaded when the source file changes; with ``in_memory = false`` it is a view that
reads the source on every query. Rows never leave DuckDB; only per-group aggregates
are fetched, by the query layer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar, cast

import duckdb

from federation.errors import ConfigError, DataError
from federation.policy import DEFAULT_POLICY, Policy
from federation.schema import Column, ColumnType, DatasetSchema
from nodes.config import DatasetConfig, SourceFormat

__all__ = ["LocalData"]

_T = TypeVar("_T")

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
    """A DuckDB database holding one typed relation per dataset."""

    def __init__(self, datasets: tuple[DatasetConfig, ...], *, threads: int = 1) -> None:
        self._con = duckdb.connect(":memory:", config={"threads": threads})
        self.threads = threads
        """The DuckDB threads every query runs with."""
        self._lock = threading.Lock()
        self._datasets = {d.schema.name: d for d in datasets}
        self._index = {d.schema.name: i for i, d in enumerate(datasets)}
        self._versions: dict[str, tuple[int, int]] = {}
        self._derived: dict[tuple[str, str], tuple[tuple[int, int], object]] = {}
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

    def refresh(self, name: str) -> None:
        """Reload dataset ``name`` if its source file changed since it was loaded.

        Only in-memory datasets need this (a view reads the source on every query).
        A task calls it before computing, so answers always reflect the file as it is.

        Raises:
            DataError, ConfigError: the changed source no longer conforms to its
                declared schema (the dataset is refused until it does again).
        """
        dataset = self._datasets.get(name)
        if dataset is None or not dataset.in_memory:
            return
        if _version(dataset) == self._versions.get(name):
            return
        with self._lock:
            if _version(dataset) != self._versions.get(name):
                log.info("dataset %s: the source changed; reloading it", name)
                self._open(dataset, self._index[name])

    def version(self, name: str) -> str:
        """The SHA-256 of dataset ``name``'s source file as it is now (hex; cached until
        the file changes), for the audit trail: which data a task read."""
        dataset = self._datasets.get(name)
        if dataset is None:
            return ""

        def digest() -> str:
            sha = hashlib.sha256()
            try:
                with dataset.source.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        sha.update(chunk)
            except OSError:
                return ""
            return sha.hexdigest()

        return self._per_source(name, "sha256", digest)

    def row_count(self, name: str) -> int:
        """The rows of dataset ``name`` as served now (cached until its source changes)."""

        def count() -> int:
            cursor = self.cursor()
            try:
                row = cursor.execute(f"SELECT COUNT(*) FROM {self.relation(name)}").fetchone()
            finally:
                cursor.close()
            return int(row[0]) if row is not None else 0

        return self._per_source(name, "rows", count)

    def centers(self, name: str) -> dict[str, float | None]:
        """The mean of each double column of dataset ``name`` as served now (None for a
        column without values; cached until its source changes): where the CENTERED
        tier centres its squares (:mod:`federation.query.centered`)."""
        dataset = self._datasets.get(name)
        schema = dataset.schema.columns if dataset is not None else ()
        columns = [c.name for c in schema if c.type is ColumnType.DOUBLE]

        def means() -> dict[str, float | None]:
            if not columns:
                return {}
            select = ", ".join(f"avg({_ident(c)})" for c in columns)
            cursor = self.cursor()
            try:
                row = cursor.execute(f"SELECT {select} FROM {self.relation(name)}").fetchone()
            finally:
                cursor.close()
            return dict(zip(columns, row or (None,) * len(columns), strict=True))

        return self._per_source(name, "centers", means)

    def _per_source(self, name: str, what: str, compute: Callable[[], _T]) -> _T:
        """``compute()``, cached per dataset until its source file changes."""
        dataset = self._datasets.get(name)
        stamp = _version(dataset) if dataset is not None else (-1, -1)
        cached = self._derived.get((name, what))
        if cached is not None and cached[0] == stamp:
            return cast(_T, cached[1])
        value = compute()
        self._derived[(name, what)] = (stamp, value)
        return value

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
        version = _version(dataset)
        path = _literal(str(dataset.source))
        alias = _ident(f"src_{index}")
        if dataset.format is SourceFormat.CSV:
            # all_varchar: the declared schema decides types, never the sniffer
            scan = f"read_csv({path}, header = true, all_varchar = true)"
        elif dataset.format is SourceFormat.PARQUET:
            scan = f"read_parquet({path})"
        else:
            self._con.execute(f"DETACH DATABASE IF EXISTS {alias}")
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
        self._validate(dataset, scan, present)
        select = ", ".join(
            f"CAST({_ident(present[c.name.lower()])} AS {_sql_type(c, dataset.in_memory)}) "
            f"AS {_ident(c.name)}"
            for c in schema.columns
        )
        kind = "TABLE" if dataset.in_memory else "VIEW"
        self._con.execute(
            f"CREATE OR REPLACE {kind} {self.relation(schema.name)} AS SELECT {select} FROM {scan}"
        )
        if dataset.in_memory and dataset.format is SourceFormat.DUCKDB:
            self._con.execute(f"DETACH DATABASE {alias}")
        self._versions[schema.name] = version

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
            "dataset %s: %s source ready (%d columns, %s)",
            schema.name,
            dataset.format.value,
            len(schema.columns),
            "loaded into memory" if dataset.in_memory else "read on every query",
        )


def _sql_type(column: Column, in_memory: bool) -> str:
    """The DuckDB type a column is stored as: an ENUM of the declared domain for a
    categorical column in memory (validated against it first), else its plain type."""
    if column.type is ColumnType.CATEGORICAL and in_memory:
        return "ENUM(" + ", ".join(_literal(v) for v in column.domain) + ")"
    return _SQL_TYPES[column.type]


def _version(dataset: DatasetConfig) -> tuple[int, int]:
    """What tells a changed source file: its modification time and size."""
    try:
        st = os.stat(dataset.source)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
