"""The coordinator's SQLite state survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.store import Store
from federation.errors import UnknownJobError
from federation.messages import ErrorInfo, JobStatus, Protocol
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind, ResultTable

SCHEMA = DatasetSchema("t", (Column("x", ColumnType.DOUBLE),))


def test_directory_and_jobs_persist_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(db)
    store.record_registration("node-a", (SCHEMA,), "v1")
    store.record_job_started("j1", "SELECT COUNT(*) FROM t", Protocol.SECAGG, "", 1.0)
    store.record_job_selected("j1", "t", 3)
    table = ResultTable(("n", "big"), (ColumnKind.INTEGER, ColumnKind.INTEGER), ((3, 2**80),))
    store.record_job_succeeded("j1", table, 3, 2.0)
    store.record_job_started("j2", "SELECT", Protocol.SECAGG, "", 3.0)
    store.record_job_failed("j2", ErrorInfo("sql_syntax", "bad"), 4.0)
    store.record_job_started("j3", "SELECT COUNT(*) FROM t", Protocol.SECAGG, "t", 5.0)
    store.close()

    again = Store(db)
    assert [n.name for n in again.nodes()] == ["node-a"]
    assert again.nodes()[0].datasets == (SCHEMA,)
    j1 = again.job("j1")
    assert j1.status is JobStatus.SUCCEEDED
    assert j1.result == table
    assert (j1.selected_nodes, j1.contributing_nodes, j1.dataset) == (3, 3, "t")
    assert again.job("j2").error == ErrorInfo("sql_syntax", "bad")
    # a job left running by a crash is failed, not resumed or silently lost
    assert again.fail_interrupted_jobs("restarted") == 1
    j3 = again.job("j3")
    assert j3.status is JobStatus.FAILED
    assert j3.error is not None
    assert "restarted" in j3.error.message
    assert [j.job_id for j in again.jobs()] == ["j3", "j2", "j1"]
    with pytest.raises(UnknownJobError, match="nope"):
        again.job("nope")
    again.close()


def test_reregistration_replaces_a_nodes_datasets(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.record_registration("n", (SCHEMA,), "v1")
    other = DatasetSchema("u", (Column("y", ColumnType.INTEGER),))
    store.record_registration("n", (other,), "v2")
    assert store.nodes()[0].datasets == (other,)
    store.close()


def test_large_results_are_stored_compactly_and_exactly(tmp_path: Path) -> None:
    n = 200_000
    table = ResultTable.from_columns(
        ("g", "n", "m"),
        (ColumnKind.GROUP, ColumnKind.INTEGER, ColumnKind.DOUBLE),
        [
            [f"v{i % 400}" for i in range(n)],
            [i if i % 7 else None for i in range(n)],
            [i / 3 if i % 2 else None for i in range(n)],
        ],
    )
    store = Store(tmp_path / "state.db")
    store.record_job_started("j", "SELECT", Protocol.SECAGG, "t", 1.0)
    store.record_job_succeeded("j", table, 3, 2.0)
    assert store.job("j").result == table
    size = (tmp_path / "state.db").stat().st_size + (tmp_path / "state.db-wal").stat().st_size
    assert size < 6 * 2**20  # compressed, not one JSON list per row
    store.close()


def test_results_recorded_as_row_json_by_an_earlier_version_still_load(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, sql TEXT NOT NULL, protocol TEXT NOT NULL, "
        "dataset TEXT NOT NULL, status TEXT NOT NULL, submitted_at REAL NOT NULL, "
        "finished_at REAL, selected_nodes INTEGER NOT NULL DEFAULT 0, "
        "contributing_nodes INTEGER NOT NULL DEFAULT 0, error_code TEXT, error_message TEXT, "
        "result_json TEXT, result_digest TEXT);"
        "INSERT INTO jobs VALUES ('j', 'SELECT', 'secagg', 't', 'succeeded', 1, 2, 3, 3, NULL, "
        'NULL, \'{"columns": ["n"], "kinds": ["integer"], "rows": [[5]]}\', NULL);'
    )
    old.commit()
    old.close()
    store = Store(db)
    assert store.job("j").result == ResultTable(("n",), (ColumnKind.INTEGER,), ((5,),))
    store.close()
