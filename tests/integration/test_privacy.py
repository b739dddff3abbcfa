"""The privacy property itself: the coordinator never holds a node's unmasked contribution.

We run a real federation (gRPC on loopback), recompute each node's unmasked
vector independently from its own partition, and then search everything the
coordinator holds in memory (its object graph, including the protocol state
machine), everything it logged, and its SQLite files for that vector.
"""

from __future__ import annotations

import gc
import logging
import types
from collections import deque
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import federation as fed
from coordinator import secagg_run
from coordinator.jobs import JobSettings
from coordinator.service import Coordinator, CoordinatorSettings
from federation.protocols.secagg import CoordinatorSecAgg
from federation.query import bind_query, compute_local, parse_query
from nodes.agent import NodeAgent
from nodes.config import DatasetConfig, NodeConfig, SourceFormat

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        fed.Column("x", fed.ColumnType.DOUBLE),
    ),
)
SQL = "SELECT g, COUNT(*), SUM(x), VAR_SAMP(x) FROM t GROUP BY g"


def _reachable(roots: list[object], limit: int = 500_000) -> list[object]:
    """Objects reachable from ``roots`` through references, modules and classes excluded."""
    seen: set[int] = set()
    out: list[object] = []
    queue: deque[object] = deque(roots)
    skip = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
    while queue and len(out) < limit:
        obj = queue.popleft()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        out.append(obj)
        queue.extend(gc.get_referents(obj))
    return out


def _unmasked_vector(part: pd.DataFrame) -> np.ndarray:
    bound = bind_query(parse_query(SQL), SCHEMA)
    con = duckdb.connect(config={"threads": 1})
    con.register("raw", part)
    con.execute("CREATE VIEW v AS SELECT CAST(g AS VARCHAR) AS g, CAST(x AS DOUBLE) AS x FROM raw")
    try:
        row = con.execute("SELECT avg(x) FROM v").fetchone()  # as the node centres its squares
        assert row is not None
        return compute_local(bound, con, "v", centers={"x": row[0]})
    finally:
        con.close()


def test_coordinator_memory_logs_and_state_never_hold_a_nodes_contribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gen = np.random.default_rng(5)
    parts = [
        pd.DataFrame(
            {"g": gen.choice(["a", "b", "c"], n).astype(object), "x": 1e6 + gen.normal(0, 50, n)}
        )
        for n in (40, 55, 70)
    ]
    contributions = [_unmasked_vector(p) for p in parts]
    machines: list[CoordinatorSecAgg] = []
    masked_seen: list[int] = []

    def assert_holds_no_contribution(roots: list[object]) -> int:
        objects = _reachable(roots)
        arrays = [
            o for o in objects if isinstance(o, np.ndarray) and o.shape == contributions[0].shape
        ]
        blobs = [bytes(o) for o in objects if isinstance(o, (bytes, bytearray)) and len(o) >= 16]
        for c in contributions:
            assert not any(np.array_equal(a, c) for a in arrays)
            raw = c.astype("<u8").tobytes()
            assert not any(raw in b for b in blobs)
        return len(arrays)

    class Recording(CoordinatorSecAgg):
        """Checks the state machine's memory after every message it takes in."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            machines.append(self)

        def receive(self, message: object) -> None:
            super().receive(message)  # type: ignore[arg-type]
            masked_seen.append(assert_holds_no_contribution([self]))

    monkeypatch.setattr(secagg_run, "CoordinatorSecAgg", Recording)
    configs = []
    for i, part in enumerate(parts):
        path = tmp_path / f"p{i}.parquet"
        part.to_parquet(path)
        configs.append(DatasetConfig(SCHEMA, path, SourceFormat.PARQUET))
    coordinator = Coordinator(
        CoordinatorSettings(
            database=tmp_path / "c.db", heartbeat_interval=0.5, jobs=JobSettings(10.0)
        )
    )
    coordinator.serve()
    agents = [
        NodeAgent(NodeConfig(f"n{i}", coordinator.address, (c,))) for i, c in enumerate(configs)
    ]
    try:
        for a in agents:
            a.start()
        for a in agents:
            assert a.registered.wait(10)
        with fed.connect(coordinator.address, insecure=True) as client:
            result = client.query(SQL)
        assert result.node_count == 3
        total = sum((c for c in contributions), np.zeros_like(contributions[0]))

        # memory, during the protocol: teeth, the walk did reach the vectors it holds
        # (the machine folds masked inputs into one running sum as they arrive)
        assert machines, "the test must capture the coordinator's state machine"
        assert len(masked_seen) >= 12  # 3 nodes x 4 rounds, each one checked
        assert max(masked_seen) >= 1
        # memory, after the job: the coordinator and its protocol state
        assert_holds_no_contribution([coordinator, *machines])
        objects = _reachable([coordinator, *machines])
        assert any(isinstance(o, np.ndarray) and np.array_equal(o, total) for o in objects)

        # logs: no element of a contribution (large enough not to collide by chance)
        text = "\n".join(r.getMessage() for r in caplog.records)
        for c in contributions:
            for value in c.view(np.int64):
                if abs(int(value)) > 10**6:
                    assert str(int(value)) not in text
                    assert str(int(value) % 2**64) not in text
    finally:
        for a in agents:
            a.stop()
        coordinator.close()

    # persistent state: the SQLite files
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("c.db*"))
    assert stored  # the database exists and was written
    for c in contributions:
        assert c.astype("<u8").tobytes() not in stored
