"""A node's witness of the coordinator's log, against honest and lying logs (no I/O)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from federation.audit.heads import SignedTreeHead
from federation.audit.log import AuditLog
from federation.audit.merkle import leaf_hash
from federation.audit.witness import (
    MERGE_DELAY_MS,
    HeadProof,
    InclusionProof,
    LogWitness,
    make_receipt,
    verify_receipt,
)
from federation.crypto.signing import Ed25519Signer
from federation.errors import AuditIntegrityError


def _log(n: int, signer: Ed25519Signer | None = None, tag: str = "e") -> AuditLog:
    log = AuditLog(":memory:", signer or Ed25519Signer.generate())
    for i in range(n):
        log.append(f"{tag} {i}".encode())
    return log


def _proof(log: AuditLog, from_size: int, receipts: dict[bytes, int] | None = None) -> HeadProof:
    head = log.sign_head()
    return HeadProof(
        head,
        log.public_key,
        from_size,
        tuple(log.consistency_proof(from_size, head.size)),
        tuple(
            InclusionProof(leaf, i, tuple(log.inclusion_proof(i, head.size)))
            for leaf, i in (receipts or {}).items()
        ),
    )


def test_an_honest_growing_log_is_accepted_head_after_head() -> None:
    log, witness = _log(3), LogWitness()
    assert witness.check(_proof(log, 0))
    for grow in (1, 5, 0, 17):
        for i in range(grow):
            log.append(f"more {i}".encode())
        before = witness.size
        assert witness.check(_proof(log, before)) is (grow > 0)
        assert (witness.size, witness.root) == (log.size, log.root())
    assert witness.public_key == log.public_key


def test_another_key_is_refused_once_one_is_pinned() -> None:
    signer = Ed25519Signer.generate()
    log, witness = _log(4, signer), LogWitness()
    witness.check(_proof(log, 0))
    impostor = _log(4, tag="e")  # the same entries under another key
    with pytest.raises(AuditIntegrityError, match="another key"):
        witness.check(_proof(impostor, 4))


def test_a_forged_signature_is_refused() -> None:
    log, witness = _log(4), LogWitness()
    proof = _proof(log, 0)
    bad = dataclasses.replace(
        proof, head=dataclasses.replace(proof.head, timestamp_ms=proof.head.timestamp_ms + 1)
    )
    with pytest.raises(AuditIntegrityError, match="does not verify"):
        witness.check(bad)


def test_a_rewritten_history_is_detected_even_when_signed_with_the_pinned_key() -> None:
    signer = Ed25519Signer.generate()
    witness = LogWitness()
    witness.check(_proof(_log(6, signer), 0))
    forked = _log(6, signer, tag="rewritten")  # same key, same size, other entries
    forked.append(b"new")
    with pytest.raises(AuditIntegrityError, match="rewritten or forked"):
        witness.check(_proof(forked, 6))


def test_a_log_that_shrank_is_a_rollback() -> None:
    signer = Ed25519Signer.generate()
    witness = LogWitness()
    witness.check(_proof(_log(9, signer), 0))
    short = _log(5, signer)
    head = short.sign_head()
    with pytest.raises(AuditIntegrityError, match="shrank from 9 to 5"):
        witness.check(HeadProof(head, short.public_key, 9, ()))


def test_a_proof_from_another_size_than_the_node_accepted_is_refused() -> None:
    log, witness = _log(5), LogWitness()
    witness.check(_proof(log, 0))
    log.append(b"x")
    with pytest.raises(AuditIntegrityError, match="last accepted 5"):
        witness.check(_proof(log, 3))


def test_receipts_must_be_proven_included_within_the_merge_delay() -> None:
    signer = Ed25519Signer.generate()
    log, witness = _log(2, signer), LogWitness()
    node = Ed25519Signer.generate()
    receipt = make_receipt(node, {"node": "n1", "job": "j1"})
    witness.sent(receipt, at_ms=0)
    # a head within the merge delay may still lack it
    early = _proof(log, 0)
    early_head = dataclasses.replace(early.head, timestamp_ms=MERGE_DELAY_MS - 1)
    early_head = _resign(early_head, signer)
    witness.check(dataclasses.replace(early, head=early_head))
    assert witness.pending
    # a later head without it: the log omits the node's work
    log.append(b"other")
    late = _proof(log, 2)
    late_head = _resign(dataclasses.replace(late.head, timestamp_ms=MERGE_DELAY_MS + 1), signer)
    with pytest.raises(AuditIntegrityError, match="missing from the coordinator's audit log"):
        witness.check(dataclasses.replace(late, head=late_head))
    # with it appended and proven, the witness accepts and forgets it
    index = log.append(receipt)
    witness.check(_proof(log, witness.size, {leaf_hash(receipt): index}))
    assert not witness.pending


def test_a_wrong_inclusion_proof_is_refused() -> None:
    log, witness = _log(7), LogWitness()
    receipt = b"receipt"
    index = log.append(receipt)
    good = _proof(log, 0, {leaf_hash(receipt): index})
    bad = dataclasses.replace(
        good, inclusions=(dataclasses.replace(good.inclusions[0], index=index - 1),)
    )
    with pytest.raises(AuditIntegrityError, match="inclusion proof for entry 6"):
        witness.check(bad)


def test_the_state_survives_json_and_damage_is_reported() -> None:
    log, witness = _log(3), LogWitness()
    witness.check(_proof(log, 0))
    witness.sent(b"r", at_ms=5)
    again = LogWitness.from_json(witness.to_json())
    assert again == witness
    with pytest.raises(AuditIntegrityError, match="damaged"):
        LogWitness.from_json(json.dumps({"size": 1}))


def test_receipts_verify_only_for_their_node_key_and_exact_bytes() -> None:
    node = Ed25519Signer.generate()
    entry = make_receipt(node, {"node": "n1", "job": "j", "outcome": "contributed"})
    parsed = verify_receipt(entry, "n1", node.public_bytes)
    assert parsed["job"] == "j"
    with pytest.raises(AuditIntegrityError, match="another node"):
        verify_receipt(entry, "n2", node.public_bytes)
    with pytest.raises(AuditIntegrityError, match="another key"):
        verify_receipt(entry, "n1", Ed25519Signer.generate().public_bytes)
    tampered = entry.replace(b"contributed", b"refused")
    with pytest.raises(AuditIntegrityError, match="does not verify"):
        verify_receipt(tampered, "n1", node.public_bytes)
    with pytest.raises(AuditIntegrityError, match="not JSON"):
        verify_receipt(b"\xff", "n1", node.public_bytes)


def _resign(head: SignedTreeHead, signer: Ed25519Signer) -> SignedTreeHead:
    message = SignedTreeHead.message(head.size, head.timestamp_ms, head.root)
    return dataclasses.replace(head, signature=signer.sign(message))
