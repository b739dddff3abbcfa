"""The SQLite audit log: appends, signed heads, proofs, and tampering found at the right index."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.audit.heads import SignedTreeHead, verify_log
from federation.audit.log import AuditLog
from federation.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from federation.crypto.signing import Ed25519Signer

N = 300
HEAD_EVERY = 50


def _entry(i: int) -> bytes:
    return f'{{"event":"query","job":"{i:06d}"}}'.encode()


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.db", Ed25519Signer.generate())
    for i in range(N):
        audit.append(_entry(i))
        if (i + 1) % HEAD_EVERY == 0:
            audit.sign_head()
    return audit


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    report = log.verify()
    assert report.ok, report.problem
    assert (report.entries, report.heads) == (N, N // HEAD_EVERY)


def test_heads_are_signed_over_their_fields(log: AuditLog) -> None:
    head = log.heads()[-1]
    assert head.size == N
    assert head.verify(log.public_key)
    assert not head.verify(Ed25519Signer.generate().public_bytes)
    forged = SignedTreeHead(head.size, head.timestamp_ms + 1, head.root, head.signature)
    assert not forged.verify(log.public_key)


def test_proofs_from_the_log_verify_against_its_heads(log: AuditLog) -> None:
    heads = {h.size: h for h in log.heads()}
    old, new = heads[100], heads[N]
    proof = log.consistency_proof(old.size, new.size)
    assert verify_consistency(old.size, new.size, old.root, new.root, proof)
    for index in (0, 57, 99):
        path = log.inclusion_proof(index, old.size)
        assert verify_inclusion(leaf_hash(_entry(index)), index, old.size, path, old.root)


def test_reopening_continues_the_same_tree(tmp_path: Path, log: AuditLog) -> None:
    signer_bytes = log._signer.export_private_bytes(unprotected=True)
    log.close()
    again = AuditLog(log.path, Ed25519Signer.from_private_bytes(signer_bytes))
    assert again.size == N
    again.append(_entry(N))
    head = again.sign_head()
    assert head.size == N + 1
    assert again.verify().ok


def _tamper(log: AuditLog, sql: str, *params: object) -> None:
    db = sqlite3.connect(log.path)
    with db:
        db.execute(sql, params)
    db.close()


def _swap(log: AuditLog, i: int, j: int) -> None:
    db = sqlite3.connect(log.path)
    with db:
        a = db.execute("SELECT entry, leaf FROM entries WHERE idx = ?", (i,)).fetchone()
        b = db.execute("SELECT entry, leaf FROM entries WHERE idx = ?", (j,)).fetchone()
        db.execute("UPDATE entries SET entry = ?, leaf = ? WHERE idx = ?", (*b, i))
        db.execute("UPDATE entries SET entry = ?, leaf = ? WHERE idx = ?", (*a, j))
    db.close()


def _insert(log: AuditLog, at: int) -> None:
    db = sqlite3.connect(log.path)
    with db:
        db.execute("UPDATE entries SET idx = -idx - 1 WHERE idx >= ?", (at,))
        db.execute("UPDATE entries SET idx = -idx WHERE idx < 0")
        forged = b'{"event":"query","job":"forged"}'
        db.execute(
            "INSERT INTO entries (idx, entry, leaf, root) VALUES (?, ?, ?, ?)",
            (at, forged, leaf_hash(forged), bytes(32)),
        )
    db.close()


TAMPERINGS: dict[str, tuple[Callable[[AuditLog], None], int]] = {
    "flip a byte": (
        lambda log: _tamper(
            log, "UPDATE entries SET entry = ? WHERE idx = 123", _entry(123).replace(b"q", b"Q")
        ),
        123,
    ),
    "delete": (lambda log: _tamper(log, "DELETE FROM entries WHERE idx = 77"), 77),
    "reorder": (lambda log: _swap(log, 210, 240), 210),
    "insert": (lambda log: _insert(log, 5), 5),
    "truncate the tail": (lambda log: _tamper(log, "DELETE FROM entries WHERE idx >= 280"), 280),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_tampering_is_found_at_the_right_index(log: AuditLog, how: str) -> None:
    tamper, index = TAMPERINGS[how]
    tamper(log)
    report = log.verify()
    assert not report.ok
    assert report.first_bad == index, report.problem


def test_a_rewritten_root_chain_is_caught_by_the_signed_heads(log: AuditLog) -> None:
    entries = log.entries()
    entries[130] = b"rewritten"
    # the attacker recomputes every recorded root: only the signed heads remain honest
    report = verify_log(entries, log.heads(), log.public_key)
    assert not report.ok
    assert report.first_bad == 100  # the last signed head that still matches covers 0..99
    assert "150" in (report.problem or "")


def test_a_forged_head_or_foreign_key_is_refused(log: AuditLog) -> None:
    heads = log.heads()
    other = Ed25519Signer.generate()
    fake = SignedTreeHead(
        heads[0].size,
        heads[0].timestamp_ms,
        bytes(32),
        other.sign(SignedTreeHead.message(heads[0].size, heads[0].timestamp_ms, bytes(32))),
    )
    assert not verify_log(log.entries(), [fake, *heads[1:]], log.public_key).ok
    assert not verify_log(log.entries(), heads, other.public_bytes).ok


def test_signing_keys_do_not_leak(log: AuditLog) -> None:
    signer = Ed25519Signer.generate()
    assert "redacted" in repr(signer)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(signer)
    with pytest.raises(ValueError, match="unprotected"):
        signer.export_private_bytes(unprotected=False)
