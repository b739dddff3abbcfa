"""The coordinator's persistent state in an embedded SQLite database.

Holds the directory (nodes and the dataset schemas they registered) and the
jobs with their outcomes, so a restart loses nothing already recorded. Only
metadata and released aggregates are stored: never rows, never a node's own
contribution.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.audit import AuditTrail
from federation.errors import UnknownJobError
from federation.messages import ErrorInfo, JobRecord, JobStatus, Protocol, TaskStatus
from federation.policy import DEFAULT_POLICY, Policy
from federation.schema import DatasetSchema
from federation.table import ColumnKind, ResultTable, paused_gc

__all__ = ["NodeRow", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    agent_version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS node_datasets (
    node_name TEXT NOT NULL REFERENCES nodes(name),
    dataset TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    registered_at REAL NOT NULL,
    policy_json TEXT,
    PRIMARY KEY (node_name, dataset)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    sql TEXT NOT NULL,
    protocol TEXT NOT NULL,
    dataset TEXT NOT NULL,
    status TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    finished_at REAL,
    selected_nodes INTEGER NOT NULL DEFAULT 0,
    contributing_nodes INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    result_json TEXT,
    result_digest TEXT,
    result_blob BLOB
);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
"""

STORE_VERSION = "1"


@dataclass(frozen=True)
class NodeRow:
    """A node as recorded in the directory."""

    name: str
    first_seen: float
    last_seen: float
    datasets: tuple[DatasetSchema, ...]
    policies: tuple[tuple[str, Policy], ...] = ()
    """(dataset, policy) as the node declared them; absent: the default policy."""

    def policy(self, dataset: str) -> Policy:
        """The node's policy for ``dataset``."""
        return dict(self.policies).get(dataset, DEFAULT_POLICY)


def _table_to_blob(table: ResultTable) -> bytes:
    """A result as zlib-compressed columnar JSON, encoded one column at a time (so
    the memory taken beyond the table is bounded by one column's text)."""
    packer = zlib.compressobj(1)
    head = json.dumps({"columns": list(table.columns), "kinds": [k.value for k in table.kinds]})
    parts = [packer.compress(f'{{"format":2,"table":{head},"values":['.encode())]
    for i, values in enumerate(table.column_values()):
        text = json.dumps(list(values))
        parts.append(packer.compress(f"{',' if i else ''}{text}".encode()))
    parts.append(packer.compress(b"]}"))
    parts.append(packer.flush())
    return b"".join(parts)


def _table_from_blob(blob: bytes) -> ResultTable:
    with paused_gc():
        data = json.loads(zlib.decompress(blob))
    head = data["table"]
    names = tuple(head["columns"])
    values = data["values"]
    return ResultTable.from_columns(
        names,
        tuple(ColumnKind(k) for k in head["kinds"]),
        values,
    )


def _table_from_json(text: str) -> ResultTable:
    """A result recorded by an earlier version (row-wise JSON)."""
    data = json.loads(text)
    return ResultTable(
        columns=tuple(data["columns"]),
        kinds=tuple(ColumnKind(k) for k in data["kinds"]),
        rows=tuple(tuple(r) for r in data["rows"]),
    )


class Store:
    """Thread-safe access to the coordinator database (``:memory:`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.audit = AuditTrail(self.path)
        """Every registration and job step, in a signed Merkle log (``<path>.audit``)."""
        with self._lock:
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "result_blob" not in columns:  # a database created before columnar results
                self._db.execute("ALTER TABLE jobs ADD COLUMN result_blob BLOB")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(node_datasets)")}
            if "policy_json" not in columns:  # a database created before dataset policies
                self._db.execute("ALTER TABLE node_datasets ADD COLUMN policy_json TEXT")
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_version', ?)",
                (STORE_VERSION,),
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
        self.audit.close()

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self._lock:
            self._db.execute(sql, params)

    # --- directory ---------------------------------------------------------

    def record_registration(
        self,
        name: str,
        datasets: tuple[DatasetSchema, ...],
        agent_version: str,
        policies: tuple[tuple[str, Policy], ...] = (),
        *,
        audit_key: bytes = b"",
    ) -> None:
        """Upsert a node and replace the dataset schemas (and policies) it serves,
        atomically; the audit trail records them and the key of the node's receipts."""
        now = time.time()
        declared = dict(policies)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO nodes (name, first_seen, last_seen, agent_version) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "last_seen = excluded.last_seen, agent_version = excluded.agent_version",
                    (name, now, now, agent_version),
                )
                self._db.execute("DELETE FROM node_datasets WHERE node_name = ?", (name,))
                self._db.executemany(
                    "INSERT INTO node_datasets "
                    "(node_name, dataset, schema_json, fingerprint, registered_at, policy_json) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            name,
                            s.name,
                            s.to_json(),
                            s.fingerprint(),
                            now,
                            declared.get(s.name, DEFAULT_POLICY).to_json(),
                        )
                        for s in datasets
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.audit.record(
            "node_registered",
            node=name,
            agent_version=agent_version,
            audit_key=audit_key.hex(),
            datasets=[
                {
                    "name": d.name,
                    "schema_sha256": d.fingerprint(),
                    "policy": declared.get(d.name, DEFAULT_POLICY).to_json(),
                }
                for d in datasets
            ],
        )

    def forget_node(self, name: str, by: str) -> None:
        """Delete a node and the schemas it registered (its jobs stay on record);
        the audit trail records who did (nothing, when no such node was recorded)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM node_datasets WHERE node_name = ?", (name,))
                found = self._db.execute("DELETE FROM nodes WHERE name = ?", (name,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if found:
            self.audit.record("node_forgotten", node=name, by=by)

    def touch_node(self, name: str, when: float) -> None:
        """Record that a node was seen alive."""
        self._write("UPDATE nodes SET last_seen = ? WHERE name = ?", (when, name))

    def nodes(self) -> list[NodeRow]:
        """Every node ever registered, with its datasets."""
        with self._lock:
            nodes = self._db.execute(
                "SELECT name, first_seen, last_seen FROM nodes ORDER BY name"
            ).fetchall()
            ds = self._db.execute(
                "SELECT node_name, schema_json, policy_json FROM node_datasets "
                "ORDER BY node_name, dataset"
            ).fetchall()
        by_node: dict[str, list[DatasetSchema]] = {}
        policies: dict[str, list[tuple[str, Policy]]] = {}
        for node_name, schema_json, policy_json in ds:
            schema = DatasetSchema.from_json(schema_json)
            by_node.setdefault(node_name, []).append(schema)
            if policy_json is not None:
                policies.setdefault(node_name, []).append(
                    (schema.name, Policy.from_json(policy_json))
                )
        return [
            NodeRow(name, first, last, tuple(by_node.get(name, ())), tuple(policies.get(name, ())))
            for name, first, last in nodes
        ]

    # --- jobs ----------------------------------------------------------------

    def record_job_started(
        self,
        job_id: str,
        sql: str,
        protocol: Protocol,
        dataset: str,
        submitted_at: float,
        *,
        analyst: str | None = None,
        epsilon: float | None = None,
    ) -> None:
        """Record a new running job (``analyst``/``epsilon``: a DP query's)."""
        self._write(
            "INSERT INTO jobs (job_id, sql, protocol, dataset, status, submitted_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, sql, protocol.value, dataset, JobStatus.RUNNING.value, submitted_at),
        )
        self.audit.record(
            "query_submitted",
            job=job_id,
            sql=sql,
            protocol=protocol.value,
            analyst=analyst,
            epsilon=epsilon,
        )

    def record_job_selected(
        self,
        job_id: str,
        dataset: str,
        selected: int,
        *,
        node_names: tuple[str, ...] = (),
        computation: str = "",
        fingerprint: str = "",
    ) -> None:
        """Record the planned dataset, the nodes the job runs on and the exact
        computation (canonical SQL and its fingerprint) each node is asked for."""
        self._write(
            "UPDATE jobs SET dataset = ?, selected_nodes = ? WHERE job_id = ?",
            (dataset, selected, job_id),
        )
        self.audit.record(
            "job_planned",
            job=job_id,
            dataset=dataset,
            nodes=selected,
            node_names=list(node_names),
            computation=computation,
            fingerprint=fingerprint,
        )

    def record_task_status(self, status: TaskStatus, node: str, *, awaiting: bool) -> None:
        """Record a node's approval step; the job shows as awaiting approval while any
        node's task does (a finished job keeps its outcome)."""
        job_status = JobStatus.AWAITING_APPROVAL if awaiting else JobStatus.RUNNING
        self._write(
            "UPDATE jobs SET status = ? WHERE job_id = ? AND status IN (?, ?)",
            (
                job_status.value,
                status.job_id,
                JobStatus.RUNNING.value,
                JobStatus.AWAITING_APPROVAL.value,
            ),
        )
        self.audit.record(
            "task_approval",
            job=status.job_id,
            node=node,
            state=status.state.value,
            request=status.request_id,
        )

    def record_job_succeeded(
        self, job_id: str, table: ResultTable, contributing: int, finished_at: float
    ) -> None:
        """Record a released result."""
        blob = _table_to_blob(table)
        self._write(
            "UPDATE jobs SET status = ?, finished_at = ?, contributing_nodes = ?, "
            "result_blob = ? WHERE job_id = ?",
            (JobStatus.SUCCEEDED.value, finished_at, contributing, blob, job_id),
        )
        self.audit.record(
            "result_released",
            job=job_id,
            nodes=contributing,
            result_sha256=hashlib.sha256(blob).hexdigest(),
        )
        self.audit.seal()

    def record_job_released_encrypted(
        self, job_id: str, digest: str, contributing: int, finished_at: float
    ) -> None:
        """Record a homomorphic result released to the analyst (only its hash is kept)."""
        self._write(
            "UPDATE jobs SET status = ?, finished_at = ?, contributing_nodes = ?, "
            "result_digest = ? WHERE job_id = ?",
            (JobStatus.SUCCEEDED.value, finished_at, contributing, digest, job_id),
        )
        self.audit.record(
            "result_released", job=job_id, nodes=contributing, ciphertext_sha256=digest
        )
        self.audit.seal()

    def record_job_failed(self, job_id: str, error: ErrorInfo, finished_at: float) -> None:
        """Record a failure; nothing was released."""
        self._write(
            "UPDATE jobs SET status = ?, finished_at = ?, error_code = ?, error_message = ? "
            "WHERE job_id = ?",
            (JobStatus.FAILED.value, finished_at, error.code, error.message, job_id),
        )
        self.audit.record("job_failed", job=job_id, code=error.code, reason=error.message)
        self.audit.seal()

    def fail_interrupted_jobs(self, reason: str) -> int:
        """Mark jobs left running by a previous process as failed; returns how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error_code = ?, error_message = ? "
                "WHERE status IN (?, ?)",
                (
                    JobStatus.FAILED.value,
                    time.time(),
                    "protocol_error",
                    reason,
                    JobStatus.RUNNING.value,
                    JobStatus.AWAITING_APPROVAL.value,
                ),
            )
            return cur.rowcount

    def job(self, job_id: str) -> JobRecord:
        """A recorded job; UnknownJobError if there is none."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, sql, protocol, dataset, status, submitted_at, finished_at, "
                "selected_nodes, contributing_nodes, error_code, error_message, result_json, "
                "result_blob "
                "FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            raise UnknownJobError(f"no job with id {job_id!r} is recorded at this coordinator")
        return self._record(row)

    def jobs(self, limit: int = 100) -> list[JobRecord]:
        """The most recent jobs, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, sql, protocol, dataset, status, submitted_at, finished_at, "
                "selected_nodes, contributing_nodes, error_code, error_message, result_json, "
                "result_blob "
                "FROM jobs ORDER BY submitted_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._record(r) for r in rows]

    @staticmethod
    def _record(row: tuple[Any, ...]) -> JobRecord:
        (job_id, sql, protocol, dataset, status, submitted, finished, selected, contributing,
         error_code, error_message, result_json, result_blob) = row  # fmt: skip
        result = None
        if result_blob is not None:
            result = _table_from_blob(result_blob)
        elif result_json:
            result = _table_from_json(result_json)
        return JobRecord(
            job_id=job_id,
            sql=sql,
            protocol=Protocol(protocol),
            dataset=dataset,
            status=JobStatus(status),
            submitted_at=submitted,
            finished_at=finished,
            selected_nodes=selected,
            contributing_nodes=contributing,
            error=ErrorInfo(error_code, error_message or "") if error_code else None,
            result=result,
        )
