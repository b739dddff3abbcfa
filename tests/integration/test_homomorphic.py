"""Paillier and CKKS jobs end to end: same answers as secagg and as the pooled data."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

import federation as fed
from federation.messages import Protocol, QueryRequest
from tests.reference import close, exact_mean, exact_var

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("k", fed.ColumnType.INTEGER),
    ),
)
SQL = (
    "SELECT g, COUNT(*) AS n, SUM(k) AS sk, AVG(x) AS m, VAR_SAMP(x) AS v "
    "FROM t WHERE k > -500 GROUP BY g"
)


def _parts() -> list[pd.DataFrame]:
    gen = np.random.default_rng(9)
    return [
        pd.DataFrame(
            {
                "g": gen.choice(["a", "b", "c"], n).astype(object),
                "x": 1e7 + 0.1 * gen.random(n),
                "k": gen.integers(-1000, 1000, n, dtype=np.int64),
            }
        )
        for n in (120, 90, 150)
    ]


@pytest.fixture(scope="module")
def fed3() -> Iterator[tuple[fed.Client, pd.DataFrame]]:
    parts = _parts()
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}) as client:
        yield client, pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("protocol", ["paillier", "ckks"])
def test_homomorphic_result_equals_secagg_and_pooled(
    fed3: tuple[fed.Client, pd.DataFrame], protocol: str
) -> None:
    client, pooled = fed3
    he = client.query(SQL, protocol=protocol)
    sa = client.query(SQL, protocol="secagg")
    assert he.protocol == protocol
    assert he.node_count == 3
    assert he.rows == sa.rows  # both exact: identical tables
    sub_all = pooled[pooled.k > -500]
    for g, n, sk, m, v in he.rows:
        sub = sub_all[sub_all.g == g]
        assert (n, sk) == (len(sub), int(sub.k.sum()))
        assert close(m, exact_mean(sub.x))
        assert close(v, exact_var(sub.x, 1))
    record = client.job(he.job_id)
    assert record.status is fed.JobStatus.SUCCEEDED
    assert record.result is None  # the coordinator never had the plaintext result


def test_dropout_before_upload_fails_a_homomorphic_job_cleanly() -> None:
    with fed.simulate({"t": _parts()}, schemas={"t": SCHEMA}, dropout={1: "before_keys"}) as c:
        with pytest.raises(fed.TooFewParticipantsError, match="node-1") as info:
            c.query("SELECT COUNT(*) FROM t", protocol="paillier")
        assert info.value.job_id is not None
        assert c.job(info.value.job_id).status is fed.JobStatus.FAILED


def test_missing_or_bad_public_keys_are_refused(fed3: tuple[fed.Client, pd.DataFrame]) -> None:
    client, _ = fed3
    conn = client._conn  # raw requests, as a client that does not use the SDK would send
    for key in (b"", b"not a key at all"):
        with pytest.raises(fed.ProtocolError):
            list(
                conn.submit_query(
                    QueryRequest("SELECT COUNT(*) FROM t", Protocol.PAILLIER, key), timeout=30
                )
            )
    assert client.query("SELECT COUNT(*) FROM t", protocol="paillier").rows == [(360,)]


SHAPES = [
    "SELECT COUNT(*) FROM t",
    "SELECT COUNT(*), SUM(k), AVG(x), STDDEV_POP(x) FROM t",
    "SELECT g, COUNT(x), SUM(x), VAR_POP(k) FROM t WHERE x < 10000000.05 OR g = 'c' GROUP BY g",
    "SELECT g, COUNT(*) FROM t WHERE k BETWEEN 0 AND 10 GROUP BY g",
    "SELECT AVG(k) FROM t WHERE k > 100000",  # no rows match: NULL under every protocol
]


@pytest.mark.parametrize("sql", SHAPES)
def test_every_protocol_gives_the_same_table(
    fed3: tuple[fed.Client, pd.DataFrame], sql: str
) -> None:
    client, _ = fed3
    tables = {p: client.query(sql, protocol=p) for p in ("secagg", "paillier", "ckks")}
    assert tables["paillier"].rows == tables["secagg"].rows
    assert tables["ckks"].rows == tables["secagg"].rows
    assert tables["secagg"].columns == tables["ckks"].columns == tables["paillier"].columns
