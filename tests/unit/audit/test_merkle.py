"""Merkle trees and proofs against the RFC 9162 definitions, written out independently here."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) straight from RFC 9162 section 2.1.1 (recursive, no shortcuts)."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_roots_match_the_definition(n: int) -> None:
    entries = _entries(n)
    assert root([leaf_hash(e) for e in entries]) == mth(entries)


def test_the_empty_tree_and_a_single_leaf() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root([leaf_hash(b"x")]) == hashlib.sha256(b"\x00x").digest()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=70))
def test_every_prefix_root_of_a_compact_range(entries: list[bytes]) -> None:
    compact = CompactRange()
    for i, entry in enumerate(entries):
        compact.append(leaf_hash(entry))
        assert compact.size == i + 1
        assert compact.root() == mth(entries[: i + 1])


def test_inclusion_proofs_verify_and_reject_wrong_claims() -> None:
    for n in range(1, 34):
        leaves = [leaf_hash(e) for e in _entries(n)]
        head = mth(_entries(n))
        for i in range(n):
            proof = inclusion_proof(leaves, i)
            assert verify_inclusion(leaves[i], i, n, proof, head)
            assert not verify_inclusion(leaf_hash(b"forged"), i, n, proof, head)
            if n > 1:
                assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, head)
                bad = [bytes(32), *proof[1:]] if proof else proof
                assert not verify_inclusion(leaves[i], i, n, bad, head)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof([leaf_hash(b"a")], 1)


def test_consistency_proofs_verify_and_reject_forks() -> None:
    for n in range(1, 34):
        entries = _entries(n)
        leaves = [leaf_hash(e) for e in entries]
        new = mth(entries)
        for m in range(n + 1):
            old = mth(entries[:m])
            proof = consistency_proof(leaves, m)
            assert verify_consistency(m, n, old, new, proof)
            if 0 < m < n:
                forked = mth([b"rewritten", *entries[1:m]])
                assert not verify_consistency(m, n, forked, new, proof)
                assert not verify_consistency(m, n, old, mth([*entries, b"x"]), proof)
                assert not verify_consistency(m, n, old, new, proof[:-1])
    assert not verify_consistency(3, 2, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ValueError, match="no prefix"):
        consistency_proof([leaf_hash(b"a")], 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 140), st.data())
def test_a_cached_tree_gives_the_same_roots_and_proofs_for_every_prefix(
    n: int, data: st.DataObject
) -> None:
    entries = _entries(n)
    tree = MerkleTree(leaf_hash(e) for e in entries)
    assert tree.size == n
    size = data.draw(st.integers(0, n))
    leaves = [leaf_hash(e) for e in entries[:size]]
    assert tree.root(size) == mth(entries[:size])
    old = data.draw(st.integers(0, size))
    assert tree.consistency_proof(old, size) == consistency_proof(leaves, old)
    assert (
        verify_consistency(
            old, size, mth(entries[:old]), mth(entries[:size]), tree.consistency_proof(old, size)
        )
        or old == 0
    )
    if size:
        index = data.draw(st.integers(0, size - 1))
        proof = tree.inclusion_proof(index, size)
        assert proof == inclusion_proof(leaves, index)
        assert verify_inclusion(leaves[index], index, size, proof, mth(entries[:size]))
    with pytest.raises(ValueError, match="no prefix"):
        tree.root(n + 1)
