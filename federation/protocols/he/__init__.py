"""Homomorphic sums: each node encrypts once, the coordinator adds ciphertexts.

The analyst holds the only secret key; nodes and the coordinator see public keys
and ciphertexts. Values are first masked with zero-sum masks
(:mod:`federation.protocols.he.masks`) so that no single node's ciphertext ever
decrypts to that node's values, then encrypted by a scheme implementing
:class:`~federation.protocols.he.scheme.HEScheme`.
"""

from federation.protocols.he.masks import mask_values, ring_mask
from federation.protocols.he.scheme import HEScheme, HESecretKey
from federation.protocols.he.spec import MAX_RING_BITS, SumSpec

__all__ = ["MAX_RING_BITS", "HEScheme", "HESecretKey", "SumSpec", "mask_values", "ring_mask"]
