"""The CA records every certificate it issues and revokes in its own signed log."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from federation.audit.log import read_log
from federation.pki import Role, init_ca, issue, revoke


def test_issue_and_revoke_are_in_a_verifiable_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from federation.cli.main import main

    ca = tmp_path / "pki"
    init_ca(ca, "acme")
    node = issue(ca, Role.NODE, "hospital-a")
    issue(ca, Role.ANALYST, "alice")
    revoke(ca, "alice", reason="left the project")
    entries, _, heads, _ = read_log(ca / "audit.sqlite3")
    events = [json.loads(e) for e in entries]
    assert [e["event"] for e in events] == [
        "ca_created",
        "certificate_issued",
        "certificate_issued",
        "certificate_revoked",
    ]
    assert events[1]["name"] == "hospital-a"
    assert events[1]["serial"] == f"{node.identity.serial:x}"
    assert events[1]["fingerprint"] == node.identity.fingerprint
    assert (events[3]["name"], events[3]["role"], events[3]["reason"]) == (
        "alice",
        "analyst",
        "left the project",
    )
    assert events[3]["serial"] == events[2]["serial"]
    assert heads[-1].size == len(entries)
    assert stat.S_IMODE((ca / "audit.key").stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["audit", "verify", "--log", str(ca / "audit.sqlite3")]) == 0
    assert "4 entries" in capsys.readouterr().out


def test_the_crl_is_refreshed_with_every_revocation_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import datetime

    from federation.cli.main import main
    from federation.pki import load_revoked_serials, refresh_crl
    from federation.pki.crl import crl_next_update

    ca = tmp_path / "pki"
    init_ca(ca, "acme")
    bob = issue(ca, Role.ANALYST, "bob")
    revoke(ca, "bob")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=6)
    refresh_crl(ca, now=later)
    pem, ca_pem = (ca / "crl.pem").read_bytes(), (ca / "ca.crt").read_bytes()
    assert load_revoked_serials(pem, ca_pem) == {bob.identity.serial}  # kept
    due = crl_next_update(pem)
    assert due is not None
    assert due > later + datetime.timedelta(days=6)  # 7 more days from the refresh
    assert main(["pki", "crl", "--dir", str(ca)]) == 0
    assert "re-signed" in capsys.readouterr().out
    entries, _, _, _ = read_log(ca / "audit.sqlite3")
    assert [json.loads(e)["event"] for e in entries][-2:] == ["crl_refreshed", "crl_refreshed"]
