"""Who a certificate names, and whether the federation's CA issued it.

:func:`identity_from_certificate` only reads a certificate; it trusts what it is
given. Call it on a peer certificate that TLS already verified (gRPC's
``context.auth_context()["x509_pem_cert"]`` with ``require_client_auth=True``), or
after :func:`verify_issued_by`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from federation.errors import CertificateError
from federation.pki.roles import URI_SCHEME, Role, parse_identity_uri

__all__ = [
    "Identity",
    "fingerprint",
    "identity_from_certificate",
    "load_certificate",
    "utc_now",
    "verify_issued_by",
]


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` (which must be timezone-aware) or the current UTC time.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return now.astimezone(UTC)


@dataclass(frozen=True)
class Identity:
    """A party as its certificate names it: ``federation://<federation>/<role>/<name>``."""

    name: str
    role: Role
    federation: str
    serial: int
    fingerprint: str
    """SHA-256 of the DER certificate, lowercase hex."""
    not_after: datetime

    @property
    def uri(self) -> str:
        """The canonical identity URI."""
        return f"{URI_SCHEME}://{self.federation}/{self.role.value}/{self.name}"


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a certificate given as PEM or DER bytes.

    Raises:
        TypeError: ``data`` is not bytes.
        CertificateError: It does not parse.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"a certificate must be bytes, got {type(data).__name__}")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"not a certificate in PEM or DER: {exc}") from None


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def identity_from_certificate(pem_or_der: bytes) -> Identity:
    """The identity in a certificate's ``federation://`` URI SAN (authoritative).

    This does not check who issued the certificate; see the module docstring.

    Raises:
        CertificateError: The certificate does not parse, or has not exactly one
            well-formed ``federation://<federation>/<role>/<name>`` URI.
    """
    cert = load_certificate(pem_or_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateError(
            f"certificate {cert.subject.rfc4514_string()!r} has no SubjectAlternativeName, "
            "so no federation identity; issue it with `federation pki issue`"
        ) from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(f"{URI_SCHEME}:")
    ]
    if len(uris) != 1:
        raise CertificateError(
            f"certificate {cert.subject.rfc4514_string()!r} must carry exactly one "
            f"{URI_SCHEME}:// identity URI, found {len(uris)}"
        )
    federation, role, name = parse_identity_uri(uris[0])
    return Identity(
        name=name,
        role=role,
        federation=federation,
        serial=cert.serial_number,
        fingerprint=fingerprint(cert),
        not_after=cert.not_valid_after_utc,
    )


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"{what} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(now {now.isoformat()}); check the clocks"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"{what} expired at {cert.not_valid_after_utc.isoformat()} "
            f"(now {now.isoformat()}); issue a new one"
        )


def verify_issued_by(cert_pem: bytes, ca_pem: bytes, *, now: datetime | None = None) -> None:
    """Check that the CA ``ca_pem`` signed ``cert_pem`` and that both are valid ``now``.

    Revocation is a separate check (:func:`federation.pki.load_revoked_serials`).

    Raises:
        CertificateError: Either does not parse, ``ca_pem`` is not a CA certificate,
            the issuer or signature does not match, or either is outside its
            validity period.
    """
    when = utc_now(now)
    cert = load_certificate(cert_pem)
    ca = load_certificate(ca_pem)
    subject = cert.subject.rfc4514_string()
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateError(f"{ca.subject.rfc4514_string()!r} is not a CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(
            f"certificate {subject!r} was not issued by the CA "
            f"{ca.subject.rfc4514_string()!r} (issuer or signature does not match)"
        ) from None
    _check_validity(ca, when, f"CA certificate {ca.subject.rfc4514_string()!r}")
    _check_validity(cert, when, f"certificate {subject!r}")
