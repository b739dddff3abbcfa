"""Checks of incoming SecAgg+ message fields, shared by the node and the coordinator.

Every check raises :class:`~federation.errors.ProtocolError` whose message names
the party and the field and never includes key, share or vector contents. The
checks run on every message field, so each first compares the exact type (one
pointer comparison) and only falls back to the full ``isinstance`` test, whose
verdict it never changes, for other types.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from federation.crypto.keys import AEAD_OVERHEAD, PUBLIC_KEY_SIZE
from federation.crypto.shamir import SHARE_SIZE
from federation.errors import ProtocolError
from federation.protocols.secagg.messages import PublicKeys, Stage, Vector

__all__ = [
    "SEALED_SHARES_SIZE",
    "SHARE_PAIR_SIZE",
    "check_bytes",
    "check_mapping",
    "check_public_keys",
    "check_slot",
    "check_stage",
    "check_vector",
]

SHARE_PAIR_SIZE = 2 * SHARE_SIZE
"""Plaintext of one sealed message: self-mask seed share, then masking-key share."""
SEALED_SHARES_SIZE = SHARE_PAIR_SIZE + AEAD_OVERHEAD
"""Exact size of each ciphertext in a ShareBundle / ShareDelivery."""


def check_stage(party: str, stage: Stage, expected: Stage, action: str) -> None:
    """Raise unless ``stage`` is ``expected``."""
    if stage is not expected:
        raise ProtocolError(
            f"{party} cannot {action} in stage {stage.name}; it expects stage {expected.name}"
        )


def check_slot(value: object, slots: int, what: str) -> int:
    """Return ``value`` if it is an int slot in ``[0, slots)``."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ProtocolError(f"{what} must be an int slot, got {type(value).__name__}")
    if not 0 <= value < slots:
        raise ProtocolError(f"{what} is slot {value}, outside [0, {slots})")
    return value


def check_bytes(value: object, size: int, what: str) -> bytes:
    """Return ``value`` if it is ``bytes`` of exactly ``size`` bytes."""
    if type(value) is not bytes and not isinstance(value, bytes):
        raise ProtocolError(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) != size:
        raise ProtocolError(f"{what} must have {size} bytes, got {len(value)}")
    return value


def check_mapping(value: object, what: str) -> Mapping[object, object]:
    """Return ``value`` if it is a mapping."""
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ProtocolError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def check_public_keys(value: object, what: str) -> PublicKeys:
    """Return ``value`` if it is a :class:`PublicKeys` with two raw X25519 keys, distinct."""
    if type(value) is not PublicKeys and not isinstance(value, PublicKeys):
        raise ProtocolError(f"{what} must be PublicKeys, got {type(value).__name__}")
    check_bytes(value.encryption_key, PUBLIC_KEY_SIZE, f"{what}.encryption_key")
    check_bytes(value.masking_key, PUBLIC_KEY_SIZE, f"{what}.masking_key")
    if value.encryption_key == value.masking_key:
        raise ProtocolError(f"{what} has identical encryption and masking keys")
    return value


def check_vector(value: object, length: int, what: str) -> Vector:
    """Return ``value`` if it is a one-dimensional uint64 numpy array of ``length``."""
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"{what} must be a numpy array, got {type(value).__name__}")
    if value.dtype != np.uint64:
        raise ProtocolError(
            f"{what} must have dtype uint64, got {value.dtype}; encode values as "
            "uint64 (arithmetic is modulo 2**64) before aggregating"
        )
    if value.shape != (length,):
        raise ProtocolError(f"{what} must have shape ({length},), got {value.shape}")
    return value
