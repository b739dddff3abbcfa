"""init_ca and issue: files and permissions, certificate contents, refusals."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import ConfigError
from federation.pki import (
    CertificateAuthority,
    Role,
    identity_from_certificate,
    init_ca,
    issue,
    open_ca,
    revoke,
    verify_issued_by,
)

from .conftest import FEDERATION


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_the_ca_with_tight_permissions(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "pki", "acme")
    assert _mode(ca.directory) == 0o700
    assert _mode(ca.key_path) == 0o600
    assert _mode(ca.certificate_path) == 0o644
    assert _mode(ca.crl_path) == 0o644
    assert ca.key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    cert = _cert(ca.certificate_path)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert list(x509.load_pem_x509_crl(ca.crl_path.read_bytes())) == []
    assert ca.entries() == []
    assert open_ca(ca.directory) == ca


def test_init_refuses_to_overwrite_a_ca(ca: CertificateAuthority) -> None:
    before = ca.key_path.read_bytes()
    with pytest.raises(ConfigError, match=r"a CA already exists at .*ca\.key"):
        init_ca(ca.directory, "acme")
    assert ca.key_path.read_bytes() == before


@pytest.mark.parametrize("federation", ["", "a b", "../x", "x/y", "é", "a" * 65])
def test_init_refuses_invalid_federation_names(tmp_path: Path, federation: str) -> None:
    with pytest.raises(ConfigError, match="invalid federation name"):
        init_ca(tmp_path / "pki", federation)
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize("role", list(Role))
def test_issue_each_role_and_read_its_identity(ca: CertificateAuthority, role: Role) -> None:
    cred = issue(ca.directory, role, "party-1")
    assert cred.key_path == ca.directory / "issued" / role.value / "party-1" / "party-1.key"
    assert _mode(cred.key_path) == 0o600
    assert _mode(cred.certificate_path) == 0o644
    assert _mode(cred.key_path.parent) == 0o700
    assert cred.ca_path.read_bytes() == ca.certificate_pem
    pem = cred.certificate_path.read_bytes()
    verify_issued_by(pem, ca.certificate_pem)

    ident = identity_from_certificate(pem)
    assert (ident.name, ident.role, ident.federation) == ("party-1", role, FEDERATION)
    assert ident.uri == f"federation://{FEDERATION}/{role.value}/party-1"
    assert ident == cred.identity

    cert = _cert(cred.certificate_path)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == role
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "party-1"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    if role is Role.COORDINATOR:
        assert eku == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    else:
        assert eku == [ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest

    (entry,) = ca.entries()
    assert (entry.serial, entry.role, entry.name) == (cert.serial_number, role, "party-1")
    assert entry.fingerprint == ident.fingerprint
    assert entry.not_after == cert.not_valid_after_utc
    assert entry.revoked_at is None


def _sans(path: Path) -> x509.SubjectAlternativeName:
    return _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_coordinator_default_hosts(ca: CertificateAuthority) -> None:
    cred = issue(ca.directory, "coordinator", "coord.example.org")
    san = _sans(cred.certificate_path)
    assert san.get_values_for_type(x509.DNSName) == ["coord.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [IPv4Address("127.0.0.1")]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "federation://acme/coordinator/coord.example.org"
    ]


def test_coordinator_given_hosts_dns_and_ip(ca: CertificateAuthority) -> None:
    hosts = ["coord.internal", "10.1.2.3", "::1", "10.1.2.3"]
    cred = issue(ca.directory, Role.COORDINATOR, "coord", hosts=hosts)
    san = _sans(cred.certificate_path)
    assert san.get_values_for_type(x509.DNSName) == ["coord.internal"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3", "::1"]


@pytest.mark.parametrize("host", ["bad host", "-x.org", "a..b", "x_y.org", "a/b", ""])
def test_invalid_hosts_are_refused(ca: CertificateAuthority, host: str) -> None:
    with pytest.raises(ConfigError, match="invalid host"):
        issue(ca.directory, Role.COORDINATOR, "coord", hosts=[host])
    assert ca.entries() == []


def test_a_coordinator_name_that_is_no_host_needs_explicit_hosts(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="invalid host 'coord_1'"):
        issue(ca.directory, Role.COORDINATOR, "coord_1")
    issue(ca.directory, Role.COORDINATOR, "coord_1", hosts=["coord-1.example.org"])


def test_hosts_are_for_coordinators_only(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="only to a coordinator"):
        issue(ca.directory, Role.NODE, "n1", hosts=["n1.example.org"])
    san = _sans(issue(ca.directory, Role.NODE, "n1").certificate_path)
    assert san.get_values_for_type(x509.DNSName) == []


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "../etc", "with space", "naïve", "a" * 65, "x\n"]
)
def test_invalid_names_are_refused(ca: CertificateAuthority, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid name"):
        issue(ca.directory, Role.ANALYST, name)
    assert ca.entries() == []


def test_the_name_ca_is_reserved(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        issue(ca.directory, Role.NODE, "CA")


def test_unknown_role_and_bad_validity(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="unknown role 'operator'"):
        issue(ca.directory, "operator", "x")
    for days in (0, -1, True):
        with pytest.raises(ConfigError, match="whole number of days"):
            issue(ca.directory, Role.NODE, "x", valid_days=days)


def test_issue_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no CA in .*pki init"):
        issue(tmp_path, Role.NODE, "n1")


def test_a_certificate_may_not_outlive_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "pki", "acme", valid_days=30)
    with pytest.raises(ConfigError, match="outlive the CA"):
        issue(ca.directory, Role.NODE, "n1")
    issue(ca.directory, Role.NODE, "n1", valid_days=29)


def test_a_second_live_certificate_is_refused(ca: CertificateAuthority) -> None:
    first = issue(ca.directory, Role.NODE, "n1")
    key_before = first.key_path.read_bytes()
    with pytest.raises(ConfigError, match=r"node 'n1' already has a valid certificate.*revoke"):
        issue(ca.directory, Role.NODE, "n1")
    assert first.key_path.read_bytes() == key_before
    issue(ca.directory, Role.ANALYST, "n1")  # another role is another party
    assert len(ca.entries()) == 2


def test_reissue_after_revocation_replaces_the_files(ca: CertificateAuthority) -> None:
    first = issue(ca.directory, Role.NODE, "n1")
    revoke(ca.directory, "n1")
    second = issue(ca.directory, Role.NODE, "n1")
    assert second.key_path == first.key_path
    assert second.identity.serial != first.identity.serial
    assert identity_from_certificate(second.certificate_path.read_bytes()) == second.identity
    assert _mode(second.key_path) == 0o600
    assert sorted(p.name for p in second.key_path.parent.iterdir()) == [
        "ca.crt",
        "n1.crt",
        "n1.key",
    ]
    assert [e.revoked_at is None for e in ca.entries()] == [False, True]


def test_reissue_after_expiry_needs_no_revocation(ca: CertificateAuthority) -> None:
    t0 = datetime.now(UTC)
    issue(ca.directory, Role.NODE, "n1", valid_days=1, now=t0)
    issue(ca.directory, Role.NODE, "n1", now=t0 + timedelta(days=2))
    assert len(ca.entries()) == 2


def test_out_directory_is_never_overwritten(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    cred = issue(ca.directory, Role.ANALYST, "alice", out=out)
    assert cred.paths == (out / "alice.key", out / "alice.crt", out / "ca.crt")
    assert _mode(cred.key_path) == 0o600
    revoke(ca.directory, "alice")
    with pytest.raises(ConfigError, match=r"alice\.key already exists; refusing"):
        issue(ca.directory, Role.ANALYST, "alice", out=out)
    assert len(ca.entries()) == 1


def test_index_is_append_only_json_lines(ca: CertificateAuthority) -> None:
    issue(ca.directory, Role.NODE, "n1")
    issue(ca.directory, Role.NODE, "n2")
    revoke(ca.directory, "n1", reason="key lost")
    lines = [json.loads(x) for x in ca.index_path.read_text().splitlines()]
    assert [x["event"] for x in lines] == ["issued", "issued", "revoked"]
    assert lines[2]["serial"] == lines[0]["serial"]
    assert lines[2]["reason"] == "key lost"
    n1, n2 = ca.entries()
    assert n1.reason == "key lost"
    assert n1.revoked_at is not None
    assert n2.revoked_at is None


def test_a_corrupt_index_is_reported_with_its_line(ca: CertificateAuthority) -> None:
    issue(ca.directory, Role.NODE, "n1")
    with ca.index_path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ConfigError, match=r"index\.jsonl:2: not a valid index record"):
        ca.entries()


def test_a_ca_key_readable_by_others_is_refused(ca: CertificateAuthority) -> None:
    ca.key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        issue(ca.directory, Role.NODE, "n1")
