"""Merkle tree hashes, inclusion and consistency proofs in the form of RFC 6962 / RFC 9162.

Pure functions over SHA-256, no I/O. Definitions (RFC 9162, section 2.1.1)::

    leaf hash       HASH(0x00 || entry)
    interior node   HASH(0x01 || left || right)
    MTH({})         HASH()                          the empty tree
    MTH(D[n])       HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power
                    of two smaller than n

so any third party can recompute our roots with any RFC 6962 implementation.
:class:`CompactRange` appends leaves in O(log n) memory and gives the root of
every prefix; :func:`root` hashes a list of leaf hashes; :func:`inclusion_proof` /
:func:`verify_inclusion` and :func:`consistency_proof` /
:func:`verify_consistency` follow the proof algorithms of RFC 9162 sections
2.1.3 and 2.1.4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree."""


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a tree whose leaf hashes are ``leaves``."""
    if not leaves:
        return EMPTY_ROOT
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


class CompactRange:
    """The roots of the perfect subtrees covering a prefix of the leaves.

    Appending a leaf costs amortised one hash; :meth:`root` folds at most
    ``log2(n)`` subtree roots, right to left, into MTH of the prefix.
    """

    __slots__ = ("_peaks", "size")

    def __init__(self) -> None:
        self._peaks: list[bytes] = []  # roots of perfect subtrees, largest first
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        node = leaf
        size = self.size
        while size & 1:  # merge with every complete subtree of the same height
            node = node_hash(self._peaks.pop(), node)
            size >>= 1
        self._peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves appended so far."""
        if not self._peaks:
            return EMPTY_ROOT
        node = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            node = node_hash(peak, node)
        return node


SubtreeHash = Callable[[int, int], bytes]
"""MTH of the leaves ``[start, end)`` of some tree."""


def _over(leaves: Sequence[bytes]) -> SubtreeHash:
    def subtree(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaves[start]
        k = _split(end - start)
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def _inclusion(subtree: SubtreeHash, n: int, index: int) -> list[bytes]:
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n} leaves")
    proof: list[bytes] = []
    start, end = 0, n
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
    proof.reverse()
    return proof


def _consistency(subtree: SubtreeHash, n: int, old_size: int) -> list[bytes]:
    if not 0 <= old_size <= n:
        raise ValueError(f"a tree of {n} leaves has no prefix of {old_size}")
    if old_size in (0, n):
        return []

    def sub(m: int, start: int, end: int, whole: bool) -> list[bytes]:
        size = end - start
        if m == size:
            return [] if whole else [subtree(start, end)]
        k = _split(size)
        if m <= k:
            return [*sub(m, start, start + k, whole), subtree(start + k, end)]
        return [*sub(m - k, start + k, end, False), subtree(start, start + k)]

    return sub(old_size, 0, n, True)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 section 2.1.3.1.

    Raises:
        ValueError: ``index`` is not a leaf of the tree.
    """
    return _inclusion(_over(leaves), len(leaves), index)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Check an inclusion proof (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1 (``m = old_size``, ``n = len(leaves)``).

    Raises:
        ValueError: ``old_size`` is not in ``[0, n]``.
    """
    return _consistency(_over(leaves), len(leaves), old_size)


class MerkleTree:
    """A growing tree that answers roots and proofs for any prefix in O(log² n) hashes.

    Leaf hashes are kept in one ``bytearray`` (32 bytes each); the roots of aligned
    perfect subtrees of at least :attr:`CACHED` leaves are kept as they complete, so a
    proof never rehashes more than ``CACHED`` leaves per subtree it names.
    """

    CACHED = 16
    MEMO = 1 << 16
    """Partial subtrees remembered (ranges proofs asked for), at most."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._leaves = bytearray()
        self._cache: dict[tuple[int, int], bytes] = {}
        self._memo: dict[tuple[int, int], bytes] = {}
        self._peaks: list[tuple[int, bytes]] = []  # (leaves, root) of the covering subtrees
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        """Leaves appended so far."""
        return len(self._leaves) // HASH_SIZE

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return bytes(self._leaves[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, got {len(leaf)}")
        index = self.size
        self._leaves += leaf
        width, node = 1, leaf
        while self._peaks and self._peaks[-1][0] == width:
            _, left = self._peaks.pop()
            node = node_hash(left, node)
            width *= 2
            if width >= self.CACHED:
                self._cache[(index + 1 - width, index + 1)] = node
        self._peaks.append((width, node))
        return index

    def _subtree(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return self.leaf(start)
        cached = self._cache.get((start, end))
        if cached is not None:
            return cached
        # A range's hash never changes (the log only grows): remember the partial ones
        # proofs ask for too, in a bounded memo (the perfect ones are in the cache).
        found = self._memo.get((start, end))
        if found is not None:
            return found
        k = _split(end - start)
        value = node_hash(self._subtree(start, start + k), self._subtree(start + k, end))
        if len(self._memo) >= self.MEMO:
            self._memo.clear()
        self._memo[(start, end)] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"a tree of {self.size} leaves has no prefix of {n}")
        if n == 0:
            return EMPTY_ROOT
        if n == self.size:  # fold the covering subtrees' roots, right to left
            node = self._peaks[-1][1]
            for _, peak in reversed(self._peaks[:-1]):
                node = node_hash(peak, node)
            return node
        return self._subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size])."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"a tree of {self.size} leaves has no prefix of {n}")
        return _inclusion(self._subtree, n, index)

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[size])."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"a tree of {self.size} leaves has no prefix of {n}")
        return _consistency(self._subtree, n, old_size)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 section 2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
