"""Paillier obfuscators ``r**n mod n**2``, made cheap with Damgård-Jurik-Nielsen short exponents.

A Paillier ciphertext is ``(1 + m*n) * r**n mod n**2`` for a fresh random unit
``r``; the obfuscator ``r**n`` dominates the cost (a full-size exponent modulo
``n**2``). Following Damgård, Jurik and Nielsen ("A generalization of Paillier's
public-key system with applications to electronic voting", IJIS 9(6), 2010), and
Intel's Paillier Crypto Library (``ipcl::PublicKey::enableDJN``, random exponents of
``bits/2`` bits), the node draws once per public key a random unit ``x`` and sets::

    h   = -x**2 mod n
    h_s = h**n mod n**2

and each obfuscator is ``h_s**a mod n**2`` for a fresh ``a`` of
:func:`exponent_bits` ``= ceil(bits(n) / 2)`` bits (1024 for 2048-bit keys) drawn
with :mod:`secrets`. ``h_s**a = (h**a)**n`` is still an ``n``-th power of a unit, so
decryption is unchanged and the ciphertext hides ``m`` under the decisional composite
residuosity assumption, *provided* that ``h**a`` for a short ``a`` cannot be told
apart from a uniform element of the subgroup ``<h>``. That is the DJN assumption:
DJN argue it from the hardness of factoring, through the result of Håstad, Schrift
and Shamir that exponentiation modulo a composite hides the upper half of the
exponent's bits (so an exponent of half the modulus' size is as good as a full one
unless ``n`` can be factored). It is an assumption beyond plain DCRA, widely used in
deployed systems (IPCL, FATE/HEU's DJN options); full-size ``r`` would cost about
twice as much per obfuscator without the table below and 8x with it.

Because ``h_s`` is fixed per key, ``h_s**a`` uses a fixed-base table of
``h_s**(d * 256**i)`` for every byte position ``i`` and byte value ``d``
(Brickell-Gordon-McCurley-Wilson windowing with 8-bit windows): one modular
multiplication per nonzero byte of ``a`` (about 128 for 2048-bit keys instead of
~1200 for a square-and-multiply), at the price of a table of ``128 * 255``
residues (about 18 MB for 2048-bit keys, 40 MB for 3072) built once per key
(about 0.4 s at 2048 bits on the benchmark machine).

:class:`ObfuscatorPool` keeps obfuscators computed ahead of time (e.g. in a
background thread while the node is idle). Each one is removed from the pool when
taken and used for exactly one ciphertext; when the pool runs dry, obfuscators are
computed on demand. Anyone holding an obfuscator can strip it from the ciphertext
that used it, so the pool is node-local secret state: it never leaves the process
and is never written anywhere.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections import deque

import gmpy2

from federation.crypto.paillier_keys import PaillierPublicKey

__all__ = ["DEFAULT_POOL_SIZE", "FixedBaseTable", "ObfuscatorPool", "exponent_bits"]

WINDOW_BITS = 8
"""Bits per table window: one table row per byte of the exponent."""
DEFAULT_POOL_SIZE = 4096
"""Obfuscators a pool holds by default (2 MiB at 2048 bits; 200 000 packed values)."""


def exponent_bits(modulus_bits: int) -> int:
    """Bits of the DJN exponent ``a`` for a modulus of ``modulus_bits`` bits: ``ceil(k / 2)``."""
    return -(-modulus_bits // 2)


def _releasing_gil() -> contextlib.AbstractContextManager[object]:
    """A gmpy2 context (this thread's, plus) releasing the GIL in big-number arithmetic.

    Obfuscators are computed while the node does other work (a background fill, gRPC
    threads): with the GIL held through every 4096-bit multiplication those threads,
    and :meth:`ObfuscatorPool.stop_filling`, could wait for hundreds of milliseconds.
    """
    manager: contextlib.AbstractContextManager[object] = gmpy2.context(
        gmpy2.get_context(), allow_release_gil=True
    )
    return manager


def _random_unit(n: int) -> int:
    while True:
        x: int = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            return x


class FixedBaseTable:
    """``h_s**a mod n**2`` for DJN exponents ``a``, by an 8-bit fixed-base window table."""

    __slots__ = ("_bytes", "_n_square", "_rows")

    def __init__(self, public_key: PaillierPublicKey, base: int | None = None) -> None:
        """Build the table for ``base`` (default: a fresh ``h_s`` from a random unit ``x``).

        Args:
            public_key: The key whose ``n**2`` the table works modulo.
            base: The fixed base; tests pass one to check the table against ``powmod``.
        """
        n, n_square = public_key.n, public_key.n_square
        if base is None:
            x = _random_unit(n)
            base = gmpy2.powmod(n - x * x % n, n, n_square)
        self._n_square = n_square
        self._bytes = -(-exponent_bits(public_key.bits) // WINDOW_BITS)
        rows: list[list[int]] = []
        step = gmpy2.mpz(base)
        with _releasing_gil():
            for _ in range(self._bytes):
                row = [gmpy2.mpz(1), step]
                current = step
                for _ in range(2, 1 << WINDOW_BITS):
                    current = current * step % n_square
                    row.append(current)
                rows.append(row)
                step = current * step % n_square
        self._rows = rows

    @property
    def max_exponent_bits(self) -> int:
        """Largest exponent size the table covers."""
        return self._bytes * WINDOW_BITS

    def power(self, exponent: int) -> int:
        """``base**exponent mod n**2`` for ``0 <= exponent < 2**max_exponent_bits``.

        Raises:
            ValueError: The exponent is negative or too large for the table.
        """
        if exponent < 0 or exponent.bit_length() > self.max_exponent_bits:
            raise ValueError("the exponent does not fit the fixed-base table")
        n_square = self._n_square
        acc = None
        with _releasing_gil():
            digits = exponent.to_bytes(self._bytes, "little")
            for row, digit in zip(self._rows, digits, strict=True):
                if digit:
                    acc = row[digit] if acc is None else acc * row[digit] % n_square
        result: int = gmpy2.mpz(1) if acc is None else acc
        return result


class ObfuscatorPool:
    """Precomputed DJN obfuscators for one public key, each handed out exactly once.

    Thread-safe: :meth:`fill` (e.g. on a background thread) and :meth:`take` may run
    concurrently; an obfuscator leaves the pool under a lock and the pool keeps no
    reference to it.
    """

    def __init__(self, public_key: PaillierPublicKey, size: int = DEFAULT_POOL_SIZE) -> None:
        """Create an empty pool; nothing is computed until :meth:`fill` or :meth:`take`.

        Args:
            public_key: The key (``n``) the obfuscators are for.
            size: The most obfuscators the pool holds.

        Raises:
            ValueError: ``size`` is negative.
        """
        if size < 0:
            raise ValueError(f"a pool size cannot be negative, got {size}")
        self.public_key = public_key
        self.size = size
        self._bits = exponent_bits(public_key.bits)
        self._ready: deque[int] = deque()
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()
        self._table: FixedBaseTable | None = None
        self._generation = 0
        """Bumped by :meth:`stop_filling`; a fill runs while it sees the value it started with."""

    @property
    def available(self) -> int:
        """Obfuscators ready right now."""
        return len(self._ready)

    def table(self) -> FixedBaseTable:
        """The fixed-base table (built on first use, once)."""
        with self._table_lock:
            if self._table is None:
                self._table = FixedBaseTable(self.public_key)
            return self._table

    def fresh(self) -> int:
        """Compute one new obfuscator ``h_s**a mod n**2`` with a fresh random ``a``."""
        return self.table().power(secrets.randbits(self._bits))

    def fill(self, count: int | None = None) -> int:
        """Compute obfuscators until the pool holds ``count`` more or is full.

        Args:
            count: How many to add at most (default: up to ``size``).

        Returns:
            How many were added (fewer if :meth:`stop_filling` was called meanwhile).
        """
        return self._fill(count, self._generation)

    def _fill(self, count: int | None, generation: int) -> int:
        wanted = self.size - self.available if count is None else count
        added = 0
        while added < wanted and self._generation == generation:
            if self.available >= self.size:
                break
            value = self.fresh()
            with self._lock:
                if len(self._ready) >= self.size:
                    break
                self._ready.append(value)
            added += 1
        return added

    def fill_in_background(self, count: int | None = None) -> threading.Thread:
        """Start :meth:`fill` on a daemon thread and return the thread.

        A :meth:`stop_filling` call made after this returns stops that fill, even if
        the thread has not started computing yet.
        """
        thread = threading.Thread(
            target=self._fill,
            args=(count, self._generation),
            name="paillier-obfuscators",
            daemon=True,
        )
        thread.start()
        return thread

    def stop_filling(self) -> None:
        """Make every :meth:`fill` started before this call return after its current obfuscator."""
        with self._lock:
            self._generation += 1

    def take(self, count: int) -> list[int]:
        """Remove and return ``count`` obfuscators: pooled ones first, the rest computed now.

        Raises:
            ValueError: ``count`` is negative.
        """
        if count < 0:
            raise ValueError(f"cannot take a negative number of obfuscators, got {count}")
        with self._lock:
            taken = min(count, len(self._ready))
            out = [self._ready.popleft() for _ in range(taken)]
        out.extend(self.fresh() for _ in range(count - taken))
        return out

    def clear(self) -> None:
        """Drop every pooled obfuscator (e.g. when the key is retired)."""
        with self._lock:
            self._ready.clear()

    def __repr__(self) -> str:
        return (
            f"ObfuscatorPool(key={self.public_key.fingerprint[:16]}..., "
            f"available={self.available}, size={self.size})"
        )
