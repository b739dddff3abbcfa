"""A node checks the roster of a signed run itself: enrolled node identities only."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from federation.errors import ProtocolError
from federation.pki import Credentials, Role, init_ca, issue, load_credentials
from federation.simulation import LocalPKI
from nodes.roster import EnrolledRoster, signer_for


@pytest.fixture
def pki(tmp_path: Path) -> LocalPKI:
    return LocalPKI(tmp_path / "pki", insecure=False)


def _node(pki: LocalPKI, name: str) -> Credentials:
    where = pki.path(Role.NODE, name)
    assert where is not None
    return load_credentials(where)


def test_an_honest_roster_verifies_each_slots_signatures(pki: LocalPKI) -> None:
    nodes = [_node(pki, f"n{i}") for i in range(3)]
    roster = EnrolledRoster([c.cert_pem for c in nodes], nodes[1], 1)
    assert roster.names == ("n0", "n1", "n2")
    message = b"keys of slot 2"
    signature = signer_for(nodes[2])(message)
    assert roster.verify(2, message, signature)
    assert not roster.verify(0, message, signature)  # another slot's identity
    assert not roster.verify(2, b"other", signature)
    assert not roster.verify(7, message, signature)


def test_a_roster_with_a_foreign_certificate_is_refused(pki: LocalPKI, tmp_path: Path) -> None:
    nodes = [_node(pki, f"n{i}") for i in range(3)]
    init_ca(tmp_path / "other", "simulation")
    intruder = issue(tmp_path / "other", Role.NODE, "n2").certificate_path.read_bytes()
    with pytest.raises(ProtocolError, match="slot 2 is not an enrolled identity"):
        EnrolledRoster([nodes[0].cert_pem, nodes[1].cert_pem, intruder], nodes[0], 0)


def test_a_roster_with_another_role_a_duplicate_or_without_me_is_refused(
    pki: LocalPKI,
) -> None:
    nodes = [_node(pki, f"n{i}") for i in range(3)]
    analyst = load_credentials(pki.path(Role.ANALYST, "eve"))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"puts the analyst .eve. in slot 1"):
        EnrolledRoster([nodes[0].cert_pem, analyst.cert_pem, nodes[2].cert_pem], nodes[0], 0)
    with pytest.raises(ProtocolError, match="one node identity in several slots"):
        EnrolledRoster([nodes[0].cert_pem, nodes[1].cert_pem, nodes[1].cert_pem], nodes[0], 0)
    with pytest.raises(ProtocolError, match="own certificate in its slot 0"):
        EnrolledRoster([nodes[1].cert_pem, nodes[0].cert_pem, nodes[2].cert_pem], nodes[0], 0)


def test_an_expired_certificate_in_the_roster_is_refused(pki: LocalPKI) -> None:
    nodes = [_node(pki, f"n{i}") for i in range(2)]
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    old = issue(pki.directory, Role.NODE, "old", valid_days=2, now=past)
    with pytest.raises(ProtocolError, match="slot 2 is not an enrolled identity"):
        EnrolledRoster(
            [nodes[0].cert_pem, nodes[1].cert_pem, old.certificate_path.read_bytes()],
            nodes[0],
            0,
        )
