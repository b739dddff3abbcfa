"""Manual approvals at the node: tasks that wait for a person at the data holder.

A dataset whose policy says ``approval = "manual"`` makes every task that passes the
policy checks wait here before the node charges any budget or reads a row. The
requests live in one SQLite file in the node's state directory, so the node agent
and its operator's commands (``federation node approvals``, ``approve ID``,
``deny ID --reason``; separate processes, no network port) share them. A decision is
one guarded ``UPDATE ... WHERE status = 'pending'``: of two operators deciding at
once, one wins and the other is told; a request past its deadline can no longer be
approved. Every request and decision stays in the file: the node's record of who
approved what, and when.

>>> import tempfile, pathlib
>>> book = ApprovalBook(pathlib.Path(tempfile.mkdtemp()) / "approvals.sqlite3")
>>> r = book.request(job_id="j1", dataset="patients", analyst="ana", protocol="secagg",
...                  sql="SELECT COUNT(*) FROM patients", computation="count(*)",
...                  epsilon=0.0, timeout=60.0)
>>> [p.request_id for p in book.pending()] == [r.request_id]
True
>>> book.approve(r.request_id, by="ops").status
<ApprovalStatus.APPROVED: 'approved'>
"""

from __future__ import annotations

import contextlib
import enum
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from federation.errors import (
    ApprovalDeniedError,
    ApprovalExpiredError,
    ConfigError,
    FederationError,
)

__all__ = ["APPROVALS_FILE", "ApprovalBook", "ApprovalRequest", "ApprovalStatus"]

APPROVALS_FILE = "approvals.sqlite3"
"""The approval book's file name inside the node's state directory."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    dataset TEXT NOT NULL,
    analyst TEXT NOT NULL,
    protocol TEXT NOT NULL,
    sql TEXT NOT NULL,
    computation TEXT NOT NULL,
    epsilon REAL NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    decided_at REAL,
    decided_by TEXT,
    reason TEXT
)
"""
_COLUMNS = (
    "request_id, job_id, dataset, analyst, protocol, sql, computation, epsilon, "
    "requested_at, expires_at, status, decided_at, decided_by, reason"
)


class ApprovalStatus(enum.Enum):
    """Where an approval request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ApprovalRequest:
    """One task waiting for (or decided by) the node's operator.

    ``sql`` is the analyst's query as sent; ``computation`` is the exact computation
    the node derived from it and its own schema (what would run, and what the
    fingerprint checked), so the operator approves what runs, not what was claimed.
    """

    request_id: str
    job_id: str
    dataset: str
    analyst: str
    protocol: str
    sql: str
    computation: str
    epsilon: float
    requested_at: float
    expires_at: float
    status: ApprovalStatus
    decided_at: float | None = None
    decided_by: str | None = None
    reason: str | None = None


class ApprovalBook:
    """The node's persistent approval requests (one per node state directory)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(self._connect()) as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the approval book {str(self.path)!r} ({type(exc).__name__})"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)

    # --- the node agent -----------------------------------------------------------

    def request(
        self,
        *,
        job_id: str,
        dataset: str,
        analyst: str,
        protocol: str,
        sql: str,
        computation: str,
        epsilon: float,
        timeout: float,
    ) -> ApprovalRequest:
        """Open a request for ``job_id`` (or return the one already open for it: a task
        delivered again for the same job waits on the same request)."""
        now = self._clock()
        request_id = secrets.token_hex(4)
        with self._lock, contextlib.closing(self._connect()) as con:
            con.execute(
                f"INSERT INTO requests ({_COLUMNS}) "  # noqa: S608 - fixed column list
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL) "
                "ON CONFLICT (job_id) DO NOTHING",
                (
                    request_id,
                    job_id,
                    dataset,
                    analyst,
                    protocol,
                    sql,
                    computation,
                    float(epsilon),
                    now,
                    now + timeout,
                    ApprovalStatus.PENDING.value,
                ),
            )
            row = con.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE job_id = ?",  # noqa: S608
                (job_id,),
            ).fetchone()
        return _request(row)

    def wait(
        self,
        request_id: str,
        *,
        cancelled: threading.Event | None = None,
        poll: float = 0.2,
    ) -> ApprovalRequest:
        """Block until the request is approved; returns it approved.

        Raises:
            ApprovalDeniedError: the operator denied it (the message has the reason).
            ApprovalExpiredError: it expired unanswered (it is then marked expired).
            FederationError: ``cancelled`` was set (the job ended elsewhere).
        """
        while True:
            current = self._expire_if_due(request_id)
            if current.status is ApprovalStatus.APPROVED:
                return current
            if current.status is ApprovalStatus.DENIED:
                raise ApprovalDeniedError(
                    f"the data holder denied the task on dataset {current.dataset!r} "
                    f"(request {current.request_id}): {current.reason or 'no reason given'}"
                )
            if current.status is ApprovalStatus.EXPIRED:
                raise ApprovalExpiredError(
                    f"the task on dataset {current.dataset!r} waited for the data holder's "
                    f"approval (request {current.request_id}) and expired unanswered after "
                    f"{current.expires_at - current.requested_at:.0f} s"
                )
            delay = min(poll, max(current.expires_at - self._clock(), 0.0) + 0.001)
            if cancelled is not None:
                if cancelled.wait(delay):
                    raise FederationError("the job ended while its task awaited approval")
            else:
                time.sleep(delay)

    # --- the operator ---------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalRequest:
        """One request, by id.

        Raises:
            ConfigError: no request has that id.
        """
        with contextlib.closing(self._connect()) as con:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE request_id = ?",  # noqa: S608
                (request_id,),
            ).fetchone()
        if row is None:
            raise ConfigError(f"no approval request has id {request_id!r}")
        return _request(row)

    def pending(self) -> list[ApprovalRequest]:
        """Requests still open, oldest first (expired ones are marked so first)."""
        self._expire_due()
        return self.requests(ApprovalStatus.PENDING)

    def requests(self, status: ApprovalStatus | None = None) -> list[ApprovalRequest]:
        """Every request (or those with ``status``), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM requests"  # noqa: S608
        args: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status.value,)
        with contextlib.closing(self._connect()) as con:
            rows = con.execute(sql + " ORDER BY requested_at, request_id", args).fetchall()
        return [_request(r) for r in rows]

    def approve(self, request_id: str, *, by: str = "") -> ApprovalRequest:
        """Approve a pending request.

        Raises:
            ConfigError: unknown id, or the request is no longer pending (already
                decided, or expired).
        """
        return self._decide(request_id, ApprovalStatus.APPROVED, by=by, reason=None)

    def deny(self, request_id: str, *, reason: str, by: str = "") -> ApprovalRequest:
        """Deny a pending request; ``reason`` reaches the analyst.

        Raises:
            ConfigError: no reason, unknown id, or the request is no longer pending.
        """
        if not reason.strip():
            raise ConfigError("a denial needs a reason (--reason), which the analyst sees")
        return self._decide(request_id, ApprovalStatus.DENIED, by=by, reason=reason.strip())

    def _decide(
        self, request_id: str, status: ApprovalStatus, *, by: str, reason: str | None
    ) -> ApprovalRequest:
        self._expire_due()
        now = self._clock()
        with contextlib.closing(self._connect()) as con:
            changed = con.execute(
                "UPDATE requests SET status = ?, decided_at = ?, decided_by = ?, reason = ? "
                "WHERE request_id = ? AND status = ? AND expires_at > ?",
                (status.value, now, by, reason, request_id, ApprovalStatus.PENDING.value, now),
            ).rowcount
        current = self.get(request_id)
        if not changed:
            raise ConfigError(
                f"approval request {request_id} is {current.status.value}, not pending; "
                "nothing changed"
            )
        return current

    def _expire_due(self) -> None:
        with contextlib.closing(self._connect()) as con:
            con.execute(
                "UPDATE requests SET status = ?, decided_at = expires_at "
                "WHERE status = ? AND expires_at <= ?",
                (ApprovalStatus.EXPIRED.value, ApprovalStatus.PENDING.value, self._clock()),
            )

    def _expire_if_due(self, request_id: str) -> ApprovalRequest:
        current = self.get(request_id)
        if current.status is ApprovalStatus.PENDING and current.expires_at <= self._clock():
            self._expire_due()
            current = self.get(request_id)
        return current


def _request(row: tuple[object, ...] | None) -> ApprovalRequest:
    if row is None:  # pragma: no cover - the caller just inserted or looked it up
        raise ConfigError("the approval request vanished from the book")
    (rid, job, dataset, analyst, protocol, sql, comp, eps, at, exp, status, dat, dby, why) = row
    return ApprovalRequest(
        request_id=str(rid),
        job_id=str(job),
        dataset=str(dataset),
        analyst=str(analyst),
        protocol=str(protocol),
        sql=str(sql),
        computation=str(comp),
        epsilon=float(eps),  # type: ignore[arg-type]
        requested_at=float(at),  # type: ignore[arg-type]
        expires_at=float(exp),  # type: ignore[arg-type]
        status=ApprovalStatus(status),
        decided_at=None if dat is None else float(dat),  # type: ignore[arg-type]
        decided_by=None if dby is None else str(dby),
        reason=None if why is None else str(why),
    )
