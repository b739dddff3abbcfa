"""X25519 key agreement, secret containers, and AEAD transport of Shamir shares.

Secret material lives in :class:`X25519KeyPair` and :class:`SecretBytes`, which
cannot be printed or pickled by accident: ``repr`` redacts, pickling raises and
names the deliberate export (``export_private_bytes(unprotected=True)`` /
``export(unprotected=True)``).

Shares travel node -> coordinator -> node sealed with AES-256-GCM under a key
(:func:`transport_key`) derived with HKDF from the X25519 secret of the two nodes'
encryption keys, label ``share-transport`` and context ``(sender, recipient)`` (so
each direction has its own key). The associated data binds job id, sender and
recipient; the 12-byte nonce is random and precedes the ciphertext:
``nonce || ciphertext || tag``.
"""

from __future__ import annotations

import secrets
import struct
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from federation.crypto.prg import KEY_SIZE, Label, derive_key, derive_keys
from federation.crypto.secret import SecretHolder

__all__ = [
    "AEAD_OVERHEAD",
    "MAX_PLAINTEXT_SIZE",
    "NONCE_SIZE",
    "PRIVATE_KEY_SIZE",
    "PUBLIC_KEY_SIZE",
    "SecretBytes",
    "X25519KeyPair",
    "open_sealed",
    "seal",
    "transport_associated_data",
    "transport_key",
    "transport_keys",
]

PUBLIC_KEY_SIZE = 32
PRIVATE_KEY_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16
AEAD_OVERHEAD = NONCE_SIZE + _TAG_SIZE
"""Bytes a sealed message has beyond its plaintext."""
MAX_PLAINTEXT_SIZE = 1 << 16
"""Largest plaintext :func:`seal` accepts (share pairs are 140 bytes)."""
_U32 = struct.Struct(">I")
_U32_PAIR = struct.Struct(">II")


def _check_public_key(public_key: bytes) -> None:
    if type(public_key) is not bytes and not isinstance(public_key, bytes):
        raise TypeError(f"public key must be bytes, got {type(public_key).__name__}")
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"public key must have {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")


class SecretBytes(SecretHolder):
    """A secret byte string (e.g. a self-mask seed) that does not print or pickle.

    >>> SecretBytes.generate()
    SecretBytes(<32 bytes redacted>)
    """

    __slots__ = ("_value",)
    _export = "export(unprotected=True)"

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"secret must be bytes, got {type(value).__name__}")
        self._value = value

    @classmethod
    def generate(cls, size: int = 32) -> SecretBytes:
        """Return ``size`` fresh random bytes from the operating system's CSPRNG."""
        if not isinstance(size, int) or size < 16:
            raise ValueError("a generated secret must have at least 16 bytes")
        return cls(secrets.token_bytes(size))

    def export(self, *, unprotected: bool) -> bytes:
        """Return the secret bytes; ``unprotected=True`` acknowledges they leave this wrapper.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export secret bytes deliberately")
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self._value)} bytes redacted>)"


class X25519KeyPair(SecretHolder):
    """An X25519 key pair (RFC 7748) for key agreement.

    >>> a, b = X25519KeyPair.generate(), X25519KeyPair.generate()
    >>> a.exchange(b.public_bytes) == b.exchange(a.public_bytes)
    True
    """

    __slots__ = ("_private", "_public")
    _export = "export_private_bytes(unprotected=True)"

    def __init__(self, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise TypeError(f"expected an X25519PrivateKey, got {type(private_key).__name__}")
        self._private = private_key
        self._public = private_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> X25519KeyPair:
        """Return a fresh key pair (the private key comes from the OS CSPRNG)."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> X25519KeyPair:
        """Rebuild a key pair from its raw 32-byte private key (e.g. after Shamir recovery).

        Raises:
            TypeError: If ``data`` is not bytes.
            ValueError: If ``data`` is not 32 bytes.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"private key must be bytes, got {type(data).__name__}")
        if len(data) != PRIVATE_KEY_SIZE:
            raise ValueError(f"private key must have {PRIVATE_KEY_SIZE} bytes, got {len(data)}")
        return cls(X25519PrivateKey.from_private_bytes(data))

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public

    def exchange(self, peer_public_key: bytes) -> bytes:
        """Return the 32-byte X25519 shared secret with ``peer_public_key``.

        Raises:
            TypeError: If ``peer_public_key`` is not bytes.
            ValueError: If it is not 32 bytes or is a low-order point (all-zero secret).
        """
        _check_public_key(peer_public_key)
        peer = X25519PublicKey.from_public_bytes(peer_public_key)
        try:
            return self._private.exchange(peer)
        except ValueError:
            raise ValueError("peer public key is a low-order point") from None

    def export_private_bytes(self, *, unprotected: bool) -> bytes:
        """Return the raw private key; ``unprotected=True`` acknowledges it leaves this object.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export a private key deliberately")
        return self._private.private_bytes_raw()

    def __repr__(self) -> str:
        return f"X25519KeyPair(public={self._public.hex()[:16]}..., private=<redacted>)"


def _encode_aad_prefix(job_id: str) -> bytes:
    job = job_id.encode("utf-8")
    return b"".join([b"federation/secagg+/v1/shares\x00", _U32.pack(len(job)), job])


_cached_aad_prefix = lru_cache(maxsize=64)(_encode_aad_prefix)
"""The associated-data prefix of each job in use (public values only)."""


def transport_associated_data(job_id: str, sender: int, recipient: int) -> bytes:
    """Return the AEAD associated data binding ``job_id``, ``sender`` and ``recipient``.

    ``b"federation/secagg+/v1/shares\\x00" || u32(len(job)) || job || u32(sender) ||
    u32(recipient)`` (big-endian; the job's prefix is cached).
    """
    if type(job_id) is str:
        prefix = _cached_aad_prefix(job_id)
    elif isinstance(job_id, str):
        prefix = _encode_aad_prefix(job_id)  # a str subclass: not cached
    else:
        raise TypeError(f"job_id must be a str, got {type(job_id).__name__}")
    for name, slot in (("sender", sender), ("recipient", recipient)):
        if type(slot) is not int and (not isinstance(slot, int) or isinstance(slot, bool)):
            raise TypeError(f"{name} must be an int, got {type(slot).__name__}")
        if not 0 <= slot < 2**32:
            raise ValueError(f"{name} must lie in [0, 2**32), got {slot}")
    return prefix + _U32_PAIR.pack(sender, recipient)


def transport_key(shared_secret: bytes, *, job_id: str, sender: int, recipient: int) -> bytes:
    """Derive the AES-256-GCM key for shares sent from ``sender`` to ``recipient``.

    Args:
        shared_secret: The X25519 secret of the two nodes' encryption keys.
        job_id: The job.
        sender: Slot of the sending node.
        recipient: Slot of the receiving node.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: On malformed arguments (see :func:`~federation.crypto.prg.derive_key`).
    """
    return derive_key(shared_secret, Label.SHARE_TRANSPORT, job_id, sender, recipient)


def transport_keys(
    shared_secret: bytes, *, job_id: str, local: int, peer: int
) -> tuple[bytes, bytes]:
    """Derive both directions' transport keys of one pair of nodes at once.

    Returns:
        ``(transport_key(..., sender=local, recipient=peer),
        transport_key(..., sender=peer, recipient=local))``, with one HKDF-Extract.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: On malformed arguments (see :func:`~federation.crypto.prg.derive_key`).
    """
    send, receive = derive_keys(
        shared_secret, Label.SHARE_TRANSPORT, job_id, ((local, peer), (peer, local))
    )
    return send, receive


def _aead(key: bytes) -> AESGCM:
    if type(key) is not bytes and not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must have {KEY_SIZE} bytes, got {len(key)}")
    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, *, job_id: str, sender: int, recipient: int) -> bytes:
    """Encrypt ``plaintext`` from ``sender`` to ``recipient`` under a :func:`transport_key`.

    Returns:
        ``nonce || ciphertext || tag``, ``len(plaintext) + AEAD_OVERHEAD`` bytes.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: On a key of the wrong length or an oversized plaintext.
    """
    aead = _aead(key)
    if not isinstance(plaintext, bytes):
        raise TypeError(f"plaintext must be bytes, got {type(plaintext).__name__}")
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise ValueError(f"plaintext must have at most {MAX_PLAINTEXT_SIZE} bytes")
    aad = transport_associated_data(job_id, sender, recipient)
    nonce = secrets.token_bytes(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, *, job_id: str, sender: int, recipient: int) -> bytes:
    """Decrypt and authenticate a message :func:`seal` sealed from ``sender`` to ``recipient``.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: If the key has the wrong length, the message is too short or too
            long, or it fails authentication (tampered, or sealed under another key or
            for another job, sender or recipient).
    """
    aead = _aead(key)
    if not isinstance(sealed, bytes):
        raise TypeError(f"sealed message must be bytes, got {type(sealed).__name__}")
    if not AEAD_OVERHEAD <= len(sealed) <= MAX_PLAINTEXT_SIZE + AEAD_OVERHEAD:
        raise ValueError(
            f"sealed message must have {AEAD_OVERHEAD} to "
            f"{MAX_PLAINTEXT_SIZE + AEAD_OVERHEAD} bytes, got {len(sealed)}"
        )
    aad = transport_associated_data(job_id, sender, recipient)
    try:
        return aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise ValueError("sealed message failed authentication") from None
