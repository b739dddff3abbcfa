"""Wire <-> domain for audit heads and proofs (:mod:`federation.audit`)."""

from __future__ import annotations

from federation.audit.heads import SignedTreeHead
from federation.audit.merkle import HASH_SIZE
from federation.audit.witness import HeadProof, InclusionProof
from federation.errors import ProtocolError
from federation.v1 import common_pb2, node_pb2

__all__ = ["head_from_proto", "head_to_proto", "proof_from_proto", "proof_to_proto"]

MAX_PROOF_HASHES = 128
"""More hashes than any proof in a log of 2**64 entries needs."""
MAX_INCLUSIONS = 4096
"""Receipts proven in one task."""


def head_to_proto(head: SignedTreeHead) -> common_pb2.SignedHead:
    """Domain -> wire."""
    return common_pb2.SignedHead(
        size=head.size, timestamp_ms=head.timestamp_ms, root=head.root, signature=head.signature
    )


def head_from_proto(head: common_pb2.SignedHead) -> SignedTreeHead:
    """Wire -> domain (the signature is checked by whoever relies on the head)."""
    return SignedTreeHead(
        int(head.size), int(head.timestamp_ms), bytes(head.root), bytes(head.signature)
    )


def proof_to_proto(proof: HeadProof) -> node_pb2.AuditProof:
    """Domain -> wire."""
    return node_pb2.AuditProof(
        head=head_to_proto(proof.head),
        public_key=proof.public_key,
        from_size=proof.from_size,
        consistency=list(proof.consistency),
        inclusions=[
            node_pb2.AuditInclusion(leaf=i.leaf, index=i.index, path=list(i.path))
            for i in proof.inclusions
        ],
    )


def _hashes(items: object, what: str) -> tuple[bytes, ...]:
    out = tuple(bytes(h) for h in items)  # type: ignore[attr-defined]
    if len(out) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in out):
        raise ProtocolError(f"malformed {what} in an audit proof")
    return out


def proof_from_proto(proof: node_pb2.AuditProof) -> HeadProof:
    """Wire -> domain.

    Raises:
        ProtocolError: Hashes of the wrong size or absurdly many.
    """
    if len(proof.inclusions) > MAX_INCLUSIONS:
        raise ProtocolError("too many inclusion proofs in one audit proof")
    return HeadProof(
        head=head_from_proto(proof.head),
        public_key=bytes(proof.public_key),
        from_size=int(proof.from_size),
        consistency=_hashes(proof.consistency, "consistency proof"),
        inclusions=tuple(
            InclusionProof(
                leaf=_hashes([i.leaf], "receipt hash")[0],
                index=int(i.index),
                path=_hashes(i.path, "inclusion path"),
            )
            for i in proof.inclusions
        ),
    )
