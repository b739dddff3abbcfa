"""Dataset policies end to end: enforced by real node agents over gRPC, visible in the
directory, refusals reaching the analyst and the job record, small cells suppressed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

import federation as fed
from federation.errors import DisclosureControlError, PolicyViolationError
from federation.messages import JobStatus
from federation.policy import DEFAULT_POLICY, Policy
from federation.schema import Classification
from tests.reference import close

K = 10  # the minimum cell size of dataset "t"


def _schema(name: str) -> fed.DatasetSchema:
    return fed.DatasetSchema(
        name,
        (
            fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "c")),
            fed.Column("x", fed.ColumnType.DOUBLE),
            fed.Column("k", fed.ColumnType.INTEGER),
            fed.Column(
                "secret",
                fed.ColumnType.DOUBLE,
                bounds=(0.0, 1.0),
                classification=Classification.CONFIDENTIAL,
            ),
            fed.Column("pid", fed.ColumnType.TEXT, classification=Classification.RESTRICTED),
        ),
    )


def _parts() -> list[pd.DataFrame]:
    gen = np.random.default_rng(11)
    parts = []
    for n in (90, 70, 60):
        parts.append(
            pd.DataFrame(
                {
                    "g": gen.choice(["a", "b", "c"], n, p=[0.85, 0.12, 0.03]).astype(object),
                    "x": gen.normal(50.0, 10.0, n),
                    "k": gen.integers(0, 10, n, dtype=np.int64),
                    "secret": gen.uniform(0.0, 1.0, n),
                    "pid": [f"p{len(parts)}-{i}" for i in range(n)],
                }
            )
        )
    return parts


Fed = tuple[fed.Client, list[pd.DataFrame]]


@pytest.fixture(scope="module")
def federation_() -> Iterator[Fed]:
    parts = _parts()
    with fed.simulate(
        {"t": parts, "u": parts, "d": parts},
        schemas={"t": _schema("t"), "u": _schema("u"), "d": _schema("d")},
        policies={
            "t": Policy(min_cell_size=K, min_query_set_size=5),
            "u": [DEFAULT_POLICY, DEFAULT_POLICY, Policy(min_cell_size=8, min_query_set_size=40)],
        },
    ) as client:
        yield client, parts


def test_the_directory_shows_each_datasets_policy(federation_: Fed) -> None:
    client, _ = federation_
    infos = {i.schema.name: i for i in client.datasets()}
    assert infos["t"].policy == Policy(min_cell_size=K, min_query_set_size=5)
    assert (infos["u"].policy.min_cell_size, infos["u"].policy.min_query_set_size) == (8, 40)
    assert infos["d"].policy == DEFAULT_POLICY
    levels = {c.name: c.classification for c in infos["d"].schema.columns}
    assert levels["pid"] is Classification.RESTRICTED


def test_a_restricted_column_in_where_is_refused_and_recorded(federation_: Fed) -> None:
    client, _ = federation_
    with pytest.raises(PolicyViolationError) as info:
        client.query("SELECT COUNT(*) FROM d WHERE pid = 'p0-1'")
    err = info.value
    assert err.code == "policy_violation"
    assert "refused the task" in err.message
    assert "restricted_column" in err.message
    assert "'pid'" in err.message
    assert err.job_id is not None
    record = client.job(err.job_id)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.code == "policy_violation"
    assert "restricted_column" in record.error.message


def test_a_confidential_column_is_refused_until_dp_exists(federation_: Fed) -> None:
    client, _ = federation_
    with pytest.raises(PolicyViolationError, match=r"confidential_requires_dp.*'secret'"):
        client.query("SELECT AVG(secret) FROM d")


def test_internal_columns_are_aggregated_filtered_and_grouped(federation_: Fed) -> None:
    client, parts = federation_
    pooled = pd.concat(parts, ignore_index=True)
    result = client.query("SELECT g, COUNT(*) AS n, AVG(x) AS m FROM d WHERE k > 3 GROUP BY g")
    sub = pooled[pooled.k > 3]
    for g, n, m in result.rows:
        rows = sub[sub.g == g]
        assert n == len(rows)
        assert close(m, float(rows.x.mean()))


def test_small_groups_are_suppressed_on_the_aggregated_count(federation_: Fed) -> None:
    client, parts = federation_
    pooled = pd.concat(parts, ignore_index=True)
    counts = pooled.groupby("g").size()
    small = {g for g, n in counts.items() if 0 < n < K}
    assert small  # the data has a group below the threshold ...
    assert set(counts.index) - small  # ... and one above it
    # Every node's own count of the small group is below K too, but it cannot tell:
    # the decision is the coordinator's, on the securely aggregated count.
    result = client.query("SELECT g, COUNT(*) AS n, AVG(x) AS m, SUM(k) AS s FROM t GROUP BY g")
    for g, n, m, s in result.rows:
        if g in small:
            assert (n, m, s) == (None, None, None)
        else:
            rows = pooled[pooled.g == g]
            assert n == len(rows)
            assert s == int(rows.k.sum())
            assert close(m, float(rows.x.mean()))


def test_the_job_obeys_the_strictest_nodes_cell_size(federation_: Fed) -> None:
    client, parts = federation_
    pooled = pd.concat(parts, ignore_index=True)
    counts = pooled.groupby("g").size()
    result = client.query("SELECT g, COUNT(*) AS n FROM u GROUP BY g")
    for g, n in result.rows:
        assert n == (None if 0 < counts.get(g, 0) < 8 else counts.get(g, 0))


def test_a_homomorphic_job_is_refused_when_cells_must_be_suppressed(federation_: Fed) -> None:
    client, _ = federation_
    with pytest.raises(DisclosureControlError) as info:
        client.query("SELECT g, COUNT(*) FROM t GROUP BY g", protocol="paillier")
    assert "min_cell_size" in info.value.message
    assert "secagg" in info.value.message


def test_a_node_refuses_a_where_that_leaves_out_too_few_of_its_rows(federation_: Fed) -> None:
    client, parts = federation_
    # node 2's policy: min_query_set_size 40. WHERE k <> 0 leaves out its rows with k = 0:
    left_out = int((parts[2].k == 0).sum())
    assert 0 < left_out < 40
    with pytest.raises(DisclosureControlError) as info:
        client.query("SELECT AVG(x) FROM u WHERE k <> 0")
    assert "node 'node-2' refused the task" in info.value.message
    assert "leaves out fewer than 40 rows" in info.value.message
    # without WHERE nothing is left out; with one that keeps every row, neither
    n = client.query("SELECT COUNT(*) FROM u WHERE k >= 0").rows[0][0]
    assert n == sum(len(p) for p in parts)


def test_a_node_refuses_a_where_that_isolates_too_few_of_its_rows(federation_: Fed) -> None:
    client, parts = federation_
    mine = int((parts[2].k == 0).sum())
    assert 0 < mine < 40
    with pytest.raises(DisclosureControlError) as info:
        client.query("SELECT COUNT(*) FROM u WHERE k = 0")
    assert "node 'node-2' refused the task" in info.value.message
    assert "min_query_set_size" in info.value.message
    assert client.job(info.value.job_id or "").status is JobStatus.FAILED
    # The same query over nodes whose policies allow it runs.
    assert client.query("SELECT COUNT(*) FROM d WHERE k = 0").rows[0][0] == sum(
        int((p.k == 0).sum()) for p in parts
    )
