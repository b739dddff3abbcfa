"""The roles of a federation's parties, safe names, and the canonical identity URI.

Every certificate the federation's CA issues names one party as the URI
``federation://<federation>/<role>/<name>`` in its SubjectAlternativeName; that
URI, not the subject, is what a peer is known by.

>>> identity_uri("acme", Role.NODE, "hospital-a")
'federation://acme/node/hospital-a'
>>> parse_identity_uri("federation://acme/analyst/alice")
('acme', <Role.ANALYST: 'analyst'>, 'alice')
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum

from federation.errors import CertificateError, ConfigError

__all__ = [
    "MAX_NAME_LENGTH",
    "URI_SCHEME",
    "Role",
    "identity_uri",
    "parse_host",
    "parse_identity_uri",
    "validate_name",
]

URI_SCHEME = "federation"
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class Role(StrEnum):
    """What a party may do in the federation; carried in OU and in the identity URI."""

    NODE = "node"
    """A data holder's agent."""
    ANALYST = "analyst"
    """Someone who submits queries."""
    AUDITOR = "auditor"
    """Someone who reads audit logs and job records."""
    COORDINATOR = "coordinator"
    """The coordinator service (the only TLS server)."""
    ADMIN = "admin"
    """Someone who operates the federation."""

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        """The role named ``value``.

        Raises:
            ConfigError: ``value`` names no role.
        """
        try:
            return cls(value)
        except ValueError:
            roles = ", ".join(r.value for r in cls)
            raise ConfigError(f"unknown role {value!r}: expected one of {roles}") from None


def validate_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is 1-64 characters of ``[A-Za-z0-9._-]`` and not ``.``/``..``.

    Raises:
        ConfigError: It is not (the message says what is allowed).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in {".", ".."}:
        raise ConfigError(
            f"invalid {what} {name!r}: use 1 to {MAX_NAME_LENGTH} characters of letters, "
            "digits, '.', '_' and '-' (and not '.' or '..')"
        )
    return name


def parse_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    """A TLS host name as an IP address if it parses as one, else a checked DNS name.

    Raises:
        ConfigError: Neither an IP address nor a DNS name (letters, digits and
            hyphens in dot-separated labels).
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.split(".") if isinstance(host, str) else []
    if not labels or len(host) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise ConfigError(
            f"invalid host {host!r}: expected an IP address or a DNS name "
            "(letters, digits and '-' in dot-separated labels)"
        )
    return host


def identity_uri(federation: str, role: Role, name: str) -> str:
    """The canonical identity of a party: ``federation://<federation>/<role>/<name>``."""
    return f"{URI_SCHEME}://{federation}/{role.value}/{name}"


def parse_identity_uri(uri: str) -> tuple[str, Role, str]:
    """Split an identity URI into ``(federation, role, name)``.

    Raises:
        CertificateError: Not of the form ``federation://<federation>/<role>/<name>``
            with a known role and safe names.
    """
    prefix = f"{URI_SCHEME}://"
    parts = uri[len(prefix) :].split("/") if uri.startswith(prefix) else []
    try:
        if len(parts) != 3:
            raise ConfigError("wrong shape")
        federation, role, name = parts
        return (
            validate_name(federation, what="federation"),
            Role.parse(role),
            validate_name(name),
        )
    except ConfigError:
        raise CertificateError(
            f"malformed identity URI {uri!r}: expected {URI_SCHEME}://<federation>/<role>/<name>"
        ) from None
