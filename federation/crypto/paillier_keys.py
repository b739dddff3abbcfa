"""Paillier key pairs: presets, versioned encodings, validation and CRT decryption.

The scheme is Paillier's with ``g = n + 1`` (so ``g**m = 1 + m*n mod n**2``). Keys
come in named presets (:class:`PaillierPreset`); the only other size, 1024 bits, is
for tests and needs an explicit, process-wide opt-in (:func:`allow_weak_keys`),
like opendp's ``enable_features``.

Encodings (big-endian, no pickle anywhere)::

    public key   b"FPPK" || u8 version=1 || u16 bits || n            (bits/8 bytes)
    private key  b"FPSK" || u8 version=1 || u16 bits || p || q       (bits/16 bytes each)

A public key's fingerprint is the SHA-256 of its encoding (hex). The private key is
a :class:`PaillierPrivateKey`: it does not print its factors, refuses to be pickled
or copied, and exports only through ``export_private(unprotected=True)``.

Decryption uses the Chinese remainder theorem: ``m_p = L_p(c**(p-1) mod p**2) * h_p
mod p`` and likewise for ``q`` (``L_p(x) = (x - 1) / p``, ``h_p = L_p(g**(p-1) mod
p**2)**-1 mod p``), then ``m = CRT(m_p, m_q)``. The two exponentiations per
ciphertext run through ``gmpy2.powmod_base_list``, which releases the GIL, so a
thread pool spreads a bundle over the cores without any process, pickling or copy
of the key.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import gmpy2
import phe

from federation.crypto.secret import SecretHolder
from federation.errors import WeakParametersError

__all__ = [
    "PaillierPreset",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "allow_weak_keys",
    "weak_keys_allowed",
]

PUBLIC_MAGIC = b"FPPK"
PRIVATE_MAGIC = b"FPSK"
KEY_VERSION = 1
_KEY_HEADER = struct.Struct(">4sBH")
_SMALL_PRIMES = int(gmpy2.primorial(1 << 14))
"""Product of the primes below 2**14: a valid modulus has none of them as a factor."""


class PaillierPreset(enum.Enum):
    """Named Paillier key sizes (the value is the bit length of ``n``)."""

    PAILLIER_2048 = 2048
    """112-bit security (NIST SP 800-57 factoring equivalent); the default."""
    PAILLIER_3072 = 3072
    """128-bit security."""
    TEST_ONLY_1024 = 1024
    """About 80-bit security: tests only, behind :func:`allow_weak_keys`."""

    @property
    def bits(self) -> int:
        """Bit length of the modulus ``n``."""
        value: int = self.value
        return value

    @property
    def weak(self) -> bool:
        """True for the test-only preset."""
        return self is PaillierPreset.TEST_ONLY_1024

    @classmethod
    def for_bits(cls, bits: int) -> PaillierPreset:
        """The preset whose modulus has ``bits`` bits (weak ones only when opted in).

        Raises:
            ValueError: No preset has that size.
            WeakParametersError: The size is the test-only one and weak keys are not enabled.
        """
        for preset in cls:
            if preset.bits == bits:
                preset.check_allowed()
                return preset
        sizes = ", ".join(str(p.bits) for p in cls if not p.weak)
        raise ValueError(f"a Paillier modulus must have one of {sizes} bits, got {bits}")

    def check_allowed(self) -> None:
        """Raise :class:`WeakParametersError` for a weak preset unless opted in."""
        if self.weak and not _weak_keys[0]:
            raise WeakParametersError(
                f"{self.bits}-bit Paillier keys ({self.name}) are weak and for tests only; "
                "enable them explicitly with federation.protocols.he.paillier."
                "allow_weak_keys() or `with weak_keys_allowed():`, never in production "
                f"(use {PaillierPreset.PAILLIER_2048.name} or {PaillierPreset.PAILLIER_3072.name})"
            )


_weak_keys = [False]


def allow_weak_keys(allowed: bool = True) -> None:
    """Opt this process in (or back out) of the test-only weak key preset."""
    _weak_keys[0] = bool(allowed)


@contextmanager
def weak_keys_allowed() -> Iterator[None]:
    """Allow the test-only weak preset inside a ``with`` block (restores the previous state)."""
    before = _weak_keys[0]
    _weak_keys[0] = True
    try:
        yield
    finally:
        _weak_keys[0] = before


def _read_header(data: bytes, magic: bytes, what: str) -> int:
    if not isinstance(data, bytes):
        raise TypeError(f"a Paillier {what} must be bytes, got {type(data).__name__}")
    if len(data) < _KEY_HEADER.size:
        raise ValueError(
            f"a Paillier {what} has at least {_KEY_HEADER.size} bytes, got {len(data)}"
        )
    found, version, bits = _KEY_HEADER.unpack_from(data)
    if found != magic:
        raise ValueError(f"not an encoded Paillier {what} (wrong magic)")
    if version != KEY_VERSION:
        raise ValueError(f"Paillier {what} encoding version {version}; expected {KEY_VERSION}")
    return int(bits)


@dataclass(frozen=True)
class PaillierPublicKey:
    """A validated Paillier public key ``n`` (``g = n + 1`` implicitly).

    Attributes:
        n: The modulus.
        preset: The preset it belongs to.
        encoding: Its versioned encoding (what travels).
        fingerprint: Hex SHA-256 of ``encoding``.
    """

    n: int
    preset: PaillierPreset
    encoding: bytes = field(repr=False)
    fingerprint: str
    n_square: int = field(repr=False, compare=False)

    @classmethod
    def from_n(cls, n: int) -> PaillierPublicKey:
        """Validate ``n`` and build its key.

        Raises:
            ValueError: ``n`` is not a plausible Paillier modulus (sign, size, parity,
                square, small factor, prime).
            WeakParametersError: ``n`` has the test-only size and weak keys are not enabled.
        """
        if n <= 0:
            raise ValueError("a Paillier modulus must be a positive integer")
        bits = int(n).bit_length()
        preset = PaillierPreset.for_bits(bits)
        mpz_n = gmpy2.mpz(n)
        if mpz_n % 2 == 0:
            raise ValueError("a Paillier modulus must be odd")
        if gmpy2.gcd(mpz_n, _SMALL_PRIMES) != 1:
            raise ValueError("the Paillier modulus has a small prime factor")
        if gmpy2.is_square(mpz_n):
            raise ValueError("the Paillier modulus is a perfect square")
        if gmpy2.is_prime(mpz_n, 10):
            raise ValueError("the Paillier modulus is prime, not a product of two primes")
        encoding = _KEY_HEADER.pack(PUBLIC_MAGIC, KEY_VERSION, bits) + int(n).to_bytes(
            bits // 8, "big"
        )
        return cls(
            n=mpz_n,
            preset=preset,
            encoding=encoding,
            fingerprint=hashlib.sha256(encoding).hexdigest(),
            n_square=mpz_n * mpz_n,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        """Decode and validate an encoded public key.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: Wrong magic, version or length, or an implausible modulus.
            WeakParametersError: A test-only size without the opt-in.
        """
        bits = _read_header(data, PUBLIC_MAGIC, "public key")
        if bits % 8 or len(data) != _KEY_HEADER.size + bits // 8:
            raise ValueError(
                f"a {bits}-bit Paillier public key has {_KEY_HEADER.size + bits // 8} bytes, "
                f"got {len(data)}"
            )
        n = int.from_bytes(data[_KEY_HEADER.size :], "big")
        if n.bit_length() != bits:
            raise ValueError(f"the modulus does not have the {bits} bits its header declares")
        return cls.from_n(n)

    @property
    def bits(self) -> int:
        """Bit length of ``n``."""
        return self.preset.bits

    @property
    def ciphertext_size(self) -> int:
        """Bytes of one fixed-width ciphertext (``2 * bits / 8``)."""
        return 2 * self.bits // 8


class PaillierPrivateKey(SecretHolder):
    """The factors ``p``, ``q`` of a public key, with the CRT constants for decryption.

    >>> with weak_keys_allowed():
    ...     key = PaillierPrivateKey.generate(PaillierPreset.TEST_ONLY_1024)
    >>> key.decrypt([(1 + 41 * key.public.n) % key.public.n_square]) == [41]
    True
    """

    __slots__ = ("_hp", "_hq", "_p", "_p2", "_q", "_q2", "_q_inv_p", "public")

    def __init__(self, p: int, q: int) -> None:
        """Validate the factors and precompute the CRT constants.

        Raises:
            ValueError: ``p``, ``q`` are not two distinct primes of equal size whose
                product is a valid modulus.
            WeakParametersError: The product has the test-only size without the opt-in.
        """
        p, q = gmpy2.mpz(p), gmpy2.mpz(q)
        if p == q or not (gmpy2.is_prime(p, 25) and gmpy2.is_prime(q, 25)):
            raise ValueError("a Paillier private key needs two distinct primes")
        if p.bit_length() != q.bit_length():
            raise ValueError("the two Paillier primes must have the same bit length")
        self.public = PaillierPublicKey.from_n(p * q)
        if p.bit_length() * 2 != self.public.bits:
            raise ValueError("the two Paillier primes must each have half the modulus' bits")
        self._p, self._q = p, q
        self._p2, self._q2 = p * p, q * q
        g = self.public.n + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, p - 1, self._p2) - 1) // p, p)
        self._hq = gmpy2.invert((gmpy2.powmod(g, q - 1, self._q2) - 1) // q, q)
        self._q_inv_p = gmpy2.invert(q, p)

    @classmethod
    def generate(cls, preset: PaillierPreset = PaillierPreset.PAILLIER_2048) -> PaillierPrivateKey:
        """A fresh key pair from ``phe`` (primes from the OS CSPRNG, tested with gmpy2).

        Raises:
            WeakParametersError: ``preset`` is the test-only one and weak keys are not enabled.
        """
        if not isinstance(preset, PaillierPreset):
            raise TypeError(f"expected a PaillierPreset, got {type(preset).__name__}")
        preset.check_allowed()
        public, private = phe.generate_paillier_keypair(n_length=preset.bits)
        key = cls(private.p, private.q)
        if key.public.n != public.n:  # pragma: no cover - phe's own invariant
            raise ValueError("phe returned inconsistent key material")
        return key

    @classmethod
    def from_private_bytes(cls, data: bytes) -> PaillierPrivateKey:
        """Rebuild a key from :meth:`export_private` output.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: Malformed encoding or invalid factors.
            WeakParametersError: A test-only size without the opt-in.
        """
        bits = _read_header(data, PRIVATE_MAGIC, "private key")
        half = bits // 16
        if bits % 16 or len(data) != _KEY_HEADER.size + 2 * half:
            raise ValueError("the Paillier private key encoding has the wrong length")
        body = data[_KEY_HEADER.size :]
        key = cls(int.from_bytes(body[:half], "big"), int.from_bytes(body[half:], "big"))
        if key.public.bits != bits:
            raise ValueError("the Paillier private key does not have the size its header declares")
        return key

    def export_private(self, *, unprotected: bool) -> bytes:
        """The encoded factors; ``unprotected=True`` acknowledges they leave this object.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export a private key deliberately")
        half = self.public.bits // 16
        return b"".join(
            [
                _KEY_HEADER.pack(PRIVATE_MAGIC, KEY_VERSION, self.public.bits),
                int(self._p).to_bytes(half, "big"),
                int(self._q).to_bytes(half, "big"),
            ]
        )

    def decrypt(self, ciphertexts: Sequence[int], *, workers: int = 1) -> list[int]:
        """Decrypt ciphertexts (already checked to be units below ``n**2``).

        Args:
            ciphertexts: The ciphertexts.
            workers: Threads to spread the exponentiations over (1: this thread only).

        Returns:
            The plaintexts, in ``[0, n)``.
        """
        if not ciphertexts:
            return []
        p, q = self._p, self._q
        workers = max(1, min(workers, len(ciphertexts)))
        if workers == 1:
            xp = gmpy2.powmod_base_list(ciphertexts, p - 1, self._p2)
            xq = gmpy2.powmod_base_list(ciphertexts, q - 1, self._q2)
        else:
            step = -(-len(ciphertexts) // workers)
            chunks = [ciphertexts[i : i + step] for i in range(0, len(ciphertexts), step)]
            with ThreadPoolExecutor(workers, thread_name_prefix="paillier-decrypt") as pool:
                fp = [pool.submit(gmpy2.powmod_base_list, c, p - 1, self._p2) for c in chunks]
                fq = [pool.submit(gmpy2.powmod_base_list, c, q - 1, self._q2) for c in chunks]
                xp = [x for f in fp for x in f.result()]
                xq = [x for f in fq for x in f.result()]
        hp, hq, q_inv_p = self._hp, self._hq, self._q_inv_p
        out: list[int] = []
        for a, b in zip(xp, xq, strict=True):
            mp = (a - 1) // p * hp % p
            mq = (b - 1) // q * hq % q
            out.append(mq + q * ((mp - mq) * q_inv_p % p))
        return out

    def __repr__(self) -> str:
        return (
            f"PaillierPrivateKey(preset={self.public.preset.name}, "
            f"fingerprint={self.public.fingerprint[:16]}..., factors=<redacted>)"
        )


def default_workers() -> int:
    """Threads a large decryption uses: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
