"""The coordinator's audit trail: every registration and job step, in a signed Merkle log.

Entries are canonical JSON (sorted keys, no spaces, UTF-8): the exact bytes hashed
into the log (:mod:`federation.audit`). They name who, what and when, never a data
value: SQL text, dataset and node names, protocol, error codes, and the SHA-256 of
what was released. A signed tree head is added whenever a job ends, so an auditor
holding the log's public key can check, offline, that nothing recorded was changed
(``federation audit verify --log FILE``).

Nodes append their own signed receipts (:mod:`federation.audit.witness`) through
:meth:`AuditTrail.submit_receipt`; :meth:`AuditTrail.prove` gives each task its proof:
the newest head (signed on demand), consistency with the node's last accepted head,
and inclusion of the node's receipts, so that every node checks this log on every task.

The signing key lives next to the coordinator's database (``<database>.audit-key``,
mode 0600); the log in ``<database>.audit``. A coordinator on ``:memory:`` keeps
both in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from federation.audit.log import AuditLog, load_signer
from federation.audit.merkle import leaf_hash
from federation.audit.witness import HeadProof, InclusionProof, canonical_json, verify_receipt
from federation.crypto.signing import Ed25519Signer
from federation.errors import AuditIntegrityError

__all__ = ["Accepted", "AuditTrail"]

Accepted = Callable[[bytes, int], None]
"""Told a receipt's leaf hash and index once it is in the log."""
_Receipt = tuple[str, bytes, bytes, Accepted]
_RECEIPT_BATCH = 256

log = logging.getLogger(__name__)


class AuditTrail:
    """Appends coordinator events to a signed, append-only log."""

    def __init__(self, database: str | Path) -> None:
        """Open the trail that belongs to the coordinator database ``database``."""
        self._queue: queue.Queue[_Receipt | None] = queue.Queue()
        self._writer: threading.Thread | None = None
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
        data = canonical_json({"event": event, "at": round(time.time(), 3), **fields})
        try:
            self.log.append(data)
        except Exception:  # pragma: no cover - disk full and the like
            log.exception("could not append the %s event to the audit log", event)

    def submit_receipt(self, node: str, key: bytes, entry: bytes, accepted: Accepted) -> None:
        """Queue a node's receipt: a writer thread checks it and appends it with the
        others waiting (one transaction), then calls ``accepted(leaf, index)``. A receipt
        that does not verify is logged and dropped. Never blocks the node's stream."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_receipts, name="audit-receipts", daemon=True
            )
            self._writer.start()
        self._queue.put((node, key, entry, accepted))

    def flush(self) -> None:
        """Wait until every queued receipt is appended (or refused)."""
        self._queue.join()

    def _write_receipts(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            batch = [item]
            while len(batch) < _RECEIPT_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    self._queue.task_done()
                    break
                batch.append(more)
            try:
                self._write_batch(batch)
            except Exception:  # pragma: no cover - disk full and the like
                log.exception("could not append %d node receipt(s)", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write_batch(self, batch: list[_Receipt]) -> None:
        valid: list[_Receipt] = []
        for node, key, entry, accepted in batch:
            try:
                verify_receipt(entry, node, key)
            except AuditIntegrityError as exc:
                log.warning("node %s: receipt refused: %s", node, exc.message)
                continue
            valid.append((node, key, entry, accepted))
        placed = self._append_receipts([entry for _, _, entry, _ in valid])
        for (_, _, _, accepted), (leaf, index) in zip(valid, placed, strict=True):
            accepted(leaf, index)

    def _append_receipts(self, entries: list[bytes]) -> list[tuple[bytes, int]]:
        """Leaf hash and index of each entry, appending those not in the log yet."""
        # Only the writer thread appends receipts: finding then appending is not racy.
        leaves = [leaf_hash(e) for e in entries]
        where: dict[bytes, int] = {}
        fresh: list[bytes] = []
        for leaf, entry in zip(leaves, entries, strict=True):
            if leaf in where:
                continue
            found = self.log.find(leaf)
            if found is not None:
                where[leaf] = found[0]
            else:
                where[leaf] = -1
                fresh.append(entry)
        for entry, index in zip(fresh, self.log.append_many(fresh), strict=True):
            where[leaf_hash(entry)] = index
        return [(leaf, where[leaf]) for leaf in leaves]

    def prove(self, from_size: int, receipts: Mapping[bytes, int]) -> HeadProof:
        """The newest signed head (signed now if entries were added since the last),
        consistent with a node's ``from_size``, with inclusion proofs for those of the
        node's ``receipts`` (leaf hash -> index) that the head covers."""
        head = self.log.current_head()
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
        """Sign a tree head over everything recorded so far (unless one already is)."""
        try:
            self.log.current_head()
        except Exception:  # pragma: no cover
            log.exception("could not sign an audit tree head")

    def close(self) -> None:
        """Append the receipts still queued, sign a last head over everything recorded
        (receipts that came after the last job's head included), then close the log."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
        self.seal()
        self.log.close()
