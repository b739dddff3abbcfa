"""The coordinator's audit trail: every registration and job step, in a signed Merkle log.

Entries are canonical JSON (sorted keys, no spaces, UTF-8): the exact bytes hashed
into the log (:mod:`federation.audit`). They name who, what and when, never a data
value: SQL text, dataset and node names, protocol, error codes, and the SHA-256 of
what was released. A signed tree head is added whenever a job ends, so an auditor
holding the log's public key can check, offline, that nothing recorded was changed
(``federation audit verify --log FILE``).

The signing key lives next to the coordinator's database (``<database>.audit-key``,
mode 0600); the log in ``<database>.audit``. A coordinator on ``:memory:`` keeps
both in memory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from federation.audit.log import AuditLog
from federation.crypto.signing import Ed25519Signer

__all__ = ["AuditTrail"]

log = logging.getLogger(__name__)


def _signer(key_path: Path) -> Ed25519Signer:
    if key_path.exists():
        return Ed25519Signer.from_private_bytes(key_path.read_bytes())
    signer = Ed25519Signer.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.export_private_bytes(unprotected=True))
    return signer


class AuditTrail:
    """Appends coordinator events to a signed, append-only log."""

    def __init__(self, database: str | Path) -> None:
        """Open the trail that belongs to the coordinator database ``database``."""
        if str(database) == ":memory:":
            self.log = AuditLog(":memory:", Ed25519Signer.generate())
        else:
            base = Path(database)
            self.log = AuditLog(f"{base}.audit", _signer(Path(f"{base}.audit-key")))

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

    def seal(self) -> None:
        """Sign a tree head over everything recorded so far."""
        try:
            self.log.sign_head()
        except Exception:  # pragma: no cover
            log.exception("could not sign an audit tree head")

    def close(self) -> None:
        """Close the log."""
        self.log.close()
