"""A party's credentials on disk, and ECDSA P-256 signatures with its key.

The key that authenticates a party in TLS also signs its protocol messages (for
instance to bind secure-aggregation key-agreement keys to the identity). So that
no signature made here can be replayed as a TLS one, :func:`sign` signs
``DOMAIN_LABEL || data``: TLS 1.3 signs 64 spaces first, TLS 1.2 a handshake
message starting with byte 1 or a ServerKeyExchange whose byte 64 is 3, and the
label is 65+ bytes of printable ASCII not starting with a space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.crypto.secret import SecretHolder
from federation.errors import CertificateError, ConfigError
from federation.pki.authority import CA_CERT_NAME
from federation.pki.files import check_private_file
from federation.pki.identity import Identity, identity_from_certificate, load_certificate

__all__ = [
    "DOMAIN_LABEL",
    "Credentials",
    "SigningKey",
    "VerifyingKey",
    "load_credentials",
    "sign",
    "verify_signature",
]

DOMAIN_LABEL = b"federation pki v1: an ECDSA P-256 / SHA-256 signature by a federation party\n"
"""Prepended to every message :func:`sign` signs (domain separation from TLS)."""


@dataclass(frozen=True)
class Credentials(SecretHolder):
    """A party's CA certificate, certificate and private key, as PEM bytes.

    ``repr`` leaves the key out, and pickling or copying raises.
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @cached_property
    def identity(self) -> Identity:
        """Who the certificate names (parsed once)."""
        return identity_from_certificate(self.cert_pem)

    def export_private(self, *, unprotected: bool) -> bytes:
        """The PEM private key; ``unprotected=True`` acknowledges it leaves this object."""
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export a private key deliberately")
        return self.key_pem


def _name_and_dir(path: Path, name: str | None) -> tuple[Path, str]:
    if path.is_dir():
        if name is not None:
            return path, name
        keys = sorted(p.stem for p in path.glob("*.key"))
        if len(keys) != 1:
            raise ConfigError(
                f"{path} holds {len(keys)} private keys ({', '.join(keys) or 'none'}); "
                "say which credentials to load by name"
            )
        return path, keys[0]
    if path.suffix in {".key", ".crt"} and path.exists():
        return path.parent, name if name is not None else path.stem
    raise ConfigError(f"no credentials at {path}: expected a directory written by `pki issue`")


def _private_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("expected an ECDSA P-256 private key (as `federation pki issue` makes)")
    return key


def _public_key(cert_pem: bytes) -> ec.EllipticCurvePublicKey:
    key = load_certificate(cert_pem).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateError("the certificate does not hold an ECDSA P-256 public key")
    return key


def load_credentials(path_or_dir: Path | str, name: str | None = None) -> Credentials:
    """Load ``<name>.key``, ``<name>.crt`` and ``ca.crt`` from an issued directory.

    ``path_or_dir`` is the directory (``name`` defaults to its only ``*.key``) or
    one of the ``.key``/``.crt`` files in it.

    Raises:
        ConfigError: Files missing, the key readable by others, or not an ECDSA
            P-256 key.
        CertificateError: A certificate does not parse, or the key does not
            belong to the certificate.
    """
    directory, name = _name_and_dir(Path(path_or_dir), name)
    key_pem = check_private_file(directory / f"{name}.key")
    try:
        cert_pem = (directory / f"{name}.crt").read_bytes()
        ca_pem = (directory / CA_CERT_NAME).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"credentials incomplete: {exc.filename} not found") from None
    load_certificate(ca_pem)
    if _private_key(key_pem).public_key() != _public_key(cert_pem):
        raise CertificateError(f"{directory / name}.key is not the key of {name}.crt")
    return Credentials(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


class SigningKey:
    """A party's private key, parsed once, for many :func:`sign`-compatible signatures."""

    def __init__(self, key_pem: bytes) -> None:
        self._key = _private_key(key_pem)

    def sign(self, data: bytes) -> bytes:
        """The same signature :func:`sign` makes."""
        return self._key.sign(DOMAIN_LABEL + data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey holds a private key and cannot be pickled or copied")


class VerifyingKey:
    """A certificate's public key, parsed once, checking :func:`sign` signatures."""

    def __init__(self, cert_pem: bytes) -> None:
        self._key = _public_key(cert_pem)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's :func:`sign` of ``data``."""
        try:
            self._key.verify(signature, DOMAIN_LABEL + data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def sign(key_pem: bytes, data: bytes) -> bytes:
    """An ECDSA P-256 / SHA-256 signature (DER) of ``DOMAIN_LABEL || data``.

    Raises:
        TypeError: ``data`` is not bytes.
        ConfigError: ``key_pem`` is not an unencrypted ECDSA P-256 PEM key.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _private_key(key_pem).sign(DOMAIN_LABEL + data, ec.ECDSA(hashes.SHA256()))


def verify_signature(cert_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the certificate's key's :func:`sign` of ``data``.

    This does not check the certificate itself; see :func:`federation.pki.verify_issued_by`.

    Raises:
        TypeError: ``data`` or ``signature`` is not bytes.
        CertificateError: The certificate does not parse or has no P-256 key.
    """
    if not isinstance(data, bytes) or not isinstance(signature, bytes):
        raise TypeError("data and signature must be bytes")
    try:
        _public_key(cert_pem).verify(signature, DOMAIN_LABEL + data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
