"""An append-only audit log in SQLite: entries, the root after each, signed tree heads.

One log per party (the coordinator's, each node's own). Entries are opaque bytes
(the exact bytes hashed into the tree); appending is a single transaction that
stores the entry, its leaf hash and the new root, so a crash never leaves a
half-appended entry. The Merkle state is rebuilt from the stored leaf hashes on
open. Nothing here deletes or rewrites an entry; :func:`~federation.audit.heads.verify_log`
detects it if anything else does.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from federation.audit.heads import SignedTreeHead, VerificationReport, verify_log
from federation.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from federation.crypto.signing import Ed25519Signer

__all__ = ["AuditLog", "read_log"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf BLOB NOT NULL,
    root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
    size INTEGER PRIMARY KEY,
    timestamp_ms INTEGER NOT NULL,
    root BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


class AuditLog:
    """An append-only Merkle log backed by one SQLite file."""

    def __init__(self, path: Path | str, signer: Ed25519Signer) -> None:
        """Open (or create) the log at ``path``, signing heads with ``signer``."""
        self.path = Path(path)
        self._signer = signer
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('public_key', ?)",
            (signer.public_bytes,),
        )
        self._compact = CompactRange()
        for (leaf,) in self._db.execute("SELECT leaf FROM entries ORDER BY idx"):
            self._compact.append(bytes(leaf))

    @property
    def public_key(self) -> bytes:
        """The key that signs this log's heads."""
        return self._signer.public_bytes

    @property
    def size(self) -> int:
        """Entries in the log."""
        return self._compact.size

    def append(self, entry: bytes) -> int:
        """Append one entry; returns its index."""
        if not isinstance(entry, bytes):
            raise TypeError(f"an audit entry is bytes, got {type(entry).__name__}")
        with self._lock:
            leaf = leaf_hash(entry)
            index = self._compact.size
            self._compact.append(leaf)
            try:
                self._db.execute(
                    "INSERT INTO entries (idx, entry, leaf, root) VALUES (?, ?, ?, ?)",
                    (index, entry, leaf, self._compact.root()),
                )
            except BaseException:
                self._rebuild()
                raise
            return index

    def _rebuild(self) -> None:
        self._compact = CompactRange()
        for (leaf,) in self._db.execute("SELECT leaf FROM entries ORDER BY idx"):
            self._compact.append(bytes(leaf))

    def sign_head(self) -> SignedTreeHead:
        """Sign (and keep) a head for the current size."""
        with self._lock:
            size, root = self._compact.size, self._compact.root()
            timestamp_ms = int(time.time() * 1000)
            signature = self._signer.sign(SignedTreeHead.message(size, timestamp_ms, root))
            self._db.execute(
                "INSERT OR REPLACE INTO heads (size, timestamp_ms, root, signature) "
                "VALUES (?, ?, ?, ?)",
                (size, timestamp_ms, root, signature),
            )
            return SignedTreeHead(size, timestamp_ms, root, signature)

    def heads(self) -> list[SignedTreeHead]:
        """Every signed head, by size."""
        rows = self._db.execute(
            "SELECT size, timestamp_ms, root, signature FROM heads ORDER BY size"
        ).fetchall()
        return [SignedTreeHead(int(s), int(t), bytes(r), bytes(g)) for s, t, r, g in rows]

    def entries(self, start: int = 0, end: int | None = None) -> list[bytes]:
        """The entries ``[start, end)``."""
        stop = self.size if end is None else end
        rows = self._db.execute(
            "SELECT entry FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        ).fetchall()
        return [bytes(e) for (e,) in rows]

    def _leaves(self, size: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT leaf FROM entries WHERE idx < ? ORDER BY idx", (size,)
        ).fetchall()
        return [bytes(leaf) for (leaf,) in rows]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of entry ``index`` in the tree of the first ``size`` entries."""
        return inclusion_proof(self._leaves(self.size if size is None else size), index)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the first ``old_size`` entries are a prefix of ``new_size``."""
        return consistency_proof(
            self._leaves(self.size if new_size is None else new_size), old_size
        )

    def verify(self) -> VerificationReport:
        """Recompute the whole log from its stored entries and check every head."""
        rows = self._db.execute("SELECT entry, root FROM entries ORDER BY idx").fetchall()
        return verify_log(
            [bytes(e) for e, _ in rows],
            self.heads(),
            self.public_key,
            [bytes(r) for _, r in rows],
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def read_log(path: Path | str) -> tuple[list[bytes], list[bytes], list[SignedTreeHead], bytes]:
    """Entries, recorded roots, signed heads and the stored public key of a log file.

    Opens the file read-only; nothing is changed.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not an audit log.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no audit log at {target}")
    db = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        try:
            rows = db.execute("SELECT entry, root FROM entries ORDER BY idx").fetchall()
            heads = db.execute(
                "SELECT size, timestamp_ms, root, signature FROM heads ORDER BY size"
            ).fetchall()
            key = db.execute("SELECT value FROM meta WHERE key = 'public_key'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{target} is not an audit log ({exc})") from None
    finally:
        db.close()
    return (
        [bytes(e) for e, _ in rows],
        [bytes(r) for _, r in rows],
        [SignedTreeHead(int(a), int(b), bytes(c), bytes(d)) for a, b, c, d in heads],
        bytes(key[0]) if key else b"",
    )
