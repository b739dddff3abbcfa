"""Ed25519 signatures (for signed tree heads of the audit log).

The private key lives in :class:`Ed25519Signer`, which redacts its ``repr`` and
refuses to be pickled; it exports only through
``export_private_bytes(unprotected=True)``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from federation.crypto.secret import SecretHolder

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "Ed25519Signer", "verify_signature"]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class Ed25519Signer(SecretHolder):
    """An Ed25519 key pair that signs."""

    __slots__ = ("_key", "public_bytes")
    _export = "export_private_bytes(unprotected=True)"

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_bytes: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        """The 32-byte public key."""

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A fresh key pair from the OS CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> Ed25519Signer:
        """Load a 32-byte raw private key.

        Raises:
            ValueError: Not 32 bytes.
        """
        if len(data) != 32:
            raise ValueError(f"an Ed25519 private key has 32 bytes, got {len(data)}")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    def export_private_bytes(self, *, unprotected: bool) -> bytes:
        """The raw private key; ``unprotected=True`` acknowledges it leaves this object."""
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export a private key deliberately")
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public={self.public_bytes.hex()[:16]}..., private=<redacted>)"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
