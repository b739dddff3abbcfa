"""The coordinator's audit trail through a real federation, verified offline by the CLI."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import federation as fed
from federation.audit.log import read_log

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
    ),
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "federation.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_jobs_are_recorded_signed_and_verifiable(tmp_path: Path) -> None:
    gen = np.random.default_rng(4)
    parts = [
        pd.DataFrame({"g": gen.choice(["a", "b"], 50).astype(object), "x": gen.random(50)})
        for _ in range(3)
    ]
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}, workdir=tmp_path) as client:
        ok = client.query("SELECT g, COUNT(*) FROM t GROUP BY g")
        with contextlib.suppress(fed.FederationError):
            client.query("SELECT nope FROM t")
    log_file = tmp_path / "coordinator.db.audit"
    entries, _, heads, _ = read_log(log_file)
    events = [json.loads(e) for e in entries]
    kinds = [e["event"] for e in events]
    assert kinds.count("node_registered") >= 3
    assert any(e["event"] == "query_submitted" and e["job"] == ok.job_id for e in events)
    assert any(e["event"] == "result_released" and e["job"] == ok.job_id for e in events)
    assert heads
    assert heads[-1].size == len(entries)

    verified = _cli("audit", "verify", "--log", str(log_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(entries)} entries" in verified.stdout

    exported = _cli("audit", "export", "--log", str(log_file))
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sum("entry_base64" in line for line in lines) == len(entries)
    assert sum("signed_tree_head" in line for line in lines) == len(heads)

    # rewrite one recorded query: the offline check names it
    index = next(i for i, e in enumerate(events) if e["event"] == "query_submitted")
    db = sqlite3.connect(log_file)
    with db:
        db.execute(
            "UPDATE entries SET entry = ? WHERE idx = ?",
            (entries[index].replace(b"COUNT", b"SUM"), index),
        )
    db.close()
    tampered = _cli("audit", "verify", "--log", str(log_file))
    assert tampered.returncode == 1
    assert f"first bad entry: {index}" in tampered.stdout
    missing = _cli("audit", "verify", "--log", str(tmp_path / "none.audit"))
    assert missing.returncode == 1
    assert "no audit log" in missing.stderr
