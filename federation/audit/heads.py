"""Signed tree heads and whole-log verification (pure: no I/O).

A signed tree head (STH) commits to the first ``size`` entries of a log: its
root is MTH of their leaf hashes (:mod:`federation.audit.merkle`), and the log's
Ed25519 key signs the canonical encoding::

    b"federation/audit/sth/v1\\x00" || u64 size || u64 timestamp_ms || root (32 bytes)

:func:`verify_log` recomputes a log from its entries and names the first bad one.
A log stores, next to every entry, the root after appending it; that chain
pinpoints a flipped, deleted, inserted or reordered entry exactly, and the signed
heads make a rewrite of the chain itself detectable (then the report names the
first entry that a signed head no longer covers correctly).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from federation.audit.merkle import HASH_SIZE, CompactRange, leaf_hash
from federation.crypto.signing import verify_signature

__all__ = ["SignedTreeHead", "VerificationReport", "verify_log"]

_STH_LABEL = b"federation/audit/sth/v1\x00"
_STH_BODY = struct.Struct(">QQ")


@dataclass(frozen=True)
class SignedTreeHead:
    """A signed commitment to the first ``size`` entries of a log."""

    size: int
    timestamp_ms: int
    root: bytes
    signature: bytes

    @staticmethod
    def message(size: int, timestamp_ms: int, root: bytes) -> bytes:
        """The exact bytes that are signed."""
        if len(root) != HASH_SIZE:
            raise ValueError(f"a tree root has {HASH_SIZE} bytes, got {len(root)}")
        return _STH_LABEL + _STH_BODY.pack(size, timestamp_ms) + root

    def verify(self, public_key: bytes) -> bool:
        """Whether the signature is the log key's, over this head's fields."""
        try:
            message = self.message(self.size, self.timestamp_ms, self.root)
        except ValueError:
            return False
        return verify_signature(public_key, message, self.signature)


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of :func:`verify_log`.

    Attributes:
        ok: Every check passed.
        entries: Entries checked.
        heads: Signed heads checked.
        first_bad: Index of the first entry found bad (``None`` when ok, or when
            only a head itself is bad).
        problem: What is wrong, in words (``None`` when ok).
    """

    ok: bool
    entries: int
    heads: int
    first_bad: int | None = None
    problem: str | None = None


class _BadLogError(Exception):
    def __init__(self, first: int | None, problem: str) -> None:
        super().__init__(problem)
        self.first = first
        self.problem = problem


def verify_log(
    entries: Sequence[bytes],
    heads: Sequence[SignedTreeHead],
    public_key: bytes,
    recorded_roots: Sequence[bytes] | None = None,
) -> VerificationReport:
    """Recompute a log from its entries and check it against its signed heads.

    Args:
        entries: The entries, in log order (the exact bytes that were hashed).
        heads: The log's signed tree heads, in any order.
        public_key: The log's Ed25519 public key.
        recorded_roots: The root the log recorded after each entry, if it keeps them.
    """
    try:
        for head in sorted(heads, key=lambda h: h.size):
            if not head.verify(public_key):
                raise _BadLogError(
                    None, f"the tree head at size {head.size} has an invalid signature"
                )
        if recorded_roots is not None and len(recorded_roots) != len(entries):
            raise _BadLogError(
                min(len(entries), len(recorded_roots)),
                f"the log holds {len(entries)} entries but records {len(recorded_roots)} roots",
            )
        _scan(entries, {h.size: h for h in heads}, recorded_roots)
    except _BadLogError as bad:
        return VerificationReport(False, len(entries), len(heads), bad.first, bad.problem)
    return VerificationReport(True, len(entries), len(heads))


def _scan(
    entries: Sequence[bytes],
    heads: dict[int, SignedTreeHead],
    recorded_roots: Sequence[bytes] | None,
) -> None:
    compact = CompactRange()
    first_mismatch: int | None = None
    verified = 0  # entries covered by the last head that matched
    for i, entry in enumerate(entries):
        compact.append(leaf_hash(entry))
        current = compact.root()
        if first_mismatch is None and recorded_roots is not None and recorded_roots[i] != current:
            first_mismatch = i
        head = heads.get(i + 1)
        if head is None:
            continue
        if head.root != current:
            if first_mismatch is not None:
                raise _BadLogError(first_mismatch, f"entry {first_mismatch} does not match the log")
            raise _BadLogError(
                verified,
                f"entries {verified}..{i} do not match the signed tree head at size {i + 1}",
            )
        if first_mismatch is not None:
            # The head matches, so the recorded root was rewritten, not the entry.
            raise _BadLogError(
                first_mismatch, f"the recorded root after entry {first_mismatch} is wrong"
            )
        verified = i + 1
    n = len(entries)
    beyond = [size for size in heads if size > n]
    if beyond:
        raise _BadLogError(
            n, f"a signed tree head covers {max(beyond)} entries; the log holds only {n}"
        )
    if first_mismatch is not None:
        raise _BadLogError(first_mismatch, f"entry {first_mismatch} does not match the log")
