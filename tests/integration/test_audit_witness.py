"""Nodes keep their own logs and watch the coordinator's, through real gRPC.

A rewrite or rollback of the coordinator's log, even one re-signed with its own key
(which its own ``audit verify`` cannot tell), is caught by every node on its next
task: the node stops serving, and nothing is released.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import federation as fed
from coordinator.jobs import JobSettings
from coordinator.service import Coordinator, CoordinatorSettings
from federation.audit.log import AuditLog, load_signer, read_log
from federation.audit.witness import RECEIPT_EVENT, verify_receipt
from federation.pki import Role
from federation.policy import DEFAULT_POLICY
from federation.simulation import LocalPKI
from nodes.agent import NodeAgent
from nodes.config import DatasetConfig, NodeConfig, SourceFormat

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
    ),
)
SQL = "SELECT g, COUNT(*) AS n, AVG(x) AS m FROM t GROUP BY g"


def _configs(tmp_path: Path, nodes: int = 3) -> list[NodeConfig]:
    gen = np.random.default_rng(7)
    configs = []
    for i in range(nodes):
        part = pd.DataFrame({"g": gen.choice(["a", "b"], 40), "x": gen.normal(5.0, 1.0, 40)})
        path = tmp_path / f"p{i}.csv"
        part.to_csv(path, index=False)
        configs.append(
            NodeConfig(
                f"n{i}",
                "",
                (DatasetConfig(SCHEMA, path, SourceFormat.CSV),),
                state_dir=tmp_path / f"state{i}",
            )
        )
    return configs


@contextmanager
def _federation(
    db: Path, configs: list[NodeConfig]
) -> Iterator[tuple[fed.Client, list[NodeAgent], Coordinator]]:
    """A coordinator on ``db`` and the nodes, all over mutual TLS from one local CA."""
    pki = LocalPKI(db.parent / "pki", insecure=False)
    coordinator = Coordinator(
        CoordinatorSettings(database=db, heartbeat_interval=0.5, jobs=JobSettings(5.0))
    )
    server = coordinator.serve(security=pki.coordinator())
    agents = [
        NodeAgent(
            NodeConfig(
                c.name,
                server.address,
                c.datasets,
                state_dir=c.state_dir,
                credentials=pki.path(Role.NODE, c.name),
            )
        )
        for c in configs
    ]
    try:
        for a in agents:
            a.start()
        for a in agents:
            assert a.registered.wait(10)
        with fed.connect(server.address, credentials=pki.path(Role.ANALYST, "ana")) as client:
            yield client, agents, coordinator
    finally:
        for a in agents:
            a.stop()
        coordinator.close()


def _receipts(db: Path) -> list[dict[str, object]]:
    entries, _, _, _ = read_log(f"{db}.audit")
    return [e for e in map(json.loads, entries) if e["event"] == RECEIPT_EVENT]


def test_every_task_leaves_a_signed_receipt_that_the_coordinator_proves_included(
    tmp_path: Path,
) -> None:
    configs = _configs(tmp_path)
    db = tmp_path / "coordinator.db"
    with _federation(db, configs) as (client, agents, coordinator):
        jobs = [client.query(SQL).job_id for _ in range(3)]
        keys = {a.config.name: a.audit.public_key for a in agents}
        # every node's last receipt is proven by the next task it gets
        coordinator.store.audit.flush()  # every receipt so far is in the log
        client.query("SELECT COUNT(*) FROM t")
        for agent in agents:
            assert agent.audit.failure is None
            # at most the newest job's receipt still waits for a proof
            assert len(agent.audit.witness.pending) <= 1
            assert agent.audit.witness.size > 0
            assert agent.audit.log.verify().ok
    receipts = _receipts(db)
    for job in jobs:
        mine = {r["node"]: r for r in receipts if r["job"] == job}
        assert set(mine) == {c.name for c in configs}
        for config in configs:
            receipt = mine[config.name]
            source = config.datasets[0].source
            assert receipt["dataset_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
            assert (
                receipt["policy_sha256"]
                == hashlib.sha256(DEFAULT_POLICY.to_json().encode()).hexdigest()
            )
            assert receipt["outcome"] == "contributed"
            entry = json.dumps(receipt, sort_keys=True, separators=(",", ":")).encode()
            verify_receipt(entry, config.name, keys[config.name])


def _rewrite(db: Path, how: str) -> None:
    """Play a coordinator that rewrites its own log and re-signs it with its own key."""
    path = Path(f"{db}.audit")
    entries, _, _, _ = read_log(path)
    if how == "rewrite":
        first = json.loads(entries[0])
        first["agent_version"] = "forged"
        entries[0] = json.dumps(first, sort_keys=True, separators=(",", ":")).encode()
    else:  # roll back the newest entries
        entries = entries[: len(entries) // 2]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    log = AuditLog(path, load_signer(Path(f"{db}.audit-key")))
    for entry in entries:
        log.append(entry)
    log.sign_head()
    assert log.verify().ok  # the coordinator's own check cannot tell
    log.close()


@pytest.mark.parametrize("how", ["rewrite", "rollback"])
def test_a_rewritten_or_rolled_back_coordinator_log_stops_every_node(
    tmp_path: Path, how: str
) -> None:
    configs = _configs(tmp_path)
    db = tmp_path / "coordinator.db"
    with _federation(db, configs) as (client, _, _):
        client.query(SQL)
        client.query(SQL)
    _rewrite(db, how)
    with _federation(db, configs) as (client, agents, _):
        with pytest.raises(fed.FederationError) as failure:
            client.query(SQL)
        assert "audit log" in str(failure.value)
        for agent in agents:
            assert agent.dead.wait(10), "a node kept serving a coordinator with a forged log"
            assert agent.audit.failure is not None
    # the node's own log records why it stopped
    own, _, _, _ = read_log(configs[0].state_dir / "audit.sqlite3")  # type: ignore[operator]
    assert json.loads(own[-1])["event"] == "coordinator_log_rejected"


def test_audit_show_prints_a_jobs_lineage_from_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from federation.cli.main import main

    configs = _configs(tmp_path)
    db = tmp_path / "coordinator.db"
    with _federation(db, configs) as (client, _, _):
        job = client.query(SQL).job_id
        other = client.query("SELECT COUNT(*) FROM t").job_id
    capsys.readouterr()
    assert main(["audit", "show", job, "--log", f"{db}.audit"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {job}")
    assert SQL in out
    assert "planned on dataset t: n0, n1, n2" in out
    for config in configs:
        digest = hashlib.sha256(config.datasets[0].source.read_bytes()).hexdigest()
        assert f"node {config.name} receipt: contributed" in out
        assert digest in out
    assert "released the result of 3 node(s)" in out
    assert "submitted by ana" in out  # the analyst's certificate names who asked
    assert "log verifies" in out
    assert other not in out  # only this job's lineage
    assert "DOES NOT VERIFY" not in out
    assert main(["audit", "show", "no-such-job", "--log", f"{db}.audit"]) == 1
    assert "no job 'no-such-job'" in capsys.readouterr().err
