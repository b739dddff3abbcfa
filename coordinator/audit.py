"""The coordinator's audit trail: every registration and job step, in a signed Merkle log.

Entries are canonical JSON (sorted keys, no spaces, UTF-8): the exact bytes hashed
into the log (:mod:`federation.audit`). They name who, what and when, never a data
value: SQL text, dataset and node names, protocol, error codes, and the SHA-256 of
what was released. A signed tree head is added whenever a job ends, so an auditor
holding the log's public key can check, offline, that nothing recorded was changed
(``federation audit verify --log FILE``).

Nodes append their own signed receipts (:mod:`federation.audit.witness`) through
:meth:`AuditTrail.accept_receipt`; :meth:`AuditTrail.prove` gives each task its proof:
the newest head (signed on demand), consistency with the node's last accepted head,
and inclusion of the node's receipts, so that every node checks this log on every task.

The signing key lives next to the coordinator's database (``<database>.audit-key``,
mode 0600); the log in ``<database>.audit``. A coordinator on ``:memory:`` keeps
both in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.audit.heads import SignedTreeHead
from federation.audit.log import AuditLog, load_signer
from federation.audit.merkle import leaf_hash
from federation.audit.witness import HeadProof, InclusionProof, verify_receipt
from federation.crypto.signing import Ed25519Signer

__all__ = ["AuditTrail"]

log = logging.getLogger(__name__)


class AuditTrail:
    """Appends coordinator events to a signed, append-only log."""

    def __init__(self, database: str | Path) -> None:
        """Open the trail that belongs to the coordinator database ``database``."""
        self._head_lock = threading.Lock()
        self._head: SignedTreeHead | None = None
        if str(database) == ":memory:":
            self.log = AuditLog(":memory:", Ed25519Signer.generate())
        else:
            base = Path(database)
            self.log = AuditLog(f"{base}.audit", load_signer(Path(f"{base}.audit-key")))

    @property
    def public_key(self) -> bytes:
        """The key an auditor checks the signed heads with."""
        return self.log.public_key

    def record(self, event: str, **fields: Any) -> None:
        """Append one event (failures are logged: auditing never stops a job)."""
        entry = {"event": event, "at": round(time.time(), 3), **fields}
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        try:
            self.log.append(data)
        except Exception:  # pragma: no cover - disk full and the like
            log.exception("could not append the %s event to the audit log", event)

    def accept_receipt(self, node: str, key: bytes, entry: bytes) -> tuple[bytes, int]:
        """Append a node's signed receipt (once: a receipt sent again is found, not
        duplicated); returns its leaf hash and index.

        Raises:
            AuditIntegrityError: Not a valid receipt of ``node`` signed with ``key``.
        """
        verify_receipt(entry, node, key)
        leaf = leaf_hash(entry)
        with self._head_lock:
            found = self.log.find(leaf)
            index = found[0] if found is not None else self.log.append(entry)
        return leaf, index

    def prove(self, from_size: int, receipts: Mapping[bytes, int]) -> HeadProof:
        """The newest signed head (signed now if entries were added since the last),
        consistent with a node's ``from_size``, with inclusion proofs for those of the
        node's ``receipts`` (leaf hash -> index) that the head covers."""
        with self._head_lock:
            head = self._head
            if head is None or head.size != self.log.size:
                head = self._head = self.log.sign_head()
        try:
            consistency = tuple(self.log.consistency_proof(from_size, head.size))
        except ValueError:  # the node saw more than this log holds: it will say so
            consistency = ()
        inclusions = tuple(
            InclusionProof(leaf, index, tuple(self.log.inclusion_proof(index, head.size)))
            for leaf, index in receipts.items()
            if index < head.size
        )
        return HeadProof(head, self.log.public_key, from_size, consistency, inclusions)

    def seal(self) -> None:
        """Sign a tree head over everything recorded so far."""
        try:
            self.log.sign_head()
        except Exception:  # pragma: no cover
            log.exception("could not sign an audit tree head")

    def close(self) -> None:
        """Sign a last head over everything recorded (receipts that came after the last
        job's head included), then close the log."""
        head = self.log.latest_head()
        if head is None or head.size != self.log.size:
            self.seal()
        self.log.close()
