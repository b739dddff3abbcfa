"""Build the X.509 certificates of a federation: its CA's and its parties'.

All keys are ECDSA P-256 and all signatures ECDSA with SHA-256, which every TLS
stack gRPC uses supports. A party's certificate has subject ``O=<federation>,
OU=<role>, CN=<name>`` and the identity URI ``federation://<federation>/<role>/<name>``
in its SubjectAlternativeName; only a coordinator's is good for TLS server
authentication, and it also names the coordinator's hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.pki.roles import Role, identity_uri, parse_host

__all__ = ["ca_certificate", "generate_key", "leaf_certificate", "private_key_pem"]


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (what gRPC reads); protect the file, not the bytes."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    federation: str,
    *,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """The self-signed CA certificate: ``O=<federation>, CN=<federation> CA``.

    It may sign certificates and CRLs, but no intermediate CA (path length 0).
    """
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{federation} CA"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=False, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _subject_alt_names(
    federation: str, role: Role, name: str, hosts: Sequence[str]
) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(identity_uri(federation, role, name))
    ]
    seen: set[IPv4Address | IPv6Address | str] = set()
    for host in hosts:
        parsed = parse_host(host)
        if parsed not in seen:
            seen.add(parsed)
            names.append(
                x509.DNSName(parsed) if isinstance(parsed, str) else x509.IPAddress(parsed)
            )
    return x509.SubjectAlternativeName(names)


def leaf_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    *,
    federation: str,
    role: Role,
    name: str,
    hosts: Sequence[str],
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A party's certificate, signed by the CA.

    ``hosts`` (DNS names or IP addresses) go into the SubjectAlternativeName
    beside the identity URI; the caller allows them for a coordinator only.

    Raises:
        ConfigError: A host is neither an IP address nor a DNS name.
    """
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.COORDINATOR:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_subject_alt_names(federation, role, name, hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
