"""The pure policy module: parsing and validation, checks against bound queries,
suppression in finalize, and the policy on the wire and in the store."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import grpc
import numpy as np
import pandas as pd
import pytest

from coordinator.store import Store
from federation.errors import ConfigError, DisclosureControlError, PolicyViolationError
from federation.messages import DatasetInfo, Protocol, Registration, SecAggSetup, TaskAssignment
from federation.policy import DEFAULT_POLICY, STATISTICS, ApprovalMode, Policy, strictest
from federation.policy_check import (
    check_query,
    check_query_set,
    check_task,
    column_uses,
    local_query_set_size,
)
from federation.query import BoundQuery, bind_query, compute_local, finalize, parse_query
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.transport.serde import (
    dataset_info_from_proto,
    dataset_info_to_proto,
    policy_from_proto,
    policy_to_proto,
)
from federation.transport.serde_node import (
    coordinator_message_to_proto,
    node_message_from_proto,
    node_messages_to_proto,
)
from federation.transport.status import STATUS_BY_CODE
from nodes.config import load_node_config, node_config_to_toml, parse_node_config

SCHEMA = DatasetSchema(
    "t",
    (
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        Column("x", ColumnType.DOUBLE, bounds=(0.0, 100.0)),
        Column("k", ColumnType.INTEGER, classification=Classification.PUBLIC),
        Column(
            "secret", ColumnType.DOUBLE, bounds=(0, 1), classification=Classification.CONFIDENTIAL
        ),
        Column("pid", ColumnType.TEXT, classification=Classification.RESTRICTED),
    ),
)


def _bind(sql: str) -> BoundQuery:
    return bind_query(parse_query(sql), SCHEMA)


# --- parsing and validation ------------------------------------------------------


def test_defaults_are_conservative_and_finite() -> None:
    p = Policy.from_dict({})
    assert p == DEFAULT_POLICY
    assert math.isfinite(p.dp_epsilon)
    assert p.dp_epsilon > 0
    assert p.approval is ApprovalMode.AUTOMATIC
    assert set(p.allowed_statistics) == set(STATISTICS)


def test_round_trips_through_dict_and_json() -> None:
    p = Policy.from_dict(
        {
            "min_cell_size": 5,
            "min_query_set_size": 10,
            "allowed_statistics": ["COUNT", "avg"],
            "approval": "manual",
            "dp_epsilon": 0.5,
            "dp_delta": 0,
        }
    )
    assert p.allowed_statistics == ("avg", "count")
    assert Policy.from_dict(p.to_dict()) == p
    assert Policy.from_json(p.to_json()) == p
    assert "min cell size 5" in p.summary()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"min_cell_size": 0}, "min_cell_size must be an integer >= 1"),
        ({"min_cell_size": -3}, "min_cell_size"),
        ({"min_cell_size": 2.5}, "min_cell_size"),
        ({"min_cell_size": True}, "min_cell_size"),
        ({"min_query_set_size": 0}, "min_query_set_size"),
        ({"dp_epsilon": 0}, "dp_epsilon must be a finite number > 0"),
        ({"dp_epsilon": -1.0}, "dp_epsilon"),
        ({"dp_epsilon": float("inf")}, "dp_epsilon"),
        ({"dp_epsilon": "1"}, "dp_epsilon"),
        ({"dp_delta": 1.0}, "dp_delta"),
        ({"allowed_statistics": ["count", "median_of_one"]}, "unknown statistic"),
        ({"allowed_statistics": []}, "allowed_statistics is empty"),
        ({"allowed_statistics": "count"}, "must be a list"),
        ({"allowed_statistics": ["count", "count"]}, "twice"),
        ({"approval": "sometimes"}, "approval must be one of"),
        ({"approval_timeout": 0}, "approval_timeout must be a number of seconds > 0"),
        ({"approval_timeout": "1h"}, "approval_timeout"),
        ({"approval_timeout": 8 * 86400}, "at most 604800"),
        ({"min_cell": 5}, "unknown key"),
    ],
)
def test_invalid_policies_fail_at_load_time(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Policy.from_dict(raw)


def test_a_confidential_column_needs_bounds() -> None:
    schema = DatasetSchema(
        "t", (Column("y", ColumnType.DOUBLE, classification=Classification.CONFIDENTIAL),)
    )
    with pytest.raises(ConfigError, match=r"'y' is confidential .* no bounds"):
        DEFAULT_POLICY.validate_for(schema)
    DEFAULT_POLICY.validate_for(SCHEMA)  # bounded: fine


def _config(tmp_path: Path, policy: str, column_extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
name = "n"
coordinator = "127.0.0.1:1"
insecure = true

[[dataset]]
name = "t"
source = "t.csv"

[[dataset.column]]
name = "x"
type = "double"
{column_extra}
{policy}
"""
    )
    return path


def test_node_config_reads_and_writes_the_policy(tmp_path: Path) -> None:
    path = _config(tmp_path, "[dataset.policy]\nmin_cell_size = 4\ndp_epsilon = 2.5\n")
    config = load_node_config(path)
    policy = config.datasets[0].policy
    assert (policy.min_cell_size, policy.dp_epsilon) == (4, 2.5)
    again = tmp_path / "again.toml"
    again.write_text(node_config_to_toml(config))
    assert load_node_config(again).datasets[0].policy == policy
    assert load_node_config(_config(tmp_path, "")).datasets[0].policy == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("policy", "extra", "needle"),
    [
        ("", 'classification = "secret"', "classification must be one of"),
        ("[dataset.policy]\nmin_cell_size = 0\n", "", r"dataset 't': \[dataset.policy\]"),
        ("[dataset.policy]\ndp_epsilon = -1.0\n", "", "dp_epsilon"),
        ("", 'classification = "confidential"', "no bounds"),
        ("[dataset.policy]\nlevels = 3\n", "", "unknown key"),
    ],
)
def test_node_config_policy_errors(tmp_path: Path, policy: str, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_node_config(_config(tmp_path, policy, extra))


def test_node_config_without_policy_table_parses(tmp_path: Path) -> None:
    data = {
        "node": {"name": "n", "coordinator": "c:1", "insecure": True},
        "dataset": [{"name": "t", "source": "t.csv", "column": [{"name": "x", "type": "integer"}]}],
    }
    assert parse_node_config(data, tmp_path).datasets[0].policy == DEFAULT_POLICY


# --- checks against bound queries --------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "place"),
    [
        ("SELECT COUNT(*) FROM t WHERE pid = 'p1'", "WHERE"),
        ("SELECT COUNT(pid) FROM t", "an aggregate"),
        (
            "SELECT CASE WHEN pid LIKE 'a%' THEN 'y' ELSE 'n' END AS c, COUNT(*) FROM t GROUP BY c",
            "GROUP BY",
        ),
    ],
)
def test_a_restricted_column_is_refused_anywhere(sql: str, place: str) -> None:
    with pytest.raises(PolicyViolationError) as info:
        check_query(_bind(sql), DEFAULT_POLICY)
    assert info.value.code == "policy_violation"
    assert "restricted_column" in info.value.message
    assert "'pid'" in info.value.message
    assert place in info.value.message


def test_a_confidential_column_needs_dp() -> None:
    with pytest.raises(PolicyViolationError, match=r"confidential_requires_dp.*'secret'"):
        check_query(_bind("SELECT AVG(secret) FROM t"), DEFAULT_POLICY)
    with pytest.raises(PolicyViolationError, match="confidential_requires_dp"):
        check_query(_bind("SELECT COUNT(*) FROM t WHERE secret > 0.5"), DEFAULT_POLICY)


def test_internal_and_public_columns_may_be_aggregated_filtered_and_grouped() -> None:
    bound = _bind(
        "SELECT g, COUNT(*), AVG(x), CORR(x, k), SUM(x * k) FROM t WHERE x > 3 AND k < 9 "
        "GROUP BY g HAVING COUNT(*) > 1"
    )
    check_query(bound, DEFAULT_POLICY)
    assert column_uses(bound) == {
        "x": ["WHERE", "an aggregate"],
        "k": ["WHERE", "an aggregate"],
        "g": ["GROUP BY"],
    }


def test_statistics_outside_the_policy_are_refused() -> None:
    policy = Policy(allowed_statistics=("count", "avg"))
    check_query(_bind("SELECT g, COUNT(*), AVG(x) FROM t GROUP BY g"), policy)
    with pytest.raises(PolicyViolationError, match=r"statistic_not_allowed.*VAR_SAMP"):
        check_query(_bind("SELECT AVG(x) / 2 AS h, VAR_SAMP(x) FROM t"), policy)
    with pytest.raises(PolicyViolationError, match=r"statistic_not_allowed.*SUM"):
        check_query(_bind("SELECT COUNT(*) FROM t HAVING SUM(x) > 1"), policy)


def test_manual_approval_passes_the_query_checks_and_waits_at_the_node() -> None:
    # The rules still apply; the approval itself happens later, at the node.
    check_query(_bind("SELECT COUNT(*) FROM t"), Policy(approval=ApprovalMode.MANUAL))
    with pytest.raises(PolicyViolationError, match="statistic_not_allowed"):
        check_query(
            _bind("SELECT SUM(x) FROM t"),
            Policy(approval=ApprovalMode.MANUAL, allowed_statistics=("count",)),
        )


def test_task_checks_the_announced_cell_size_and_the_protocol() -> None:
    bound = _bind("SELECT g, COUNT(*) FROM t GROUP BY g")
    strict = Policy(min_cell_size=5)
    check_task(bound, strict, homomorphic=False, announced_min_cell_size=5)
    check_task(bound, strict, homomorphic=False, announced_min_cell_size=8)
    with pytest.raises(DisclosureControlError, match=r"min_cell_size.*below 4.*at least 5"):
        check_task(bound, strict, homomorphic=False, announced_min_cell_size=4)
    with pytest.raises(DisclosureControlError, match=r"min_cell_size.*secagg"):
        check_task(bound, strict, homomorphic=True, announced_min_cell_size=5)
    check_task(bound, DEFAULT_POLICY, homomorphic=True, announced_min_cell_size=1)


def _vector(bound: BoundQuery, frame: pd.DataFrame) -> np.ndarray:
    con = duckdb.connect()
    try:
        con.register("frame", frame)
        return compute_local(bound, con, "frame")
    finally:
        con.close()


def _frame(n: int, seed: int) -> pd.DataFrame:
    gen = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "g": gen.choice(["a", "b", "c"], n, p=[0.8, 0.17, 0.03]).astype(object),
            "x": gen.uniform(0, 100, n),
            "k": gen.integers(0, 10, n),
            "secret": gen.uniform(0, 1, n),
            "pid": [f"p{i}" for i in range(n)],
        }
    )


def test_local_query_set_size_counts_the_where_rows() -> None:
    frame = _frame(200, 1)
    for sql, expected in [
        ("SELECT COUNT(*) FROM t", 200),
        ("SELECT g, AVG(x) FROM t WHERE k < 3 GROUP BY g", int((frame.k < 3).sum())),
        ("SELECT COUNT(*) FROM t WHERE x > 1000", 0),
    ]:
        bound = _bind(sql)
        assert local_query_set_size(bound, _vector(bound, frame)) == expected
    bound = _bind("SELECT COUNT(*) FROM t")
    policy = Policy(min_query_set_size=10)
    check_query_set(bound, policy, 0)  # isolates nobody: contributes zeros
    check_query_set(bound, policy, 10)
    with pytest.raises(DisclosureControlError, match=r"min_query_set_size.*fewer than 10"):
        check_query_set(bound, policy, 9)


def test_a_where_that_leaves_out_few_rows_is_refused_too() -> None:
    # COUNT(all) - COUNT(WHERE not them) isolates the few rows a WHERE leaves out
    frame = _frame(200, 1)
    policy = Policy(min_query_set_size=10)
    bound = _bind("SELECT AVG(x) FROM t WHERE k < 3")
    selected = local_query_set_size(bound, _vector(bound, frame))
    assert 10 <= selected <= 190  # the frame's k spreads the rows (checked, not assumed)
    check_query_set(bound, policy, selected, total=200)
    check_query_set(bound, policy, 200, total=200)  # leaves out nobody
    check_query_set(bound, policy, 190, total=200)  # leaves out 10
    with pytest.raises(DisclosureControlError, match=r"leaves out fewer than 10 rows"):
        check_query_set(bound, policy, 191, total=200)
    # without WHERE the query set is the whole dataset: nothing is left out
    check_query_set(_bind("SELECT AVG(x) FROM t"), policy, 200, total=201)


def test_finalize_suppresses_groups_below_the_minimum_cell_size() -> None:
    frames = [_frame(n, seed) for n, seed in ((60, 2), (45, 3), (30, 4))]
    pooled = pd.concat(frames, ignore_index=True)
    bound = _bind("SELECT g, COUNT(*) AS n, AVG(x) AS m, SUM(k) * 2 AS s2 FROM t GROUP BY g")
    total = sum((_vector(bound, f) for f in frames), np.zeros(bound.vector_length, np.uint64))
    counts = pooled.groupby("g").size()
    k = int(counts.min()) + 1  # the smallest group falls below the threshold
    table = finalize(bound, total, min_cell_size=k)
    for g, n, m, s2 in table.rows:
        if 0 < counts.get(g, 0) < k:
            assert (n, m, s2) == (None, None, None)
        else:
            assert n == counts.get(g, 0)
            assert s2 == 2 * int(pooled[pooled.g == g].k.sum())
    assert any(row[1] is None for row in table.rows)
    # HAVING sees NULL aggregates in a suppressed group, so comparisons drop it.
    having = _bind("SELECT g, COUNT(*) AS n FROM t GROUP BY g HAVING COUNT(*) >= 0")
    total = sum((_vector(having, f) for f in frames), np.zeros(having.vector_length, np.uint64))
    kept = {row[0] for row in finalize(having, total, min_cell_size=k).rows}
    assert kept == {g for g in ("a", "b", "c") if not 0 < counts.get(g, 0) < k}
    # A query without GROUP BY: its one row is suppressed below the threshold.
    whole = _bind("SELECT COUNT(*) AS n, AVG(x) FROM t")
    total = sum((_vector(whole, f) for f in frames), np.zeros(whole.vector_length, np.uint64))
    assert finalize(whole, total, min_cell_size=len(pooled) + 1).rows == ((None, None),)
    assert finalize(whole, total, min_cell_size=len(pooled)).rows[0][0] == len(pooled)


def test_strictest_combines_node_policies() -> None:
    a = Policy(min_cell_size=3, allowed_statistics=("count", "avg", "sum"), dp_epsilon=2.0)
    b = Policy(
        min_query_set_size=7,
        allowed_statistics=("count", "avg"),
        approval=ApprovalMode.MANUAL,
        approval_timeout=60.0,
    )
    s = strictest([a, b])
    assert s.approval_timeout == a.approval_timeout  # the longest wait of the two
    assert (s.min_cell_size, s.min_query_set_size) == (3, 7)
    assert s.allowed_statistics == ("avg", "count")
    assert s.approval is ApprovalMode.MANUAL
    assert s.dp_epsilon == 1.0
    assert strictest([a, Policy(allowed_statistics=("max",))]).allowed_statistics == ()


# --- wire, status, store ------------------------------------------------------------


def test_policy_travels_on_the_wire() -> None:
    p = Policy(min_cell_size=5, min_query_set_size=3, allowed_statistics=("count",), dp_delta=0.0)
    assert policy_from_proto(policy_to_proto(p)) == p
    info = DatasetInfo(SCHEMA, 3, 2, policy=p)
    assert dataset_info_from_proto(dataset_info_to_proto(info)) == info
    disjoint = DatasetInfo(SCHEMA, 2, 2, policy=strictest([p, Policy(allowed_statistics=("avg",))]))
    assert dataset_info_from_proto(dataset_info_to_proto(disjoint)).policy.allowed_statistics == ()
    bad = policy_to_proto(p)
    bad.dp_epsilon = 0.0
    with pytest.raises(ConfigError, match="dp_epsilon"):
        policy_from_proto(bad)
    reg = Registration("n", (SCHEMA,), policies=(("t", p),))
    (wire,) = node_messages_to_proto(reg)
    back = node_message_from_proto(wire)
    assert isinstance(back, Registration)
    assert back.policies == (("t", p),)
    assert back.policy("t") == p
    assert back.policy("other") == DEFAULT_POLICY
    task = TaskAssignment(
        "j",
        "t",
        "SELECT COUNT(*) FROM t",
        "f",
        Protocol.SECAGG,
        1.0,
        secagg=SecAggSetup(3, 0, 4, 2, ((1, 2),)),
        min_cell_size=6,
    )
    assert coordinator_message_to_proto(task).task.min_cell_size == 6


def test_policy_errors_map_to_grpc_statuses() -> None:
    assert STATUS_BY_CODE[PolicyViolationError.code] is grpc.StatusCode.PERMISSION_DENIED
    assert STATUS_BY_CODE[DisclosureControlError.code] is grpc.StatusCode.FAILED_PRECONDITION


def test_store_keeps_each_nodes_policy() -> None:
    store = Store(":memory:")
    try:
        p = Policy(min_cell_size=4)
        store.record_registration("n", (SCHEMA,), "v1", (("t", p),))
        (row,) = store.nodes()
        assert row.policy("t") == p
        store.record_registration("n", (SCHEMA,), "v1")
        assert store.nodes()[0].policy("t") == DEFAULT_POLICY
    finally:
        store.close()
