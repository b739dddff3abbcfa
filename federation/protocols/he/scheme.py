"""The interface every additively homomorphic scheme implements.

Roles: the *analyst* generates a key pair and sends only the public key with the
query; *nodes* encrypt once; the *coordinator* combines ciphertexts without any
secret; the analyst decrypts the combined ciphertext. Ciphertexts travel as bytes
with an explicit, versioned encoding; a scheme rejects malformed, truncated or
wrong-key input with :class:`~federation.errors.ProtocolError` naming the problem
(never the bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from federation.protocols.he.spec import SumSpec

__all__ = ["HEScheme", "HESecretKey"]

Ring = npt.NDArray[np.uint64]


class HESecretKey(Protocol):
    """The analyst's key pair (never leaves the analyst's process)."""

    def public_bytes(self) -> bytes:
        """The public key, serialized (what travels with the query)."""

    def decrypt_sum(self, aggregate: bytes, spec: SumSpec) -> Ring:
        """Decrypt a combined ciphertext: the per-position sums mod ``2**spec.ring_bits``."""


class HEScheme(Protocol):
    """Node and coordinator side of a scheme (public key only)."""

    name: str

    def check_public_key(self, public_key: bytes) -> str:
        """Validate a serialized public key; returns its fingerprint (hex)."""

    def encrypt(self, public_key: bytes, values: Ring, spec: SumSpec) -> bytes:
        """Encrypt one node's values (each below ``2**spec.ring_bits``)."""

    def aggregate(self, public_key: bytes, ciphertexts: Sequence[bytes], spec: SumSpec) -> bytes:
        """Combine the nodes' ciphertexts into one ciphertext of their sum."""

    def prepare(self, public_key: bytes, spec: SumSpec) -> None:
        """Precompute, off the critical path, what the next encryption like ``spec`` needs.

        A node calls it after uploading, so that its next job under the same key
        finds the work done (e.g. Paillier obfuscators). Never blocks for long.
        """
