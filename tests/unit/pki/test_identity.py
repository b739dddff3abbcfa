"""verify_issued_by and identity_from_certificate: right CA, in time, well-formed identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from federation.errors import CertificateError
from federation.pki import (
    CertificateAuthority,
    Role,
    identity_from_certificate,
    issue,
    verify_issued_by,
)
from federation.pki.authority import load_ca_key


def test_a_certificate_verifies_against_its_own_ca_only(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    cred = issue(ca.directory, Role.NODE, "n1")
    pem = cred.certificate_path.read_bytes()
    verify_issued_by(pem, ca.certificate_pem)
    verify_issued_by(pem.decode().encode(), cred.ca_path.read_bytes())
    with pytest.raises(CertificateError, match="not issued by the CA"):
        verify_issued_by(pem, other_ca.certificate_pem)
    forged = issue(other_ca.directory, Role.NODE, "n1").certificate_path.read_bytes()
    with pytest.raises(CertificateError, match="not issued by the CA"):
        verify_issued_by(forged, ca.certificate_pem)


def test_an_expired_certificate_fails(ca: CertificateAuthority) -> None:
    t0 = datetime.now(UTC)
    pem = issue(ca.directory, Role.ANALYST, "a", valid_days=1, now=t0).certificate_path.read_bytes()
    verify_issued_by(pem, ca.certificate_pem, now=t0 + timedelta(hours=23))
    with pytest.raises(CertificateError, match=r"expired at .*issue a new one"):
        verify_issued_by(pem, ca.certificate_pem, now=t0 + timedelta(days=1, seconds=1))


def test_a_not_yet_valid_certificate_fails(ca: CertificateAuthority) -> None:
    t0 = datetime.now(UTC) + timedelta(days=10)
    pem = issue(ca.directory, Role.ANALYST, "a", now=t0).certificate_path.read_bytes()
    with pytest.raises(CertificateError, match=r"not valid before .*check the clocks"):
        verify_issued_by(pem, ca.certificate_pem)


def test_an_expired_ca_fails(ca: CertificateAuthority) -> None:
    pem = issue(ca.directory, Role.NODE, "n1").certificate_path.read_bytes()
    later = ca.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(CertificateError, match=r"CA certificate .* expired"):
        verify_issued_by(pem, ca.certificate_pem, now=later)


def test_a_leaf_is_not_a_ca(ca: CertificateAuthority) -> None:
    leaf = issue(ca.directory, Role.NODE, "n1").certificate_path.read_bytes()
    with pytest.raises(CertificateError, match="is not a CA certificate"):
        verify_issued_by(leaf, leaf)


def test_naive_now_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_issued_by(ca.certificate_pem, ca.certificate_pem, now=datetime(2030, 1, 1))


def test_identity_from_der_equals_identity_from_pem(ca: CertificateAuthority) -> None:
    pem = issue(ca.directory, Role.AUDITOR, "eve").certificate_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    ident = identity_from_certificate(der)
    assert ident == identity_from_certificate(pem)
    assert (ident.role, ident.name, ident.federation) == (Role.AUDITOR, "eve", "acme")
    assert len(ident.fingerprint) == 64


def _signed(ca: CertificateAuthority, san: x509.SubjectAlternativeName | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(load_ca_key(ca), hashes.SHA256()).public_bytes(Encoding.PEM)


def _uris(*uris: str) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])


def test_a_certificate_without_san_has_no_identity(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateError, match="no SubjectAlternativeName"):
        identity_from_certificate(_signed(ca, None))
    dns_only = x509.SubjectAlternativeName([x509.DNSName("mallory.example.org")])
    with pytest.raises(CertificateError, match="exactly one federation:// identity URI, found 0"):
        identity_from_certificate(_signed(ca, dns_only))


@pytest.mark.parametrize(
    "uri",
    [
        "federation://acme/node",
        "federation://acme/node/n1/extra",
        "federation://acme/root/n1",
        "federation://acme/node/",
        "federation://acme/node/../n1",
        "federation:///node/n1",
        "federation:acme/node/n1",
    ],
)
def test_malformed_identity_uris_are_refused(ca: CertificateAuthority, uri: str) -> None:
    with pytest.raises(CertificateError, match="identity URI"):
        identity_from_certificate(_signed(ca, _uris(uri)))


def test_two_identity_uris_are_refused(ca: CertificateAuthority) -> None:
    two = _uris("federation://acme/node/n1", "federation://acme/admin/n1")
    with pytest.raises(CertificateError, match="found 2"):
        identity_from_certificate(_signed(ca, two))


def test_other_uris_are_ignored(ca: CertificateAuthority) -> None:
    mixed = _uris("https://example.org/", "federation://acme/analyst/bob")
    assert identity_from_certificate(_signed(ca, mixed)).name == "bob"


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_garbage_is_not_a_certificate(data: bytes) -> None:
    with pytest.raises(CertificateError, match="not a certificate"):
        identity_from_certificate(data)


def test_a_certificate_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="must be bytes, got str"):
        identity_from_certificate("-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]
