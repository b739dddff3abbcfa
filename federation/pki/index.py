"""The CA's record of what it issued and revoked: ``index.jsonl``, append-only.

Each line is one JSON event, never rewritten::

    {"event": "issued", "serial": "5f1c...", "role": "node", "name": "hospital-a",
     "not_before": "2025-01-01T00:00:00+00:00", "not_after": "...", "sha256": "ab12..."}
    {"event": "revoked", "serial": "5f1c...", "revoked_at": "...", "reason": "key lost"}

:func:`read_index` folds the events into one :class:`IndexEntry` per certificate.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from federation.errors import ConfigError
from federation.pki.roles import Role

__all__ = ["INDEX_NAME", "IndexEntry", "append_issued", "append_revoked", "read_index"]

INDEX_NAME = "index.jsonl"


@dataclass(frozen=True)
class IndexEntry:
    """One issued certificate as the CA recorded it."""

    serial: int
    role: Role
    name: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    """SHA-256 of the DER certificate, lowercase hex."""
    revoked_at: datetime | None = None
    reason: str | None = None

    @property
    def serial_hex(self) -> str:
        """The serial number in lowercase hex (as ``openssl x509 -serial`` shows it)."""
        return format(self.serial, "x")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (serial in hex, times in ISO 8601)."""
        return {
            "serial": self.serial_hex,
            "role": self.role.value,
            "name": self.name,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.fingerprint,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
        }


def _append(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_issued(path: Path, entry: IndexEntry) -> None:
    """Record that ``entry`` was issued."""
    record = {"event": "issued", **entry.to_dict()}
    del record["revoked_at"], record["reason"]
    _append(path, record)


def append_revoked(path: Path, serial: int, revoked_at: datetime, reason: str | None) -> None:
    """Record that the certificate ``serial`` was revoked at ``revoked_at``."""
    record = {
        "event": "revoked",
        "serial": format(serial, "x"),
        "revoked_at": revoked_at.isoformat(),
        "reason": reason,
    }
    _append(path, record)


def read_index(path: Path) -> list[IndexEntry]:
    """Every certificate in the index, in issue order, with its revocation if any.

    Raises:
        ConfigError: The file is missing or a line is not a valid event.
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"no CA index at {path}; run `federation pki init` first") from None
    entries: dict[int, IndexEntry] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            serial = int(record["serial"], 16)
            if record["event"] == "issued":
                entries[serial] = IndexEntry(
                    serial=serial,
                    role=Role(record["role"]),
                    name=record["name"],
                    not_before=datetime.fromisoformat(record["not_before"]),
                    not_after=datetime.fromisoformat(record["not_after"]),
                    fingerprint=record["sha256"],
                )
            elif record["event"] == "revoked":
                entries[serial] = dataclasses.replace(
                    entries[serial],
                    revoked_at=datetime.fromisoformat(record["revoked_at"]),
                    reason=record["reason"],
                )
            else:
                raise ValueError(record["event"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a valid index record ({exc!r})") from None
    return list(entries.values())
