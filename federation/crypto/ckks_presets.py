"""CKKS parameter presets (:class:`CkksPreset`) and the prime chain SEAL picks for each
(:func:`primes`).

The presets, their security and their noise bounds are described in
:mod:`federation.crypto.ckks`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import cache

import gmpy2

__all__ = ["CkksPreset", "primes"]

_OVERHEAD = 4096
"""Bytes a serialization may carry beyond its raw coefficients (protobuf and SEAL headers)."""


@dataclass(frozen=True)
class _Params:
    code: int
    degree: int
    bits: tuple[int, ...]


class CkksPreset(enum.Enum):
    """Named CKKS parameter sets at 128-bit security."""

    CKKS_4096_SUM = _Params(1, 4096, (56, 20))
    """Sums: one 56-bit data prime (and a 20-bit key-switching prime). The default."""
    CKKS_4096_WEIGHTED = _Params(2, 4096, (56, 30, 20))
    """Weighted sums: one rescale level (the 30-bit prime) for the plaintext weights."""

    @property
    def code(self) -> int:
        """The preset's byte in encodings."""
        return self.value.code

    @property
    def poly_modulus_degree(self) -> int:
        """The ring degree ``N``."""
        return self.value.degree

    @property
    def coeff_bits(self) -> tuple[int, ...]:
        """Bit sizes of the modulus chain (the last prime is the key-switching one)."""
        return self.value.bits

    @property
    def slots(self) -> int:
        """Values per ciphertext (``N / 2``)."""
        return self.value.degree // 2

    @property
    def data_bits(self) -> int:
        """Bits of the prime left after every rescale: what a result must fit in."""
        return self.value.bits[0]

    @property
    def weighted(self) -> bool:
        """True if ciphertexts can be multiplied by a plaintext weight (one rescale)."""
        return len(self.value.bits) > 2

    @property
    def fresh_noise(self) -> float:
        """Bound on a fresh ciphertext's (and on a rescale's) noise in any slot.

        ``sqrt(N/3) * (3 + 8 sqrt(h)) + 1`` with ``h = 2N/3``: the mod-switch rounding
        bound of CKKS (Cheon et al. 2017, Lemma 2), plus 1 for the key-level
        encryption noise divided by the special prime. Divide by the scale for the
        error in the decrypted value.
        """
        n = self.poly_modulus_degree
        return math.sqrt(n / 3) * (3 + 8 * math.sqrt(2 * n / 3)) + 1

    @property
    def capacity_bits(self) -> int:
        """``scale * |value|`` of any result must stay below ``2**capacity_bits``.

        Three bits below the data prime (room for the noise and the sign), and at
        most 53 so that every decrypted coefficient is an exact float64.
        """
        return min(self.data_bits - 3, 53)

    def max_ciphertext_bytes(self, *, rescaled: bool) -> int:
        """Largest plausible serialized ciphertext (raw coefficients plus headers)."""
        primes = 1 if rescaled or not self.weighted else len(self.coeff_bits) - 1
        return 2 * self.poly_modulus_degree * primes * 8 + _OVERHEAD

    def max_key_bytes(self, *, private: bool) -> int:
        """Largest plausible serialized context of this preset."""
        polys = 3 if private else 2
        return polys * self.poly_modulus_degree * len(self.coeff_bits) * 8 + _OVERHEAD

    @classmethod
    def for_code(cls, code: int) -> CkksPreset:
        """The preset with encoding byte ``code``.

        Raises:
            ValueError: No preset has that code.
        """
        for preset in cls:
            if preset.code == code:
                return preset
        raise ValueError(f"unknown CKKS preset {code}; known: {[p.code for p in cls]}")


def _top_prime(bits: int, degree: int, below: int) -> int:
    """SEAL's choice: the largest prime ``< below`` of ``bits`` bits that is 1 mod 2N."""
    step = 2 * degree
    candidate = below - (below - 1) % step
    if candidate == below:
        candidate -= step
    while candidate.bit_length() == bits:
        if gmpy2.is_prime(candidate, 40):
            return candidate
        candidate -= step
    raise ValueError(f"no {bits}-bit prime for N = {degree}")  # pragma: no cover


@cache
def primes(preset: CkksPreset) -> tuple[int, ...]:
    """The chain's primes, as SEAL's ``CoeffModulus::Create`` picks them."""
    out: list[int] = []
    for bits in preset.coeff_bits:
        below = min([p for p in out if p.bit_length() == bits], default=1 << bits)
        out.append(_top_prime(bits, preset.poly_modulus_degree, below))
    return tuple(out)
