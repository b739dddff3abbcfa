"""Paillier encryption of packed plaintexts, by blocks of fixed-width ciphertexts.

The recipes the homomorphic-sum protocol (:mod:`federation.protocols.he.paillier`)
calls; the primitives live in :mod:`federation.crypto.paillier_keys` (presets, key
encodings, CRT decryption) and :mod:`federation.crypto.paillier_obfuscation` (DJN
obfuscators, fixed-base table, pool).

A *block* is a sequence of ciphertexts, each a big-endian integer of exactly
``public_key.ciphertext_size`` (``2 * bits(n) / 8``) bytes, concatenated. With
``g = n + 1``, encrypting ``m`` costs one multiplication besides the obfuscator:
``c = (1 + m*n) * h_s**a mod n**2``. Combining blocks multiplies ciphertexts position
by position modulo ``n**2`` (adding the plaintexts).

Every block read from outside is checked: its length is a whole number of
ciphertexts, and each ciphertext is below ``n**2`` and coprime with ``n`` (a
non-unit is not a ciphertext, and would make decryption meaningless). The coprimality
check costs one ``gcd`` per block, not per ciphertext: the product of units is a
unit, so the block's product modulo ``n`` is tested once and the culprit is only
searched for when that test fails. Problems raise :class:`CiphertextError` (a
``ValueError``) naming the position, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

from federation.crypto.paillier_keys import (
    PaillierPreset,
    PaillierPrivateKey,
    PaillierPublicKey,
    allow_weak_keys,
    default_workers,
    weak_keys_allowed,
)
from federation.crypto.paillier_obfuscation import (
    DEFAULT_POOL_SIZE,
    FixedBaseTable,
    ObfuscatorPool,
    exponent_bits,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "CiphertextError",
    "FixedBaseTable",
    "ObfuscatorPool",
    "PaillierPreset",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "allow_weak_keys",
    "combine_blocks",
    "decrypt_block",
    "default_workers",
    "encrypt_block",
    "exponent_bits",
    "read_block",
    "weak_keys_allowed",
]

Block = bytes | bytearray | memoryview


class CiphertextError(ValueError):
    """A ciphertext in a block is invalid.

    Attributes:
        problem: What is wrong (no values).
        position: Index of the ciphertext within its block.
        block: Index of the block among those combined, when there were several.
    """

    def __init__(self, problem: str, *, position: int, block: int | None = None) -> None:
        where = f"ciphertext {position}" + ("" if block is None else f" of block {block}")
        super().__init__(f"{where} {problem}")
        self.problem = problem
        self.position = position
        self.block = block


def encrypt_block(
    public_key: PaillierPublicKey, plaintexts: Sequence[int], pool: ObfuscatorPool
) -> bytes:
    """Encrypt each plaintext with its own, never reused, obfuscator from ``pool``.

    Args:
        public_key: The analyst's key.
        plaintexts: Integers in ``[0, n)``.
        pool: Obfuscators for ``public_key`` (pooled ones first, the rest computed now).

    Returns:
        The block of ciphertexts.

    Raises:
        ValueError: A plaintext is outside ``[0, n)`` or the pool is for another key.
    """
    if pool.public_key != public_key:
        raise ValueError("the obfuscator pool belongs to a different public key")
    n, n_square, width = public_key.n, public_key.n_square, public_key.ciphertext_size
    for m in plaintexts:
        if not 0 <= m < n:
            raise ValueError("a plaintext lies outside [0, n)")
    obfuscators = pool.take(len(plaintexts))
    return b"".join(
        ((1 + m * n) * r % n_square).to_bytes(width, "big")
        for m, r in zip(plaintexts, obfuscators, strict=True)
    )


def read_block(
    public_key: PaillierPublicKey, block: Block, *, index: int | None = None
) -> list[int]:
    """Decode a block, checking every ciphertext is a unit below ``n**2``.

    Args:
        public_key: The key the block is under.
        block: The encoded ciphertexts.
        index: The block's index, for error messages.

    Raises:
        ValueError: The length is not a whole number of ciphertexts.
        CiphertextError: A ciphertext is not below ``n**2`` or not coprime with ``n``.
    """
    width, n_square = public_key.ciphertext_size, public_key.n_square
    if len(block) % width:
        raise ValueError(f"a block holds whole {width}-byte ciphertexts, got {len(block)} bytes")
    view = memoryview(block)
    values = [gmpy2.mpz.from_bytes(view[i : i + width], "big") for i in range(0, len(view), width)]
    for position, c in enumerate(values):
        if c >= n_square:
            raise CiphertextError("is not below n**2", position=position, block=index)
    bad = _first_non_unit(public_key.n, values)
    if bad is not None:
        raise CiphertextError("is not coprime with n", position=bad, block=index)
    return values


def _first_non_unit(n: int, values: Sequence[int]) -> int | None:
    product = gmpy2.mpz(1)
    for c in values:
        product = product * c % n
    if gmpy2.gcd(product, n) == 1:
        return None
    return next(i for i, c in enumerate(values) if gmpy2.gcd(c, n) != 1)


def _write_block(public_key: PaillierPublicKey, values: Sequence[int]) -> bytes:
    width = public_key.ciphertext_size
    return b"".join(c.to_bytes(width, "big") for c in values)


def combine_blocks(public_key: PaillierPublicKey, blocks: Sequence[Block]) -> bytes:
    """Multiply blocks position by position modulo ``n**2`` (adding their plaintexts).

    Raises:
        ValueError: No blocks, or blocks of different lengths.
        CiphertextError: An invalid ciphertext (``block`` names which block).
    """
    if not blocks:
        raise ValueError("there are no blocks to combine")
    n_square = public_key.n_square
    first = blocks[0]
    if any(len(b) != len(first) for b in blocks):
        raise ValueError("the blocks to combine differ in length")
    width = public_key.ciphertext_size
    if len(first) % width:
        raise ValueError(f"a block holds whole {width}-byte ciphertexts, got {len(first)} bytes")
    acc: list[int] = []
    decoded: list[list[int]] = []
    for index, block in enumerate(blocks):
        view = memoryview(block)
        values = [
            gmpy2.mpz.from_bytes(view[i : i + width], "big") for i in range(0, len(view), width)
        ]
        for position, c in enumerate(values):
            if c >= n_square:
                raise CiphertextError("is not below n**2", position=position, block=index)
        acc = values if index == 0 else [a * c % n_square for a, c in zip(acc, values, strict=True)]
        decoded.append(values)
    bad = _first_non_unit(public_key.n, acc)
    if bad is not None:
        culprit = next(i for i, v in enumerate(decoded) if gmpy2.gcd(v[bad], public_key.n) != 1)
        raise CiphertextError("is not coprime with n", position=bad, block=culprit)
    return _write_block(public_key, acc)


def decrypt_block(
    private_key: PaillierPrivateKey, block: Block, *, workers: int | None = None
) -> list[int]:
    """Check and decrypt a block.

    Args:
        private_key: The analyst's key.
        block: The encoded ciphertexts.
        workers: Threads for the exponentiations (default: every core for blocks of
            8 or more ciphertexts, else 1).

    Raises:
        ValueError: The length is not a whole number of ciphertexts.
        CiphertextError: A ciphertext is not a unit below ``n**2``.
    """
    values = read_block(private_key.public, block)
    if workers is None:
        workers = default_workers() if len(values) >= 8 else 1
    return private_key.decrypt(values, workers=workers)
