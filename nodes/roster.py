"""Who holds each slot of a signed SecAgg+ run, checked by the node itself.

The coordinator forwards every participant's certificate with the task. A node takes
part only if each one was issued by the federation's CA (the one that issued its
own), is valid now, names a *node*, and all names are distinct; and the certificate
in its own slot is its own. Each slot's signatures are then verified against that
certificate's key, so the coordinator can neither substitute keys nor enrol an
identity of its own making.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from federation.errors import CertificateError, ProtocolError
from federation.pki import (
    Credentials,
    Identity,
    Role,
    SigningKey,
    VerifyingKey,
    identity_from_certificate,
    verify_issued_by,
)

__all__ = ["EnrolledRoster", "signer_for"]

_CHECKED: dict[tuple[bytes, bytes], tuple[Identity, VerifyingKey]] = {}
"""(CA fingerprint, certificate fingerprint) -> identity, for certificates that passed."""
_CHECKED_LOCK = threading.Lock()
_CACHE_LIMIT = 4096


def _checked_identity(certificate: bytes, ca_pem: bytes) -> tuple[Identity, VerifyingKey]:
    """The identity and key of a certificate the CA issued (checked once, then cached
    until it expires)."""
    key = (hashlib.sha256(ca_pem).digest(), hashlib.sha256(certificate).digest())
    with _CHECKED_LOCK:
        found = _CHECKED.get(key)
    if found is not None and not _expired(found[0]):
        return found
    verify_issued_by(certificate, ca_pem)
    checked = (identity_from_certificate(certificate), VerifyingKey(certificate))
    with _CHECKED_LOCK:
        if len(_CHECKED) > _CACHE_LIMIT:
            _CHECKED.clear()
        _CHECKED[key] = checked
    return checked


def _expired(identity: Identity) -> bool:
    return identity.not_after <= datetime.now(UTC)


class EnrolledRoster:
    """The checked identities of a signed run's slots, and their signature checks."""

    def __init__(self, certificates: Sequence[bytes], own: Credentials, slot: int) -> None:
        """Check every slot's certificate (module docstring).

        Raises:
            ProtocolError: A certificate is missing, foreign, expired, not a node's, a
                duplicate, or not this node's own in its own slot.
        """
        identities: list[Identity] = []
        keys: list[VerifyingKey] = []
        for index, certificate in enumerate(certificates):
            try:
                identity, key = _checked_identity(certificate, own.ca_pem)
            except CertificateError as exc:
                raise ProtocolError(
                    f"the roster's certificate for slot {index} is not an enrolled identity of "
                    f"this federation ({exc.message}); refusing the run"
                ) from None
            if identity.role is not Role.NODE:
                raise ProtocolError(
                    f"the roster puts the {identity.role.value} {identity.name!r} in slot "
                    f"{index}; only nodes take part; refusing the run"
                )
            identities.append(identity)
            keys.append(key)
        names = [i.name for i in identities]
        if len(set(names)) != len(names):
            raise ProtocolError("the roster lists one node identity in several slots; refusing")
        mine = own.identity
        if not 0 <= slot < len(identities) or identities[slot].fingerprint != mine.fingerprint:
            raise ProtocolError(
                f"the roster does not hold this node's own certificate in its slot {slot}; "
                "refusing the run"
            )
        self._keys = tuple(keys)
        self.names = tuple(names)

    def verify(self, slot: int, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``message`` is by the identity in ``slot``."""
        if not 0 <= slot < len(self._keys):
            return False
        return self._keys[slot].verify(message, signature)


_SIGNERS: dict[bytes, SigningKey] = {}
_SIGNERS_LOCK = threading.Lock()


def signer_for(credentials: Credentials) -> Callable[[bytes], bytes]:
    """A ``sign(bytes) -> bytes`` with this node's identity key (parsed once)."""
    pem = credentials.export_private(unprotected=True)
    digest = hashlib.sha256(pem).digest()
    with _SIGNERS_LOCK:
        key = _SIGNERS.get(digest)
        if key is None:
            key = _SIGNERS[digest] = SigningKey(pem)
    return key.sign
