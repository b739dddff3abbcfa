"""The certificate authority of one federation: create it, and issue credentials.

A CA directory holds::

    ca.key         the CA's ECDSA P-256 private key (0600)
    ca.crt         its self-signed certificate, subject O=<federation>, CN=<federation> CA
    crl.pem        the signed certificate revocation list
    index.jsonl    every certificate issued and revoked (append-only)
    audit.sqlite3  the same events in a signed Merkle log (:mod:`federation.pki.audit`)
    issued/<role>/<name>/{<name>.key, <name>.crt, ca.crt}

What goes into the certificates is :mod:`federation.pki.certificates`; this
module keeps the directory: it writes keys 0600, refuses to overwrite a CA or to
issue a second live certificate for one ``(role, name)``, and records every
certificate in the index before writing it out, so each is revocable by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from federation.errors import ConfigError
from federation.pki.audit import record_pki_event
from federation.pki.certificates import (
    ca_certificate,
    generate_key,
    leaf_certificate,
    private_key_pem,
)
from federation.pki.crl import CRL_NAME, build_crl
from federation.pki.files import (
    check_private_file,
    exclusive_lock,
    make_private_dir,
    write_private_file,
    write_public_file,
)
from federation.pki.identity import (
    Identity,
    fingerprint,
    identity_from_certificate,
    load_certificate,
    utc_now,
)
from federation.pki.index import INDEX_NAME, IndexEntry, append_issued, read_index
from federation.pki.roles import Role, parse_host, validate_name

__all__ = [
    "CA_CERT_NAME",
    "CA_KEY_NAME",
    "CertificateAuthority",
    "IssuedCredential",
    "init_ca",
    "issue",
    "load_ca_key",
    "open_ca",
]

CA_KEY_NAME = "ca.key"
CA_CERT_NAME = "ca.crt"
ISSUED_DIR = "issued"
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates are valid from this long before they were issued (other clocks may lag)."""
_DEFAULT_COORDINATOR_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA directory and its certificate (the private key stays on disk)."""

    directory: Path
    federation: str
    certificate_pem: bytes

    @cached_property
    def certificate(self) -> x509.Certificate:
        """The parsed CA certificate."""
        return load_certificate(self.certificate_pem)

    @property
    def key_path(self) -> Path:
        """``ca.key``."""
        return self.directory / CA_KEY_NAME

    @property
    def certificate_path(self) -> Path:
        """``ca.crt``."""
        return self.directory / CA_CERT_NAME

    @property
    def crl_path(self) -> Path:
        """``crl.pem``."""
        return self.directory / CRL_NAME

    @property
    def index_path(self) -> Path:
        """``index.jsonl``."""
        return self.directory / INDEX_NAME

    def entries(self) -> list[IndexEntry]:
        """Every certificate this CA issued, in order, with its revocation if any."""
        return read_index(self.index_path)


@dataclass(frozen=True)
class IssuedCredential:
    """What :func:`issue` wrote: the identity and the three files."""

    identity: Identity
    key_path: Path
    certificate_path: Path
    ca_path: Path

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        """Key, certificate and CA certificate, in that order."""
        return (self.key_path, self.certificate_path, self.ca_path)


def _check_days(valid_days: int) -> timedelta:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise ConfigError(f"validity must be a whole number of days >= 1, got {valid_days!r}")
    return timedelta(days=valid_days)


def init_ca(
    directory: Path | str,
    federation: str,
    *,
    valid_days: int = 3650,
    now: datetime | None = None,
) -> CertificateAuthority:
    """Create the CA of ``federation`` in ``directory`` (made 0700 if new).

    Writes ``ca.key`` (0600), the self-signed ``ca.crt``, an empty signed
    ``crl.pem`` and an empty ``index.jsonl``.

    Raises:
        ConfigError: A CA already exists there, or the federation name or
            validity is invalid.
    """
    directory = Path(directory)
    validate_name(federation, what="federation name")
    lifetime = _check_days(valid_days)
    when = utc_now(now)
    for existing in (directory / CA_KEY_NAME, directory / CA_CERT_NAME):
        if existing.exists():
            raise ConfigError(f"a CA already exists at {existing}; refusing to overwrite it")
    make_private_dir(directory)
    key = generate_key()
    cert = ca_certificate(key, federation, not_before=when - CLOCK_SKEW, not_after=when + lifetime)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    with exclusive_lock(directory):
        write_private_file(directory / CA_KEY_NAME, private_key_pem(key))
        write_public_file(directory / CA_CERT_NAME, cert_pem)
        write_public_file(directory / CRL_NAME, build_crl(key, cert, (), now=when, number=1))
        write_public_file(directory / INDEX_NAME, b"")
        record_pki_event(
            directory,
            "ca_created",
            federation=federation,
            fingerprint=fingerprint(cert),
            not_after=cert.not_valid_after_utc.isoformat(),
        )
    return CertificateAuthority(directory, federation, cert_pem)


def open_ca(directory: Path | str) -> CertificateAuthority:
    """The CA in ``directory``.

    Raises:
        ConfigError: There is no CA certificate there, or it names no federation.
    """
    directory = Path(directory)
    try:
        cert_pem = (directory / CA_CERT_NAME).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no CA in {directory} ({CA_CERT_NAME} not found); create one with "
            "`federation pki init --federation NAME --dir DIR`"
        ) from None
    orgs = load_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(orgs) != 1 or not isinstance(orgs[0].value, str):
        raise ConfigError(f"{directory / CA_CERT_NAME} names no federation (O=...)")
    return CertificateAuthority(directory, orgs[0].value, cert_pem)


def load_ca_key(ca: CertificateAuthority) -> ec.EllipticCurvePrivateKey:
    """The CA's private key, checked against its certificate.

    Raises:
        ConfigError: Missing, readable by others, not ECDSA, or not the certificate's key.
    """
    data = check_private_file(ca.key_path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{ca.key_path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != (
        ca.certificate.public_key()
    ):
        raise ConfigError(f"{ca.key_path} is not the private key of {ca.certificate_path}")
    return key


def _hosts(role: Role, name: str, hosts: Sequence[str]) -> tuple[str, ...]:
    if isinstance(hosts, str):
        raise TypeError("hosts must be a sequence of host names, not one string")
    if role is not Role.COORDINATOR:
        if hosts:
            raise ConfigError(
                f"hosts apply only to a coordinator's certificate, not to a {role.value}'s"
            )
        return ()
    return tuple(hosts) if hosts else (name, *_DEFAULT_COORDINATOR_HOSTS)


def issue(
    directory: Path | str,
    role: Role | str,
    name: str,
    *,
    hosts: Sequence[str] = (),
    valid_days: int = 365,
    out: Path | str | None = None,
    now: datetime | None = None,
) -> IssuedCredential:
    """Issue a key and certificate for ``name`` in ``role`` and write them out.

    Files go to ``<directory>/issued/<role>/<name>/`` (replacing those of a
    revoked or expired predecessor) or to ``out`` (never overwriting):
    ``<name>.key`` (0600), ``<name>.crt`` and ``ca.crt``. ``hosts`` (coordinator
    only) are its TLS host names and IP addresses; the default is ``name``,
    ``localhost`` and ``127.0.0.1``.

    Raises:
        ConfigError: Invalid role, name (or the reserved ``ca``), hosts or
            validity; no CA in ``directory``; ``(role, name)`` holds a certificate
            that is neither revoked nor expired; the certificate would outlive the
            CA; or a file in ``out`` exists.
    """
    directory = Path(directory)
    role = Role.parse(role)
    validate_name(name)
    if name.lower() == "ca":
        raise ConfigError("the name 'ca' is reserved (ca.crt is the CA's certificate)")
    lifetime = _check_days(valid_days)
    hosts = _hosts(role, name, hosts)
    for host in hosts:
        parse_host(host)
    when = utc_now(now)
    ca = open_ca(directory)
    not_after = when + lifetime
    if not_after > ca.certificate.not_valid_after_utc:
        raise ConfigError(
            f"a {lifetime.days}-day certificate would outlive the CA (valid until "
            f"{ca.certificate.not_valid_after_utc.date()}); issue for fewer days or "
            "create a new CA"
        )
    dest = Path(out) if out is not None else directory / ISSUED_DIR / role.value / name
    key_path, cert_path, ca_path = dest / f"{name}.key", dest / f"{name}.crt", dest / CA_CERT_NAME
    with exclusive_lock(directory):
        ca_key = load_ca_key(ca)
        for entry in read_index(ca.index_path):
            if (entry.role, entry.name) == (role, name) and entry.revoked_at is None:
                if entry.not_after < when:
                    continue
                raise ConfigError(
                    f"{role.value} {name!r} already has a valid certificate (serial "
                    f"{entry.serial_hex}, expires {entry.not_after.date()}); revoke it first "
                    f"with `federation pki revoke {name} --role {role.value}`"
                )
        if out is not None:
            for path in (key_path, cert_path):
                if path.exists():
                    raise ConfigError(f"{path} already exists; refusing to overwrite it")
        key = generate_key()
        cert = leaf_certificate(
            ca_key,
            ca.certificate,
            key.public_key(),
            federation=ca.federation,
            role=role,
            name=name,
            hosts=hosts,
            not_before=when - CLOCK_SKEW,
            not_after=not_after,
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        # Record first: every certificate the CA signed must be revocable by name.
        append_issued(
            ca.index_path,
            IndexEntry(
                serial=cert.serial_number,
                role=role,
                name=name,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                fingerprint=fingerprint(cert),
            ),
        )
        record_pki_event(
            ca.directory,
            "certificate_issued",
            role=role.value,
            name=name,
            serial=f"{cert.serial_number:x}",
            fingerprint=fingerprint(cert),
            not_after=cert.not_valid_after_utc.isoformat(),
        )
        make_private_dir(dest)
        replace = out is None
        write_private_file(key_path, private_key_pem(key), replace=replace)
        write_public_file(cert_path, cert_pem, replace=replace)
        write_public_file(ca_path, ca.certificate_pem, replace=True)
    return IssuedCredential(identity_from_certificate(cert_pem), key_path, cert_path, ca_path)
