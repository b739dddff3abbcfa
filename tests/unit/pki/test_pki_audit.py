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
