"""A node's check of the coordinator's log: heads, consistency, its own receipts (pure).

Every task a node receives carries a :class:`HeadProof`: the coordinator's newest
signed tree head, a consistency proof from the last head this node accepted, and
inclusion proofs for the node's *receipts* (the signed records of what the node did,
:func:`make_receipt`, which the coordinator appends to its log). :class:`LogWitness`
accepts a proof only if

* the head is signed by the key the node pinned the first time it saw one;
* the head does not shrink the log, and the consistency proof shows the last head
  the node accepted is a prefix of it (a rewrite, fork or rollback fails here);
* every inclusion proof verifies against the head;
* every receipt sent more than :data:`MERGE_DELAY_MS` before the head's timestamp is
  proven included (the coordinator cannot drop what the node did from its log; the
  delay plays the role of Certificate Transparency's maximum merge delay and absorbs
  clock skew).

Otherwise it raises :class:`~federation.errors.AuditIntegrityError` and the node stops
serving. The witness's state is small JSON the node persists between tasks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.audit.heads import SignedTreeHead
from federation.audit.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from federation.crypto.signing import Ed25519Signer, verify_signature
from federation.errors import AuditIntegrityError

__all__ = [
    "MERGE_DELAY_MS",
    "RECEIPT_EVENT",
    "HeadProof",
    "InclusionProof",
    "LogWitness",
    "canonical_json",
    "make_receipt",
    "verify_receipt",
]

MERGE_DELAY_MS = 120_000
"""How long (coordinator clock, milliseconds) the coordinator may take to include a
node's receipt in a signed head."""

RECEIPT_EVENT = "node_receipt"
"""The ``event`` of a node's receipt entry."""

MAX_RECEIPT_BYTES = 16 * 1024
"""A receipt entry is small JSON; anything larger is refused unread."""


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the exact bytes an audit entry hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def make_receipt(signer: Ed25519Signer, fields: Mapping[str, Any]) -> bytes:
    """A receipt entry: ``fields`` plus the node's audit key and its signature over the
    canonical JSON of everything else."""
    body = {**fields, "event": RECEIPT_EVENT, "key": signer.public_bytes.hex()}
    signature = signer.sign(canonical_json(body))
    return canonical_json({**body, "signature": signature.hex()})


def verify_receipt(entry: bytes, node: str, key: bytes) -> dict[str, Any]:
    """Parse a receipt and check it is ``node``'s, signed by its audit ``key``.

    Raises:
        AuditIntegrityError: Not a well-formed receipt of this node with a valid signature.
    """
    if len(entry) > MAX_RECEIPT_BYTES:
        raise AuditIntegrityError(f"a receipt has at most {MAX_RECEIPT_BYTES} bytes")
    try:
        parsed = json.loads(entry)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AuditIntegrityError("a receipt is not JSON") from None
    if not isinstance(parsed, dict) or parsed.get("event") != RECEIPT_EVENT:
        raise AuditIntegrityError(f"a receipt is a JSON object with event {RECEIPT_EVENT!r}")
    if parsed.get("node") != node:
        raise AuditIntegrityError(f"a receipt names another node than the sender {node!r}")
    if parsed.get("key") != key.hex():
        raise AuditIntegrityError("a receipt is signed with another key than the node's")
    signature = parsed.pop("signature", None)
    try:
        raw = bytes.fromhex(signature) if isinstance(signature, str) else b""
    except ValueError:
        raw = b""
    if canonical_json({**parsed, "signature": signature}) != entry or not verify_signature(
        key, canonical_json(parsed), raw
    ):
        raise AuditIntegrityError(f"node {node!r} sent a receipt whose signature does not verify")
    parsed["signature"] = signature
    return parsed


@dataclass(frozen=True)
class InclusionProof:
    """Where one of the node's receipts sits in the coordinator's log."""

    leaf: bytes
    index: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class HeadProof:
    """What the coordinator proves about its log with every task."""

    head: SignedTreeHead
    public_key: bytes
    from_size: int
    """The size of the last head the coordinator believes the node accepted."""
    consistency: tuple[bytes, ...]
    inclusions: tuple[InclusionProof, ...] = ()


@dataclass
class LogWitness:
    """A node's view of the coordinator's log (see the module docstring).

    Attributes:
        public_key: The coordinator's log key, pinned at first sight (empty: not yet).
        size: The size of the last head accepted.
        root: Its root.
        pending: Receipts not yet proven included: hex leaf hash -> the node's clock
            (Unix milliseconds) when it was sent.
    """

    public_key: bytes = b""
    size: int = 0
    root: bytes = EMPTY_ROOT
    pending: dict[str, int] = field(default_factory=dict)

    def sent(self, receipt: bytes, at_ms: int) -> None:
        """Remember a receipt the node sent, until a head proves it included."""
        self.pending[leaf_hash(receipt).hex()] = at_ms

    def check(self, proof: HeadProof) -> bool:
        """Accept ``proof`` or raise; True when it moved the accepted head forward.

        Raises:
            AuditIntegrityError: A wrong key, a bad signature, a log that shrank or
                forked, a bad inclusion proof, or a receipt left out past the merge delay.
        """
        head = proof.head
        if self.public_key and proof.public_key != self.public_key:
            raise AuditIntegrityError(
                "the coordinator's audit log is now signed with another key than the one "
                "this node pinned; its history cannot be trusted"
            )
        if not head.verify(proof.public_key):
            raise AuditIntegrityError("the coordinator's signed tree head does not verify")
        if head.size < self.size:
            raise AuditIntegrityError(
                f"the coordinator's audit log shrank from {self.size} to {head.size} entries "
                "(rolled back or rewritten)"
            )
        if proof.from_size != self.size:
            raise AuditIntegrityError(
                f"the coordinator proved consistency from {proof.from_size} entries; this node "
                f"last accepted {self.size}"
            )
        if not verify_consistency(
            self.size, head.size, self.root, head.root, list(proof.consistency)
        ):
            raise AuditIntegrityError(
                f"the coordinator's audit log of {head.size} entries is not an extension of "
                f"the {self.size} entries this node accepted before: it was rewritten or forked"
            )
        proven: set[str] = set()
        for inclusion in proof.inclusions:
            if not verify_inclusion(
                inclusion.leaf, inclusion.index, head.size, list(inclusion.path), head.root
            ):
                raise AuditIntegrityError(
                    f"the coordinator's inclusion proof for entry {inclusion.index} does not "
                    "verify against its signed head"
                )
            proven.add(inclusion.leaf.hex())
        missing = [
            leaf
            for leaf, at in self.pending.items()
            if leaf not in proven and at + MERGE_DELAY_MS < head.timestamp_ms
        ]
        if missing:
            raise AuditIntegrityError(
                f"{len(missing)} receipt(s) of this node's work are missing from the "
                f"coordinator's audit log more than {MERGE_DELAY_MS // 1000} s after they "
                "were sent: the log omits what this node did"
            )
        moved = head.size > self.size
        self.public_key = proof.public_key
        self.size, self.root = head.size, head.root
        for leaf in proven:
            self.pending.pop(leaf, None)
        return moved

    def to_json(self) -> str:
        """The state as JSON (for the node's state directory)."""
        return json.dumps(
            {
                "public_key": self.public_key.hex(),
                "size": self.size,
                "root": self.root.hex(),
                "pending": self.pending,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LogWitness:
        """Read :meth:`to_json`'s output.

        Raises:
            AuditIntegrityError: The state is not valid (it was damaged).
        """
        try:
            raw = json.loads(text)
            return cls(
                public_key=bytes.fromhex(raw["public_key"]),
                size=int(raw["size"]),
                root=bytes.fromhex(raw["root"]),
                pending={str(k): int(v) for k, v in dict(raw["pending"]).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditIntegrityError(
                f"the node's audit witness state is damaged ({exc})"
            ) from None
