"""What an encrypted sum carries: public parameters, identical at every party."""

from __future__ import annotations

import math
from dataclasses import dataclass

from federation.errors import ProtocolError

__all__ = ["MAX_RING_BITS", "SumSpec"]

MAX_RING_BITS = 64
"""Values and sums live in Z_{2**ring_bits}, at most the width of a uint64."""


@dataclass(frozen=True)
class SumSpec:
    """A homomorphic sum of ``length`` values from at most ``parties`` nodes.

    Each node contributes ``length`` unsigned integers below ``2**ring_bits`` (its
    values plus its zero-sum mask, reduced mod ``2**ring_bits``). A scheme must
    return, for every position, the exact sum over the nodes reduced mod
    ``2**ring_bits``; it may rely on every per-node value being below
    ``2**ring_bits`` and on at most ``parties`` contributions, so a plain (unreduced)
    sum stays below ``2**(ring_bits + party_bits)``.

    Attributes:
        job_id: The job; bound into key derivations and ciphertext headers.
        length: Values per node.
        ring_bits: Width of the ring the sum is taken in.
        parties: Largest number of contributions summed.
    """

    job_id: str
    length: int
    ring_bits: int
    parties: int

    def __post_init__(self) -> None:
        if not self.job_id:
            raise ProtocolError("a sum spec needs a job id")
        if self.length < 1:
            raise ProtocolError(f"a sum spec needs at least one value, got {self.length}")
        if not 1 <= self.ring_bits <= MAX_RING_BITS:
            raise ProtocolError(f"ring_bits must lie in [1, {MAX_RING_BITS}], got {self.ring_bits}")
        if self.parties < 1:
            raise ProtocolError(f"a sum needs at least one party, got {self.parties}")

    @property
    def party_bits(self) -> int:
        """Bits of headroom the unreduced sum of ``parties`` values needs."""
        return max(1, math.ceil(math.log2(self.parties)))

    @property
    def sum_bits(self) -> int:
        """Width of an unreduced slot sum: ``ring_bits + party_bits``."""
        return self.ring_bits + self.party_bits

    @classmethod
    def for_signed_values(cls, job_id: str, length: int, value_bits: int, parties: int) -> SumSpec:
        """The spec for signed values ``|v| < 2**(value_bits - 1)`` whose sum must be exact.

        The ring is just wide enough that the true sum of ``parties`` such values
        (``|sum| < parties * 2**(value_bits - 1)``) is recovered from its residue.
        """
        headroom = max(1, math.ceil(math.log2(max(parties, 2))))
        return cls(job_id, length, value_bits + headroom, parties)
