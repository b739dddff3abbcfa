"""Mutual TLS identities and roles, through real gRPC with real certificates.

The simulation makes its own CA (``workdir/pki``) exactly as ``federation pki init``
and ``issue`` would; every test below talks to its coordinator with certificates
issued there (or elsewhere, to be refused).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

import federation as fed
from coordinator.jobs import JobSettings
from coordinator.service import Coordinator, CoordinatorSettings
from federation.audit.log import read_log
from federation.cli.main import main
from federation.dp.report import DPParams
from federation.errors import (
    AccessDeniedError,
    CertificateError,
    ConfigError,
    CoordinatorUnavailableError,
    RateLimitError,
    UnknownNodeError,
)
from federation.messages import QueryRequest
from federation.pki import Role, init_ca, issue, revoke
from federation.schema import Column, ColumnType, DatasetSchema
from federation.simulation import LocalPKI
from federation.transport.access import RateLimit
from federation.transport.server import with_analyst
from federation.v1 import node_pb2, node_pb2_grpc
from nodes.agent import NodeAgent
from nodes.config import DatasetConfig, NodeConfig, SourceFormat

PARTS = [
    pd.DataFrame({"g": np.random.default_rng(i).choice(["a", "b"], 30), "x": np.arange(30.0)})
    for i in range(3)
]
SQL = "SELECT g, COUNT(*) AS n FROM t GROUP BY g"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mtls")


@pytest.fixture(scope="module")
def client(workdir: Path) -> Iterator[fed.Client]:
    with fed.simulate({"t": PARTS}, workdir=workdir) as c:
        yield c


def _pki(workdir: Path) -> LocalPKI:
    return LocalPKI(workdir / "pki", insecure=False)


def _expected() -> dict[object, object]:
    return dict(pd.concat(PARTS).groupby("g").size().to_dict())


def _rows(result: fed.QueryResult) -> dict[object, object]:
    return {row[0]: row[1] for row in result.rows}


def test_the_analyst_is_who_its_certificate_says(client: fed.Client, workdir: Path) -> None:
    assert client.security.secure
    assert client.analyst == "analyst"
    result = client.query(SQL)
    assert _rows(result) == _expected()
    entries, _, _, _ = read_log(workdir / "coordinator.db.audit")
    submitted = [json.loads(e) for e in entries if b'"query_submitted"' in e]
    assert submitted[-1]["analyst"] == "analyst"  # recorded from the certificate


def test_roles_admit_only_their_calls(client: fed.Client, workdir: Path) -> None:
    pki = _pki(workdir)
    with fed.connect(client.address, credentials=pki.path(Role.AUDITOR, "audrey")) as auditor:
        assert [d.schema.name for d in auditor.datasets()] == ["t"]  # may read
        job = client.query(SQL).job_id
        assert auditor.job(job).status is fed.JobStatus.SUCCEEDED
        with pytest.raises(
            AccessDeniedError, match=r"auditor \('audrey'\) may not call SubmitQuery"
        ):
            auditor.query(SQL)
    # a node's certificate cannot query, only serve
    with (
        fed.connect(client.address, credentials=pki.path(Role.NODE, "node-0")) as node,
        pytest.raises(AccessDeniedError, match="may not call SubmitQuery"),
    ):
        node.query(SQL)
    # an analyst's certificate cannot serve as a node
    analyst = fed.connect(client.address, credentials=pki.path(Role.ANALYST, "x")).security
    channel = analyst.channel(client.address, [])
    stub = node_pb2_grpc.NodeServiceStub(channel)
    hello = node_pb2.NodeMessage(register=node_pb2.Register(node_name="x", protocol_version=1))
    with pytest.raises(grpc.RpcError) as info:
        next(iter(stub.Connect(iter([hello]), timeout=5)))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel.close()
    assert _rows(client.query(SQL)) == _expected()  # still serving


def test_a_node_registers_only_under_its_own_name(client: fed.Client, workdir: Path) -> None:
    pki = _pki(workdir)
    security = fed.connect(client.address, credentials=pki.path(Role.NODE, "node-0")).security
    channel = security.channel(client.address, [])
    stub = node_pb2_grpc.NodeServiceStub(channel)
    hello = node_pb2.NodeMessage(register=node_pb2.Register(node_name="node-1", protocol_version=1))
    with pytest.raises(grpc.RpcError) as info:
        next(iter(stub.Connect(iter([hello]), timeout=5)))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "cannot register as node 'node-1'" in str(info.value.details())
    channel.close()
    nodes = client.nodes()
    assert len(nodes) == 3
    assert all(n.online for n in nodes)


def test_a_revoked_certificate_is_refused_before_any_handler(
    client: fed.Client, workdir: Path
) -> None:
    pki = _pki(workdir)
    mallory = fed.connect(client.address, credentials=pki.path(Role.ANALYST, "mallory"))
    assert _rows(mallory.query(SQL)) == _expected()
    revoke(workdir / "pki", "mallory", reason="left the project")

    def submitted() -> int:
        entries, _, _, _ = read_log(workdir / "coordinator.db.audit")
        return sum(b'"query_submitted"' in e for e in entries)

    before = submitted()
    with pytest.raises(CertificateError, match=r"'mallory'.*is revoked"):
        mallory.query(SQL)
    with pytest.raises(CertificateError, match="revoked"):
        mallory.datasets()
    assert submitted() == before  # no handler ran: nothing was recorded
    mallory.close()
    assert _rows(client.query(SQL)) == _expected()


def test_foreign_expired_and_plaintext_clients_fail_the_handshake(
    client: fed.Client, workdir: Path, tmp_path: Path
) -> None:
    init_ca(tmp_path / "other", "simulation")  # same federation name, another CA
    eve = issue(tmp_path / "other", Role.ANALYST, "eve").key_path.parent
    with pytest.raises(CoordinatorUnavailableError, match=r"TLS handshake.*certificate"):
        fed.connect(client.address, credentials=eve, timeout=5)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    old = issue(workdir / "pki", Role.ANALYST, "old", valid_days=2, now=past)
    with pytest.raises(CoordinatorUnavailableError, match="rejected this party's certificate"):
        fed.connect(client.address, credentials=old.key_path.parent, timeout=5)
    with pytest.raises(CoordinatorUnavailableError, match="refuses plaintext clients"):
        fed.connect(client.address, insecure=True, timeout=5)
    assert _rows(client.query(SQL)) == _expected()


def test_connect_insists_on_credentials_or_an_explicit_insecure(
    client: fed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDERATION_CREDENTIALS", raising=False)
    with pytest.raises(ConfigError, match="insecure=True"):
        fed.connect(client.address)


def test_an_analyst_spends_only_its_own_budget() -> None:
    query = QueryRequest("SELECT 1", dp=DPParams(epsilon=1.0, analyst="bob"))
    with pytest.raises(AccessDeniedError, match="'alice' cannot spend the DP budget"):
        with_analyst(query, "alice")
    mine = with_analyst(QueryRequest("SELECT 1", dp=DPParams(epsilon=1.0)), "alice")
    assert mine.analyst == "alice"
    assert mine.dp is not None
    assert mine.dp.analyst == "alice"


def test_each_identity_has_a_rate_limit(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path / "pki", insecure=False)
    coordinator = Coordinator(CoordinatorSettings(database=":memory:", jobs=JobSettings(5.0)))
    try:
        server = coordinator.serve(security=pki.coordinator(), rate=RateLimit(0.5, 3))
        credentials = pki.path(Role.ANALYST, "busy")
        with fed.connect(server.address, credentials=credentials) as busy:  # GetInfo: 1
            busy.datasets()
            busy.datasets()  # 3 calls: the burst
            with pytest.raises(RateLimitError, match="'busy' exceeds its rate limit"):
                busy.datasets()
        with fed.connect(server.address, credentials=pki.path(Role.ANALYST, "calm")) as calm:
            assert calm.datasets() == []  # another identity has its own bucket
    finally:
        coordinator.close()


def _agent(tmp_path: Path, address: str, credentials: Path) -> NodeAgent:
    """Node ``n0`` serving the first partition as ``t``, over mutual TLS."""
    tmp_path.mkdir(exist_ok=True)
    source = tmp_path / "t.csv"
    PARTS[0].to_csv(source, index=False)
    g = Column("g", ColumnType.CATEGORICAL, domain=("a", "b"))
    schema = DatasetSchema("t", (g, Column("x", ColumnType.DOUBLE)))
    config = NodeConfig(
        "n0", address, (DatasetConfig(schema, source, SourceFormat.CSV),), credentials=credentials
    )
    return NodeAgent(config)


def test_a_node_over_its_rate_limit_at_registration_retries(tmp_path: Path) -> None:
    """A refill, unlike a refusal, passes: the agent retries instead of giving up."""
    pki = LocalPKI(tmp_path / "pki", insecure=False)
    coordinator = Coordinator(CoordinatorSettings(database=":memory:", jobs=JobSettings(5.0)))
    agent: NodeAgent | None = None
    try:
        server = coordinator.serve(security=pki.coordinator(), rate=RateLimit(2.0, 1))
        credentials = pki.path(Role.NODE, "n0")
        security = fed.connect(server.address, credentials=credentials).security
        channel = security.channel(server.address, [])
        stub = node_pb2_grpc.NodeServiceStub(channel)
        hello = node_pb2.NodeMessage(register=node_pb2.Register(node_name="n0"))
        with pytest.raises(grpc.RpcError):  # spends n0's one token (and is refused)
            next(iter(stub.Connect(iter([hello]), timeout=5)))
        channel.close()
        agent = _agent(tmp_path, server.address, credentials)
        agent.start()  # its first Connect is over the rate: refused, retried 0.5 s later
        assert agent.registered.wait(10)
        assert not agent.dead.is_set()
        assert [n.name for n in coordinator.list_nodes() if n.online] == ["n0"]
    finally:
        if agent is not None:
            agent.stop()
        coordinator.close()


def test_a_second_agent_under_one_name_takes_over_and_the_first_stops(tmp_path: Path) -> None:
    """The older stream is closed with the reason; its agent stops instead of taking
    the name back (which would make the two flap for ever)."""
    pki = LocalPKI(tmp_path / "pki", insecure=False)
    coordinator = Coordinator(CoordinatorSettings(database=":memory:", jobs=JobSettings(5.0)))
    agents: list[NodeAgent] = []
    try:
        server = coordinator.serve(security=pki.coordinator())
        credentials = pki.path(Role.NODE, "n0")
        first = _agent(tmp_path / "first", server.address, credentials)
        agents.append(first)
        first.start()
        assert first.registered.wait(10)
        second = _agent(tmp_path / "second", server.address, credentials)
        agents.append(second)
        second.start()
        assert second.registered.wait(10)
        assert first.dead.wait(10)  # told it was replaced: stopped, did not reconnect
        assert not second.dead.is_set()
        assert [n.name for n in coordinator.list_nodes() if n.online] == ["n0"]
        with fed.connect(server.address, credentials=pki.path(Role.ANALYST, "a")) as analyst:
            assert analyst.datasets()[0].node_count == 1
    finally:
        for agent in agents:
            agent.stop()
        coordinator.close()


def test_an_admin_removes_an_offline_node_from_the_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = LocalPKI(tmp_path / "pki", insecure=False)
    db = tmp_path / "coordinator.db"
    coordinator = Coordinator(CoordinatorSettings(database=db, jobs=JobSettings(5.0)))
    agents: list[NodeAgent] = []
    try:
        server = coordinator.serve(security=pki.coordinator())
        agents.append(_agent(tmp_path / "n0", server.address, pki.path(Role.NODE, "n0")))
        agents[0].start()
        assert agents[0].registered.wait(10)
        admin = pki.path(Role.ADMIN, "root")
        analyst = fed.connect(server.address, credentials=pki.path(Role.ANALYST, "a"))
        with analyst, pytest.raises(AccessDeniedError, match="may not call ForgetNode"):
            analyst.forget_node("n0")
        with fed.connect(server.address, credentials=admin) as root:
            with pytest.raises(ConfigError, match="'n0' is online"):
                root.forget_node("n0")
            with pytest.raises(UnknownNodeError, match=r"'ghost'.*\['n0'\]"):
                root.forget_node("ghost")
            agents[0].stop()
            deadline = time.monotonic() + 10
            while any(n.online for n in root.nodes()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [(n.name, n.online) for n in root.nodes()] == [("n0", False)]
            argv = ["nodes", "-c", server.address, "--credentials", str(admin), "--forget", "n0"]
            assert main(argv) == 0
            assert "node n0 removed from the directory" in capsys.readouterr().out
            assert root.nodes() == []
            assert root.datasets() == []
        # The removal is on the record, with who asked; the node may come back anew.
        events = [json.loads(e) for e in read_log(f"{db}.audit")[0]]
        forgotten = [e for e in events if e["event"] == "node_forgotten"]
        assert [(e["node"], e["by"]) for e in forgotten] == [
            ("n0", "federation://simulation/admin/root")
        ]
        agents.append(_agent(tmp_path / "n0", server.address, pki.path(Role.NODE, "n0")))
        agents[1].start()
        assert agents[1].registered.wait(10)
        assert [n.name for n in coordinator.list_nodes()] == ["n0"]
    finally:
        for agent in agents:
            agent.stop()
        coordinator.close()


def test_runs_are_signed_and_a_different_query_at_one_node_releases_nothing(
    client: fed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.directory import NodeSession
    from federation.messages import TaskAssignment
    from federation.query import bind_query, parse_query

    stages: list[str] = []
    result = client.query(SQL, progress=lambda p: stages.append(p.stage))
    assert "consistency" in stages  # the actively secure variant runs over mutual TLS
    assert _rows(result) == _expected()

    # A coordinator that sends node 1 another computation (with that computation's
    # own, honest fingerprint, so node 1's own check passes): the nodes' signatures
    # bind different computations, and the run aborts before any share is revealed.
    schema = client.datasets()[0].schema
    other = "SELECT g, COUNT(*) AS n FROM t WHERE x > 3 GROUP BY g"
    other_fingerprint = bind_query(parse_query(other), schema).fingerprint
    honest_assign = NodeSession.assign

    def lying_assign(self: NodeSession, task: TaskAssignment) -> None:
        if task.secagg is not None and task.secagg.slot == 1:
            task = dataclasses.replace(task, sql=other, fingerprint=other_fingerprint)
        honest_assign(self, task)

    monkeypatch.setattr(NodeSession, "assign", lying_assign)
    with pytest.raises(fed.ProtocolError, match="do not carry that node's valid signature"):
        client.query(SQL)
    monkeypatch.setattr(NodeSession, "assign", honest_assign)
    assert _rows(client.query(SQL)) == _expected()


def test_auditors_read_the_coordinators_log_over_grpc(
    client: fed.Client, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from federation.cli.main import main
    from federation.transport.audit_service import fetch_log

    job = client.query(SQL).job_id
    pki = _pki(workdir)
    auditor = pki.path(Role.AUDITOR, "audrey")
    entries, roots, heads, key = fetch_log(
        client.address, fed.connect(client.address, credentials=auditor).security
    )
    on_disk, disk_roots, _, disk_key = read_log(workdir / "coordinator.db.audit")
    assert key == disk_key
    assert entries == on_disk[: len(entries)]  # the same bytes as the file
    assert roots == disk_roots[: len(roots)]
    assert heads
    capsys.readouterr()
    args = ["-c", client.address, "--credentials", str(auditor), "--public-key", key.hex()]
    assert main(["audit", "verify", *args]) == 0
    assert "signed tree heads verify" in capsys.readouterr().out
    assert main(["audit", "show", job, *args]) == 0
    assert f"job {job}" in capsys.readouterr().out
    analyst = pki.path(Role.ANALYST, "analyst")
    assert main(["audit", "verify", "-c", client.address, "--credentials", str(analyst)]) == 1
    assert "may not call GetLog" in capsys.readouterr().err


def test_a_substituted_mask_key_in_a_homomorphic_job_is_refused(
    client: fed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.directory import NodeSession
    from federation.crypto.keys import X25519KeyPair
    from federation.messages import TaskAssignment

    assert _rows(client.query(SQL, protocol="paillier")) == _expected()  # honest: fine
    forged = X25519KeyPair.generate().public_bytes  # a key the coordinator controls
    honest_assign = NodeSession.assign

    def lying_assign(self: NodeSession, task: TaskAssignment) -> None:
        if task.he is not None and task.he.slot == 0:
            peers = tuple((j, forged if j == 1 else k) for j, k in task.he.peers)
            task = dataclasses.replace(task, he=dataclasses.replace(task.he, peers=peers))
        honest_assign(self, task)

    monkeypatch.setattr(NodeSession, "assign", lying_assign)
    with pytest.raises(fed.ProtocolError, match="mask key of slot 1 does not carry"):
        client.query(SQL, protocol="paillier")
    monkeypatch.setattr(NodeSession, "assign", honest_assign)
    assert _rows(client.query(SQL, protocol="paillier")) == _expected()
