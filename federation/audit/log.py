"""An append-only audit log in SQLite: entries, the root after each, signed tree heads.

One log per party (the coordinator's, each node's own). Entries are opaque bytes
(the exact bytes hashed into the tree); appending is a single transaction that
stores the entry, its leaf hash and the new root, so a crash never leaves a
half-appended entry. The Merkle state is rebuilt from the stored leaf hashes on
open. Nothing here deletes or rewrites an entry; :func:`~federation.audit.heads.verify_log`
detects it if anything else does.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from federation.audit.heads import SignedTreeHead, VerificationReport, verify_log
from federation.audit.merkle import MerkleTree, leaf_hash
from federation.crypto.signing import Ed25519Signer

__all__ = ["AuditLog", "load_signer", "read_log"]

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


def load_signer(key_path: Path) -> Ed25519Signer:
    """The log's signing key from ``key_path``, created there (mode 0600) if absent."""
    if key_path.exists():
        return Ed25519Signer.from_private_bytes(key_path.read_bytes())
    signer = Ed25519Signer.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.export_private_bytes(unprotected=True))
    return signer


class AuditLog:
    """An append-only Merkle log backed by one SQLite file."""

    def __init__(self, path: Path | str, signer: Ed25519Signer, *, durable: bool = True) -> None:
        """Open (or create) the log at ``path``, signing heads with ``signer``.

        ``durable``: every append survives a power loss (SQLite ``synchronous=FULL``);
        otherwise it survives a crash of the process but a power loss may drop the
        newest appends (``NORMAL``: no flush per append).
        """
        self.path = Path(path)
        self._signer = signer
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('public_key', ?)",
            (signer.public_bytes,),
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS entries_by_leaf ON entries (leaf)")
        self._tree = MerkleTree()
        self._rebuild()
        row = self._db.execute(
            "SELECT size, timestamp_ms, root, signature FROM heads ORDER BY size DESC LIMIT 1"
        ).fetchone()
        self._latest: SignedTreeHead | None = (
            None
            if row is None
            else SignedTreeHead(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]))
        )

    @property
    def public_key(self) -> bytes:
        """The key that signs this log's heads."""
        return self._signer.public_bytes

    @property
    def size(self) -> int:
        """Entries in the log."""
        return self._tree.size

    def root(self) -> bytes:
        """The Merkle root of every entry so far."""
        with self._lock:
            return self._tree.root()

    def append(self, entry: bytes) -> int:
        """Append one entry; returns its index."""
        return self.append_many([entry])[0]

    def append_many(
        self, entries: Sequence[bytes], meta: Mapping[str, bytes] | None = None
    ) -> list[int]:
        """Append entries, and set ``meta`` keys, in one transaction; returns the indices."""
        for entry in entries:
            if not isinstance(entry, bytes):
                raise TypeError(f"an audit entry is bytes, got {type(entry).__name__}")
        with self._lock:
            rows = []
            for entry in entries:
                leaf = leaf_hash(entry)
                index = self._tree.append(leaf)
                rows.append((index, entry, leaf, self._tree.root()))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO entries (idx, entry, leaf, root) VALUES (?, ?, ?, ?)", rows
                )
                for key, value in (meta or {}).items():
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._rebuild()
                raise
            return [index for index, _, _, _ in rows]

    def meta(self, key: str) -> bytes | None:
        """A value set with :meth:`append_many`, or ``None``."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _rebuild(self) -> None:
        self._tree = MerkleTree(
            bytes(leaf) for (leaf,) in self._db.execute("SELECT leaf FROM entries ORDER BY idx")
        )

    def find(self, leaf: bytes) -> tuple[int, bytes] | None:
        """The index and bytes of the first entry with this leaf hash, or ``None``."""
        row = self._db.execute(
            "SELECT idx, entry FROM entries WHERE leaf = ? ORDER BY idx LIMIT 1", (leaf,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def latest_head(self) -> SignedTreeHead | None:
        """The largest signed head, or ``None`` before the first."""
        return self._latest

    def current_head(self) -> SignedTreeHead:
        """The newest signed head, signing one first if entries came after it."""
        with self._lock:
            head = self._latest
            if head is not None and head.size == self._tree.size:
                return head
        return self.sign_head()

    def sign_head(self) -> SignedTreeHead:
        """Sign (and keep) a head for the current size."""
        with self._lock:
            size, root = self._tree.size, self._tree.root()
            timestamp_ms = int(time.time() * 1000)
            signature = self._signer.sign(SignedTreeHead.message(size, timestamp_ms, root))
            self._db.execute(
                "INSERT OR REPLACE INTO heads (size, timestamp_ms, root, signature) "
                "VALUES (?, ?, ?, ?)",
                (size, timestamp_ms, root, signature),
            )
            self._latest = SignedTreeHead(size, timestamp_ms, root, signature)
            return self._latest

    def heads(self) -> list[SignedTreeHead]:
        """Every signed head, by size."""
        rows = self._db.execute(
            "SELECT size, timestamp_ms, root, signature FROM heads ORDER BY size"
        ).fetchall()
        return [SignedTreeHead(int(s), int(t), bytes(r), bytes(g)) for s, t, r, g in rows]

    def rows(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        """(entry, root recorded after it) for the entries ``[start, end)``."""
        rows = self._db.execute(
            "SELECT entry, root FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        ).fetchall()
        return [(bytes(e), bytes(r)) for e, r in rows]

    def entries(self, start: int = 0, end: int | None = None) -> list[bytes]:
        """The entries ``[start, end)``."""
        stop = self.size if end is None else end
        rows = self._db.execute(
            "SELECT entry FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        ).fetchall()
        return [bytes(e) for (e,) in rows]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of entry ``index`` in the tree of the first ``size`` entries."""
        with self._lock:
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the first ``old_size`` entries are a prefix of ``new_size``."""
        with self._lock:
            return self._tree.consistency_proof(old_size, new_size)

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
