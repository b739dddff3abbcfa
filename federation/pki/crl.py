"""Certificate revocation lists: signing one, and reading one only after verifying it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import CertificateError
from federation.pki.identity import load_certificate

__all__ = [
    "CRL_NAME",
    "CRL_VALIDITY",
    "build_crl",
    "crl_next_update",
    "crl_number",
    "load_revoked_serials",
]

CRL_NAME = "crl.pem"
CRL_VALIDITY = timedelta(days=7)
"""A CRL's ``next_update`` is this long after it was signed."""


def build_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    revoked: Iterable[tuple[int, datetime]],
    *,
    now: datetime,
    number: int,
) -> bytes:
    """A PEM CRL listing ``(serial, revoked_at)`` pairs, signed by the CA, valid 7 days."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_next_update(crl_pem: bytes) -> datetime | None:
    """When a PEM CRL says the next one is due (``None`` if unknown or unparseable)."""
    try:
        return x509.load_pem_x509_crl(crl_pem).next_update_utc
    except ValueError:
        return None


def crl_number(crl_pem: bytes) -> int:
    """The CRLNumber of a PEM CRL (0 if it has none or does not parse)."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (ValueError, x509.ExtensionNotFound):
        return 0


def load_revoked_serials(crl_pem: bytes, ca_cert_pem: bytes) -> frozenset[int]:
    """The serial numbers a CRL revokes, after verifying the CA signed it.

    ``next_update`` is not enforced: an old CRL is still a true list of what was
    revoked when it was signed. Get fresh ones from the CA's ``crl.pem``.

    Raises:
        CertificateError: The CRL or CA certificate does not parse, the CRL names
            another issuer, or its signature does not verify with the CA's key.
    """
    ca = load_certificate(ca_cert_pem)
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate revocation list: {exc}") from None
    ca_name = ca.subject.rfc4514_string()
    if crl.issuer != ca.subject:
        raise CertificateError(
            f"the CRL was issued by {crl.issuer.rfc4514_string()!r}, not by the CA {ca_name!r}"
        )
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
        public_key
    ):
        raise CertificateError(f"the CRL's signature does not verify with the CA {ca_name!r}")
    return frozenset(entry.serial_number for entry in crl)
