"""Roles, names, hosts and identity URIs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from federation.errors import CertificateError, ConfigError
from federation.pki.roles import (
    Role,
    identity_uri,
    parse_host,
    parse_identity_uri,
    validate_name,
)


def test_roles() -> None:
    assert [r.value for r in Role] == ["node", "analyst", "auditor", "coordinator", "admin"]
    assert Role.parse("auditor") is Role.AUDITOR
    assert Role.parse(Role.ADMIN) is Role.ADMIN
    assert Role.NODE == "node"
    with pytest.raises(ConfigError, match="unknown role 'Node': expected one of node, analyst"):
        Role.parse("Node")


@pytest.mark.parametrize("name", ["a", "hospital-a", "n.1", "A_B", "x" * 64, "..."])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "a b", "a:b", "ü", "x" * 65, "a\n", "a\x00"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"1 to 64 characters of letters, digits"):
        validate_name(name)


def test_non_string_names() -> None:
    with pytest.raises(ConfigError):
        validate_name(7)  # type: ignore[arg-type]


def test_hosts() -> None:
    assert parse_host("10.0.0.1") == IPv4Address("10.0.0.1")
    assert parse_host("::1") == IPv6Address("::1")
    assert parse_host("coord.example.org") == "coord.example.org"
    assert parse_host("localhost") == "localhost"
    for bad in ["", "a b", "-a", "a-", "a..b", "a_b", "x" * 64, "a.b/c", "*.example.org"]:
        with pytest.raises(ConfigError, match="invalid host"):
            parse_host(bad)


def test_identity_uri_round_trip() -> None:
    for role in Role:
        uri = identity_uri("acme", role, "p-1")
        assert uri == f"federation://acme/{role.value}/p-1"
        assert parse_identity_uri(uri) == ("acme", role, "p-1")
    with pytest.raises(CertificateError, match="malformed identity URI"):
        parse_identity_uri("https://acme/node/n1")
