"""The node's own audit log, and its watch over the coordinator's.

Every node keeps a signed Merkle log of what it did (:class:`~federation.audit.log.AuditLog`
in ``state_dir/audit.sqlite3``, key ``state_dir/audit.key``; in memory without a
state directory): each task it was given, each head of the coordinator's log it
accepted, and a *receipt* per finished task (the job, the dataset and the SHA-256 of
its source file, the policy's hash, the exact computation, the protocol, the epsilon
charged, the outcome, and the node's own log head), signed with the node's key. The
receipt goes to the coordinator, which appends the exact bytes to its log; the
coordinator's next tasks must prove it included.

Before a task touches anything, :meth:`NodeAudit.check` verifies the coordinator's
proof (:class:`~federation.audit.witness.LogWitness`): pinned key, consistency with
the last head this node accepted, its receipts included. A failure is a rewritten,
forked or rolled-back log, and the node stops serving (the agent's caller sees
:attr:`NodeAudit.failure`). The witness state is kept in the node's log database,
updated in the same transaction as the entries it goes with, so a restart keeps
watching from where it was. The node's log is written without a flush per append
(it survives a crash of the process; a power loss may drop its newest entries); its
heads are signed when the agent stops.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from federation.audit.log import AuditLog, load_signer
from federation.audit.witness import LogWitness, canonical_json, make_receipt
from federation.crypto.signing import Ed25519Signer
from federation.errors import AuditIntegrityError
from federation.messages import ErrorInfo, TaskAssignment
from federation.policy import Policy

__all__ = [
    "AUDIT_KEY_FILE",
    "AUDIT_LOG_FILE",
    "WITNESS_KEY",
    "NodeAudit",
    "describe_failure",
    "policy_hash",
]

log = logging.getLogger(__name__)

AUDIT_LOG_FILE = "audit.sqlite3"
AUDIT_KEY_FILE = "audit.key"
WITNESS_KEY = "coordinator_witness"
"""The meta key of the witness state in the node's log database."""


def policy_hash(policy: Policy) -> str:
    """SHA-256 (hex) of a policy's canonical JSON."""
    return hashlib.sha256(policy.to_json().encode()).hexdigest()


class NodeAudit:
    """A node's audit log and its witness of the coordinator's log."""

    def __init__(self, node: str, state_dir: Path | None) -> None:
        """Open (or create) the node's log in ``state_dir`` (in memory when ``None``)."""
        self.node = node
        self._lock = threading.Lock()
        if state_dir is None:
            self._signer = Ed25519Signer.generate()
            self.log = AuditLog(":memory:", self._signer, durable=False)
        else:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._signer = load_signer(state_dir / AUDIT_KEY_FILE)
            self.log = AuditLog(state_dir / AUDIT_LOG_FILE, self._signer, durable=False)
        saved = self.log.meta(WITNESS_KEY)
        self.witness = LogWitness.from_json(saved.decode()) if saved else LogWitness()
        self.failure: AuditIntegrityError | None = None
        """Set when the coordinator's log failed a check: the node stops serving."""

    @property
    def public_key(self) -> bytes:
        """The key that signs this node's receipts and log heads."""
        return self._signer.public_bytes

    def registration(self) -> tuple[bytes, int, tuple[bytes, ...]]:
        """(receipt key, size of the coordinator head last accepted, receipts still
        unproven) for the node's registration."""
        with self._lock:
            pending = []
            for leaf in self.witness.pending:
                found = self.log.find(bytes.fromhex(leaf))
                if found is not None:
                    pending.append(found[1])
            return self.public_key, self.witness.size, tuple(pending)

    def check(self, task: TaskAssignment) -> None:
        """Verify the coordinator's proof that came with ``task``, and record the task.

        Raises:
            AuditIntegrityError: The proof is missing or fails (:attr:`failure` is set).
        """
        with self._lock:
            if self.failure is not None:
                raise self.failure
            try:
                if task.audit is None:
                    raise AuditIntegrityError(
                        "the coordinator sent a task without a proof about its audit log"
                    )
                moved = self.witness.check(task.audit)
            except AuditIntegrityError as exc:
                self.failure = exc
                self._append(
                    {"event": "coordinator_log_rejected", "job": task.job_id, "reason": exc.message}
                )
                raise
            events = []
            if moved:
                head = task.audit.head
                events.append(
                    {
                        "event": "coordinator_head",
                        "size": head.size,
                        "root": head.root.hex(),
                        "timestamp_ms": head.timestamp_ms,
                        "key": task.audit.public_key.hex(),
                    }
                )
            dp = task.dp
            events.append(
                {
                    "event": "task_received",
                    "job": task.job_id,
                    "dataset": task.dataset,
                    "sql": task.sql,
                    "computation": task.fingerprint,
                    "protocol": task.protocol.value,
                    "analyst": dp.analyst if dp is not None else None,
                    "epsilon": dp.epsilon if dp is not None else None,
                }
            )
            self._append(*events)

    def receipt(
        self,
        task: TaskAssignment,
        *,
        dataset_version: str,
        policy: Policy,
        charged: bool,
        error: ErrorInfo | None,
    ) -> bytes:
        """Record how ``task`` ended and return the signed receipt for the coordinator."""
        with self._lock:
            fields: dict[str, Any] = {
                "node": self.node,
                "job": task.job_id,
                "dataset": task.dataset,
                "dataset_sha256": dataset_version,
                "policy_sha256": policy_hash(policy),
                "computation": task.fingerprint,
                "protocol": task.protocol.value,
                "epsilon": task.dp.epsilon if task.dp is not None and charged else None,
                "outcome": "contributed" if error is None else error.code,
                "reason": None if error is None else error.message,
                "at": round(time.time(), 3),
                "node_log_size": self.log.size,
                "node_log_root": self.log.root().hex(),
            }
            entry = make_receipt(self._signer, fields)
            self.witness.sent(entry, int(time.time() * 1000))
            self.log.append_many([entry], {WITNESS_KEY: self.witness.to_json().encode()})
            return entry

    def _append(self, *events: dict[str, Any]) -> None:
        """Append events (stamped now) with the witness state, in one transaction."""
        at = round(time.time(), 3)
        self.log.append_many(
            [canonical_json({**e, "at": at}) for e in events],
            {WITNESS_KEY: self.witness.to_json().encode()},
        )

    def close(self) -> None:
        """Sign a head over everything recorded, then close the log."""
        if self.log.size:
            self.log.current_head()
        self.log.close()


def describe_failure(node: str, error: AuditIntegrityError) -> str:
    """The loud message a node prints when it stops serving."""
    return (
        f"node {node} STOPS SERVING: the coordinator's audit log failed verification: "
        f"{error.message}. Keep its state directory ({AUDIT_LOG_FILE}) for the investigation; "
        "restart only after the coordinator's log is explained."
    )
