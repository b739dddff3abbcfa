"""revoke and load_revoked_serials: the CRL lists what was revoked; only a CA-signed one is read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from federation.errors import CertificateError, ConfigError
from federation.pki import (
    CertificateAuthority,
    Role,
    init_ca,
    issue,
    load_revoked_serials,
    revoke,
)
from federation.pki.authority import load_ca_key
from federation.pki.crl import CRL_VALIDITY, build_crl


def _crl(ca: CertificateAuthority) -> frozenset[int]:
    return load_revoked_serials(ca.crl_path.read_bytes(), ca.certificate_pem)


def test_revoked_serials_appear_in_the_verified_crl(ca: CertificateAuthority) -> None:
    n1 = issue(ca.directory, Role.NODE, "n1").identity.serial
    n2 = issue(ca.directory, Role.NODE, "n2").identity.serial
    assert _crl(ca) == frozenset()
    assert revoke(ca.directory, "n1") == [n1]
    assert _crl(ca) == {n1}
    assert revoke(ca.directory, "n2", reason="decommissioned") == [n2]
    assert _crl(ca) == {n1, n2}


def test_the_crl_is_dated_by_the_injected_clock_and_numbered(ca: CertificateAuthority) -> None:
    issue(ca.directory, Role.NODE, "n1")
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    revoke(ca.directory, "n1", now=when)
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.last_update_utc == when
    assert crl.next_update_utc == when + CRL_VALIDITY
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    (entry,) = crl
    assert entry.revocation_date_utc == when
    (recorded,) = ca.entries()
    assert recorded.revoked_at == when


def test_revoke_every_role_of_a_name_or_just_one(ca: CertificateAuthority) -> None:
    node = issue(ca.directory, Role.NODE, "x").identity.serial
    analyst = issue(ca.directory, Role.ANALYST, "x").identity.serial
    assert revoke(ca.directory, "x", role="analyst") == [analyst]
    assert _crl(ca) == {analyst}
    assert revoke(ca.directory, "x") == [node]
    assert _crl(ca) == {analyst, node}


def test_revoking_an_unknown_or_already_revoked_name_is_an_error(
    ca: CertificateAuthority,
) -> None:
    with pytest.raises(ConfigError, match="no certificate was issued to 'ghost'"):
        revoke(ca.directory, "ghost")
    issue(ca.directory, Role.NODE, "n1")
    with pytest.raises(ConfigError, match="no unrevoked certificate as analyst"):
        revoke(ca.directory, "n1", role=Role.ANALYST)
    revoke(ca.directory, "n1")
    with pytest.raises(ConfigError, match="'n1' has no unrevoked certificate"):
        revoke(ca.directory, "n1")
    with pytest.raises(ConfigError, match="invalid name"):
        revoke(ca.directory, "../n1")


def test_a_crl_signed_by_another_ca_is_rejected(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    # Same federation name, so the issuer names match; only the signature tells.
    assert other_ca.certificate.subject == ca.certificate.subject
    with pytest.raises(CertificateError, match="signature does not verify"):
        load_revoked_serials(other_ca.crl_path.read_bytes(), ca.certificate_pem)


def test_a_crl_of_another_issuer_is_rejected(ca: CertificateAuthority) -> None:
    elsewhere = init_ca(ca.directory.parent / "globex", "globex")
    with pytest.raises(CertificateError, match="issued by 'CN=globex CA,O=globex'"):
        load_revoked_serials(elsewhere.crl_path.read_bytes(), ca.certificate_pem)


def test_a_tampered_crl_is_rejected(ca: CertificateAuthority) -> None:
    serial = issue(ca.directory, Role.NODE, "n1").identity.serial
    revoke(ca.directory, "n1")
    # Change the revoked serial in the signed body, keeping the signature.
    der = bytearray(x509.load_pem_x509_crl(ca.crl_path.read_bytes()).public_bytes(Encoding.DER))
    index = der.find(serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    assert index > 0
    der[index + 3] ^= 0x01
    forged = x509.load_der_x509_crl(bytes(der)).public_bytes(Encoding.PEM)
    with pytest.raises(CertificateError, match="signature does not verify"):
        load_revoked_serials(forged, ca.certificate_pem)


def test_garbage_is_not_a_crl(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateError, match="not a PEM certificate revocation list"):
        load_revoked_serials(b"hello", ca.certificate_pem)
    with pytest.raises(CertificateError, match="not a certificate"):
        load_revoked_serials(ca.crl_path.read_bytes(), b"-----BEGIN CERTIFICATE-----\nx\n")


def test_build_crl_round_trips_many_serials(ca: CertificateAuthority) -> None:
    when = datetime.now(UTC)
    serials = {x509.random_serial_number() for _ in range(50)}
    pem = build_crl(
        load_ca_key(ca), ca.certificate, [(s, when) for s in serials], now=when, number=7
    )
    assert load_revoked_serials(pem, ca.certificate_pem) == serials
