"""Dropouts, bad input and restarts, through real gRPC: clear errors, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

import federation as fed
from coordinator.jobs import JobSettings
from coordinator.service import Coordinator, CoordinatorSettings
from tests.reference import close, exact_mean

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("note", fed.ColumnType.TEXT),
    ),
)


def _parts(n_nodes: int, rows: int = 50, seed: int = 1) -> list[pd.DataFrame]:
    gen = np.random.default_rng(seed)
    return [
        pd.DataFrame(
            {
                "g": gen.choice(["a", "b"], rows).astype(object),
                "x": gen.normal(10.0, 2.0, rows),
                "note": ["n"] * rows,
            }
        )
        for _ in range(n_nodes)
    ]


@pytest.fixture(scope="module")
def fed3() -> Iterator[fed.Client]:
    with fed.simulate({"t": _parts(3)}, schemas={"t": SCHEMA}) as client:
        yield client


def test_dropout_before_upload_is_excluded_and_after_upload_is_counted() -> None:
    parts = _parts(5)
    with fed.simulate(
        {"t": parts}, schemas={"t": SCHEMA}, dropout={2: "after_keys", 4: "after_upload"}
    ) as client:
        r = client.query("SELECT COUNT(*), AVG(x) FROM t")
        covered = pd.concat([p for i, p in enumerate(parts) if i != 2])
        assert (r.selected_nodes, r.node_count) == (5, 4)
        [(n, m)] = r.rows
        assert n == len(covered)
        assert close(m, exact_mean(covered.x))
        # the federation keeps serving with the survivors
        again = client.query("SELECT COUNT(*) FROM t")
        assert again.node_count == 3


@pytest.mark.parametrize("stage", ["before_keys", "after_shares"])
def test_single_dropout_at_other_stages_is_tolerated(stage: str) -> None:
    parts = _parts(4)
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}, dropout={1: stage}) as client:
        r = client.query("SELECT COUNT(*) FROM t")
    assert r.node_count == 3
    assert r.rows == [(sum(len(p) for i, p in enumerate(parts) if i != 1),)]


def test_too_many_dropouts_fail_clearly_and_release_nothing() -> None:
    with fed.simulate(
        {"t": _parts(3)}, schemas={"t": SCHEMA}, dropout={0: "after_keys", 1: "after_shares"}
    ) as client:
        with pytest.raises(fed.TooFewParticipantsError) as info:
            client.query("SELECT COUNT(*) FROM t")
        assert info.value.job_id is not None
        record = client.job(info.value.job_id)
        assert record.status is fed.JobStatus.FAILED
        assert record.result is None
        assert record.error is not None
        assert record.error.code == "too_few_participants"


@pytest.mark.parametrize(
    ("sql", "error", "words"),
    [
        ("SELECT COUNT(*) FROM nowhere", fed.UnknownDatasetError, "nowhere"),
        ("SELECT AVG(height) FROM t", fed.UnknownColumnError, "height"),
        ("SELECT SUM(note) FROM t", fed.QueryTypeError, "note"),
        ("SELEC COUNT(*) FROM t", fed.QuerySyntaxError, ""),
        ("SELECT * FROM t", fed.NonAggregateQueryError, ""),
        ("SELECT x FROM t", fed.NonAggregateQueryError, "x"),
        ("SELECT COUNT(*) FROM t GROUP BY x", fed.QueryError, "x"),
    ],
)
def test_bad_queries_get_typed_errors_and_the_system_keeps_serving(
    fed3: fed.Client, sql: str, error: type[fed.FederationError], words: str
) -> None:
    with pytest.raises(error) as info:
        fed3.query(sql)
    assert words in info.value.message
    assert fed3.query("SELECT COUNT(*) FROM t").rows == [(150,)]


def test_oversized_query_text_is_refused(fed3: fed.Client) -> None:
    sql = "SELECT COUNT(*) FROM t WHERE " + " OR ".join(["x > 1"] * 20000)
    with pytest.raises(fed.MessageTooLargeError, match="limit"):
        fed3.query(sql)
    assert fed3.query("SELECT COUNT(*) FROM t").node_count == 3


def test_message_over_the_grpc_limit_gets_resource_exhausted(fed3: fed.Client) -> None:
    from federation.transport.options import MAX_MESSAGE_BYTES
    from federation.v1 import analyst_pb2, analyst_pb2_grpc

    channel = fed3.security.channel(fed3.address, [])
    stub = analyst_pb2_grpc.AnalystServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.SubmitQuery(analyst_pb2.SubmitQueryRequest(sql="x" * (MAX_MESSAGE_BYTES + 10))))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    channel.close()
    assert fed3.query("SELECT COUNT(*) FROM t").node_count == 3


def test_unknown_protocol_and_unknown_job(fed3: fed.Client) -> None:
    with pytest.raises(fed.FederationError, match="unknown protocol"):
        fed3.query("SELECT COUNT(*) FROM t", protocol="carrier-pigeon")
    with pytest.raises(fed.UnknownJobError, match="no job"):
        fed3.job("0" * 32)


def test_unreachable_coordinator_is_a_clear_error() -> None:
    with pytest.raises(fed.CoordinatorUnavailableError, match=r"127\.0\.0\.1:9"):
        fed.connect("127.0.0.1:9", timeout=0.5, insecure=True)


@pytest.mark.parametrize("protocol", ["secagg", "paillier", "ckks"])
def test_out_of_range_value_at_a_node_fails_the_job_naming_column_not_value(
    protocol: str,
) -> None:
    parts = _parts(3)
    parts[1].loc[0, "x"] = 3e13  # beyond the double range of |x| < 2**41
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}) as client:
        with pytest.raises(fed.ValueOutOfRangeError) as info:
            client.query("SELECT SUM(x) FROM t", protocol=protocol)
        assert "x" in info.value.message
        assert "node-1" in info.value.message
        assert "3e+13" not in info.value.message
        assert "30000000000000" not in info.value.message
        # other queries on the same federation still work
        assert client.query("SELECT COUNT(*) FROM t").rows == [(150,)]


def test_coordinator_restart_keeps_directory_and_jobs(tmp_path: Path) -> None:
    from nodes.agent import NodeAgent
    from nodes.config import DatasetConfig, NodeConfig, SourceFormat

    parts = _parts(3)
    configs = []
    for i, part in enumerate(parts):
        path = tmp_path / f"p{i}.csv"
        part.to_csv(path, index=False)
        configs.append(NodeConfig(f"n{i}", "", (DatasetConfig(SCHEMA, path, SourceFormat.CSV),)))
    db = tmp_path / "coordinator.db"

    def start() -> tuple[Coordinator, list[NodeAgent]]:
        coordinator = Coordinator(
            CoordinatorSettings(database=db, heartbeat_interval=0.5, jobs=JobSettings(10.0))
        )
        server = coordinator.serve()
        agents = [NodeAgent(NodeConfig(c.name, server.address, c.datasets)) for c in configs]
        for a in agents:
            a.start()
        for a in agents:
            assert a.registered.wait(10)
        return coordinator, agents

    coordinator, agents = start()
    with fed.connect(coordinator.address, insecure=True) as client:
        job_id = client.query("SELECT COUNT(*) AS n FROM t").job_id
    for a in agents:
        a.stop()
    coordinator.close()

    coordinator, agents = start()
    try:
        with fed.connect(coordinator.address, insecure=True) as client:
            record = client.job(job_id)
            assert record.status is fed.JobStatus.SUCCEEDED
            assert record.result is not None
            assert record.result.rows == ((150,),)
            assert {n.name for n in client.nodes()} == {"n0", "n1", "n2"}
            assert [d.schema.name for d in client.datasets()] == ["t"]
    finally:
        for a in agents:
            a.stop()
        coordinator.close()


def test_a_full_coordinator_says_so_and_a_waiting_node_gets_in_later(tmp_path: Path) -> None:
    """Every connected node holds one of the coordinator's calls; past ``max_calls`` a
    caller is told the coordinator is full (not a misleading size error), and a node
    agent keeps retrying instead of giving up."""
    from nodes.agent import NodeAgent
    from nodes.config import DatasetConfig, NodeConfig, SourceFormat

    coordinator = Coordinator(CoordinatorSettings(database=":memory:", jobs=JobSettings(5.0)))
    agents: list[NodeAgent] = []
    try:
        server = coordinator.serve(max_calls=2)
        for i, part in enumerate(_parts(3)):
            path = tmp_path / f"p{i}.csv"
            part.to_csv(path, index=False)
            dataset = DatasetConfig(SCHEMA, path, SourceFormat.CSV)
            agents.append(NodeAgent(NodeConfig(f"n{i}", server.address, (dataset,))))
        for agent in agents[:2]:
            agent.start()
            assert agent.registered.wait(10)
        agents[2].start()  # both calls are held by n0's and n1's streams
        with pytest.raises(fed.CoordinatorUnavailableError, match="as many calls as it may"):
            fed.connect(server.address, insecure=True, timeout=5)
        assert not agents[2].registered.wait(1.5)
        assert not agents[2].dead.is_set()  # still retrying
        agents[0].stop()  # frees a call: n2 gets in on its next attempt
        assert agents[2].registered.wait(15)
        assert [n.name for n in coordinator.list_nodes() if n.online] == ["n1", "n2"]
    finally:
        for agent in agents:
            agent.stop()
        coordinator.close()
