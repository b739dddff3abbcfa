"""The CA's own audit log: every certificate issued and revoked, in a signed Merkle log.

``<ca directory>/audit.sqlite3`` (key ``audit.key``, 0600) holds one canonical-JSON
entry per event (``ca_created``, ``certificate_issued``, ``certificate_revoked``), with a
signed tree head after each, so ``federation audit verify --log DIR/audit.sqlite3``
checks the CA's history like any other log. ``index.jsonl`` stays the working index.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from federation.audit.log import AuditLog, load_signer
from federation.audit.witness import canonical_json

__all__ = ["PKI_AUDIT_KEY", "PKI_AUDIT_LOG", "record_pki_event"]

PKI_AUDIT_LOG = "audit.sqlite3"
PKI_AUDIT_KEY = "audit.key"


def record_pki_event(directory: Path, event: str, **fields: Any) -> None:
    """Append one event to the CA directory's log and sign a head over it."""
    log = AuditLog(directory / PKI_AUDIT_LOG, load_signer(directory / PKI_AUDIT_KEY))
    try:
        log.append(canonical_json({"event": event, "at": round(time.time(), 3), **fields}))
        log.sign_head()
    finally:
        log.close()
