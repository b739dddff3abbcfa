"""``federation pki init | issue | revoke | list`` end to end, through the real entry point."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from federation.cli import pki as pki_cli
from federation.cli.main import main
from federation.pki import Role, identity_from_certificate, load_revoked_serials


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_issue_revoke_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "pki")
    code, out, _ = _run(capsys, "pki", "init", "--federation", "acme", "--dir", d, "--days", "90")
    assert code == 0
    assert "created the CA of federation 'acme'" in out
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600

    code, out, _ = _run(capsys, "pki", "issue", "node", "hospital-a", "--dir", d, "--days", "30")
    assert code == 0
    assert "issued federation://acme/node/hospital-a" in out
    key, crt, ca = (Path(line.strip()) for line in out.splitlines()[1:])
    assert key == tmp_path / "pki" / "issued" / "node" / "hospital-a" / "hospital-a.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert identity_from_certificate(crt.read_bytes()).role is Role.NODE
    assert ca.read_bytes() == (tmp_path / "pki" / "ca.crt").read_bytes()

    code, out, _ = _run(
        capsys,
        "pki",
        "issue",
        "coordinator",
        "coord",
        "--host",
        "10.0.0.9",
        "--dir",
        d,
        "--days",
        "89",
    )
    assert code == 0
    assert "federation://acme/coordinator/coord" in out

    code, out, _ = _run(capsys, "pki", "list", "--dir", d)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ROLE", "NAME", "SERIAL", "EXPIRES", "REVOKED"]
    assert lines[2].split()[:2] == ["node", "hospital-a"]
    assert lines[2].split()[-1] == "-"

    code, out, _ = _run(
        capsys, "pki", "revoke", "hospital-a", "--reason", "laptop lost", "--dir", d
    )
    assert code == 0
    serial = int(out.splitlines()[0].removeprefix("revoked serial "), 16)
    crl = (tmp_path / "pki" / "crl.pem").read_bytes()
    assert load_revoked_serials(crl, ca.read_bytes()) == {serial}

    code, out, _ = _run(capsys, "pki", "list", "--dir", d, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["role"], r["name"]) for r in rows] == [
        ("node", "hospital-a"),
        ("coordinator", "coord"),
    ]
    assert rows[0]["serial"] == format(serial, "x")
    assert rows[0]["reason"] == "laptop lost"
    assert rows[0]["revoked_at"] is not None
    assert rows[1]["revoked_at"] is None


def test_errors_exit_1_with_the_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "pki")
    code, _, err = _run(capsys, "pki", "issue", "node", "n1", "--dir", d)
    assert code == 1
    assert err.startswith("error [invalid_config]: no CA in")
    assert _run(capsys, "pki", "init", "--federation", "acme", "--dir", d)[0] == 0
    code, _, err = _run(capsys, "pki", "init", "--federation", "acme", "--dir", d)
    assert code == 1
    assert "a CA already exists at" in err
    code, _, err = _run(capsys, "pki", "issue", "node", "bad/name", "--dir", d)
    assert (code, "invalid name 'bad/name'" in err) == (1, True)
    assert _run(capsys, "pki", "issue", "node", "n1", "--dir", d)[0] == 0
    code, _, err = _run(capsys, "pki", "issue", "node", "n1", "--dir", d)
    assert (code, "already has a valid certificate" in err) == (1, True)
    code, _, err = _run(capsys, "pki", "issue", "analyst", "a", "--host", "x.org", "--dir", d)
    assert (code, "only to a coordinator" in err) == (1, True)
    code, _, err = _run(capsys, "pki", "revoke", "ghost", "--dir", d)
    assert (code, "no certificate was issued to 'ghost'" in err) == (1, True)
    code, out, _ = _run(capsys, "pki", "list", "--dir", d)
    assert len(out.splitlines()) == 3


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pki", "issue", "operator", "x"])
    assert exc.value.code == 2
    assert "invalid choice: 'operator'" in capsys.readouterr().err


def test_dir_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDERATION_PKI", str(tmp_path / "from-env"))
    assert _run(capsys, "pki", "init", "--federation", "acme")[0] == 0
    assert (tmp_path / "from-env" / "ca.crt").exists()
    monkeypatch.delenv("FEDERATION_PKI")
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "pki", "init", "--federation", "acme")[0] == 0
    assert (tmp_path / "pki" / "ca.crt").exists()
    code, out, _ = _run(capsys, "pki", "list")
    assert (code, out) == (0, "no certificates issued\n")


def test_issue_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, out_dir = str(tmp_path / "pki"), tmp_path / "for-alice"
    assert _run(capsys, "pki", "init", "--federation", "acme", "--dir", d)[0] == 0
    code, out, _ = _run(
        capsys, "pki", "issue", "analyst", "alice", "--out", str(out_dir), "--dir", d
    )
    assert code == 0
    assert str(out_dir / "alice.key") in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["alice.crt", "alice.key", "ca.crt"]


def test_cli_role_choices_are_the_roles() -> None:
    assert list(pki_cli._ROLES) == [r.value for r in Role]
