"""What signed SecAgg+ runs sign (pure: byte strings, no keys).

Every signed message starts with a label naming its round, then the job id and the
hash of the exact computation, each length-prefixed (u32, big-endian)::

    keys:      "federation/secagg+/v1/keys"      job  fingerprint  u32(slot)  c_pk  s_pk
    survivors: "federation/secagg+/v1/survivors" job  fingerprint  u32(slot)...

so a signature from another job, another round, or over another computation (a
different query sent to one node) never verifies where this one is expected.
"""

from __future__ import annotations

from collections.abc import Iterable

from federation.protocols.secagg.messages import PublicKeys, SecAggParams

__all__ = ["MAX_SIGNATURE_BYTES", "keys_message", "survivors_message"]

MAX_SIGNATURE_BYTES = 160
"""Longer than any ECDSA P-256 (DER, at most 72 bytes) or Ed25519 (64) signature."""


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _context(label: str, params: SecAggParams) -> bytes:
    return _frame(
        f"federation/secagg+/v1/{label}".encode(),
        params.job_id.encode(),
        params.fingerprint.encode(),
    )


def keys_message(params: SecAggParams, slot: int, keys: PublicKeys) -> bytes:
    """What slot ``slot`` signs when it advertises ``keys``."""
    return _context("keys", params) + _frame(
        slot.to_bytes(4, "big"), keys.encryption_key, keys.masking_key
    )


def survivors_message(params: SecAggParams, survivors: Iterable[int]) -> bytes:
    """What every survivor signs in the consistency round."""
    ordered = sorted(survivors)
    return _context("survivors", params) + _frame(b"".join(u.to_bytes(4, "big") for u in ordered))
