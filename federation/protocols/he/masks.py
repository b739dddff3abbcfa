"""Zero-sum masks: why a coordinator cannot get one node's values decrypted.

Before encrypting, every node adds a mask to its values; the masks of all the
nodes in a job sum to zero modulo ``2**ring_bits``. Node ``i`` and node ``j``
agree a secret with X25519 (each node's session key is in the directory), derive
a mask key with HKDF (label ``zero-sum-mask``, the job id and both slots) and
expand it with AES-CTR; the lower slot adds that mask, the higher slot subtracts
it. Each single ciphertext therefore decrypts to values hidden by masks the
analyst cannot compute (it would need a node's X25519 secret), and only the
product of *all* the job's ciphertexts decrypts to the plain sum. A coordinator
that hands the analyst one node's ciphertext, or the sum of a subset, hands it
noise. The masks need no extra round: they come from keys already published.

The price: the sum is only meaningful when every node of the job uploaded; a job
that loses a node before upload fails (nothing is decrypted or released).

With identities (mutual TLS), each node signs its session key with its certificate's
key (:func:`mask_key_message`) when it registers, and every node checks its peers'
signatures against their certificates before deriving masks, so the coordinator
cannot substitute a peer's key (and learn that pair's mask).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from federation.crypto.keys import X25519KeyPair
from federation.crypto.prg import Label, MaskApplier, derive_key
from federation.errors import ProtocolError
from federation.protocols.he.spec import SumSpec

__all__ = ["mask_key_message", "mask_values", "ring_mask"]

_MASK_KEY_LABEL = b"federation/he/zero-sum-mask-key/v1\x00"


def mask_key_message(public_key: bytes) -> bytes:
    """What a node signs to vouch for its zero-sum mask session key."""
    return _MASK_KEY_LABEL + public_key


Ring = npt.NDArray[np.uint64]


def ring_mask(spec: SumSpec) -> np.uint64:
    """The bit mask that reduces a uint64 modulo ``2**spec.ring_bits``."""
    return np.uint64((1 << spec.ring_bits) - 1)


def mask_values(
    values: npt.NDArray[np.int64] | Ring,
    spec: SumSpec,
    slot: int,
    keys: X25519KeyPair,
    peers: Mapping[int, bytes],
) -> Ring:
    """Return ``(values + this node's zero-sum mask) mod 2**ring_bits`` as uint64.

    Args:
        values: The node's values (int64 or their uint64 two's-complement form).
        spec: The sum being computed.
        slot: This node's slot in the job.
        keys: This node's X25519 session key pair.
        peers: Every *other* participant's slot -> X25519 public key.

    Raises:
        ProtocolError: Wrong length, this node listed among its peers, or a peer key
            that is not a valid X25519 public key (the slot is named, the key is not).
    """
    if values.shape != (spec.length,):
        raise ProtocolError(f"expected {spec.length} values, got shape {values.shape}")
    if slot in peers:
        raise ProtocolError(f"slot {slot} is listed among its own peers")
    add: list[bytes] = []
    subtract: list[bytes] = []
    for peer in sorted(peers):
        try:
            secret = keys.exchange(peers[peer])
        except (TypeError, ValueError):
            raise ProtocolError(
                f"the public key of slot {peer} is not a valid X25519 key"
            ) from None
        low, high = (slot, peer) if slot < peer else (peer, slot)
        key = derive_key(secret, Label.ZERO_SUM_MASK, spec.job_id, low, high)
        (add if slot < peer else subtract).append(key)
    out = np.ascontiguousarray(values).view(np.uint64).copy()
    if add or subtract:
        MaskApplier(spec.length).apply(out, add, subtract)
    np.bitwise_and(out, ring_mask(spec), out=out)
    return out
