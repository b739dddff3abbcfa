"""Revoke a party's certificates: record it in the index and re-sign the CRL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from federation.errors import ConfigError
from federation.pki.audit import record_pki_event
from federation.pki.authority import load_ca_key, open_ca
from federation.pki.crl import build_crl, crl_number
from federation.pki.files import exclusive_lock, write_public_file
from federation.pki.identity import utc_now
from federation.pki.index import append_revoked, read_index
from federation.pki.roles import Role, validate_name

__all__ = ["refresh_crl", "revoke"]


def revoke(
    directory: Path | str,
    name: str,
    *,
    role: Role | str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Revoke every unrevoked certificate of ``name`` (in ``role`` only, if given).

    The reason is kept in the index (a CRL entry cannot carry free text). The
    CRL is re-signed with all revocations, valid for 7 days. Returns the serial
    numbers revoked now.

    Raises:
        ConfigError: No CA in ``directory``, an invalid name or role, or no
            unrevoked certificate of that name (and role).
    """
    directory = Path(directory)
    validate_name(name)
    wanted = Role.parse(role) if role is not None else None
    when = utc_now(now)
    ca = open_ca(directory)
    with exclusive_lock(directory):
        ca_key = load_ca_key(ca)
        entries = read_index(ca.index_path)
        targets = [
            e
            for e in entries
            if e.name == name and (wanted is None or e.role is wanted) and e.revoked_at is None
        ]
        if not targets:
            known = any(e.name == name for e in entries)
            in_role = f" as {wanted.value}" if wanted is not None else ""
            raise ConfigError(
                f"{name!r} has no unrevoked certificate{in_role} to revoke"
                if known
                else f"no certificate was issued to {name!r}; see `federation pki list`"
            )
        for entry in targets:
            append_revoked(ca.index_path, entry.serial, when, reason)
            record_pki_event(
                directory,
                "certificate_revoked",
                role=entry.role.value,
                name=entry.name,
                serial=f"{entry.serial:x}",
                reason=reason,
            )
        revoked = [(e.serial, e.revoked_at) for e in entries if e.revoked_at is not None]
        revoked += [(e.serial, when) for e in targets]
        number = crl_number(ca.crl_path.read_bytes()) + 1 if ca.crl_path.exists() else 1
        crl = build_crl(ca_key, ca.certificate, revoked, now=when, number=number)
        write_public_file(ca.crl_path, crl, replace=True)
    return [e.serial for e in targets]


def refresh_crl(directory: Path | str, *, now: datetime | None = None) -> Path:
    """Re-sign the CRL with every revocation so far, valid 7 days from ``now`` (run it
    before ``next_update`` passes: for instance daily); returns its path.

    Raises:
        ConfigError: No CA in ``directory``.
    """
    directory = Path(directory)
    when = utc_now(now)
    ca = open_ca(directory)
    with exclusive_lock(directory):
        ca_key = load_ca_key(ca)
        revoked = [(e.serial, e.revoked_at) for e in read_index(ca.index_path) if e.revoked_at]
        number = crl_number(ca.crl_path.read_bytes()) + 1 if ca.crl_path.exists() else 1
        crl = build_crl(ca_key, ca.certificate, revoked, now=when, number=number)
        write_public_file(ca.crl_path, crl, replace=True)
        record_pki_event(directory, "crl_refreshed", number=number, revoked=len(revoked))
    return ca.crl_path
