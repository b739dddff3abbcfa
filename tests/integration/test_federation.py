"""End to end through real gRPC on loopback: federated answers equal pooled answers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import federation as fed
from tests.reference import close, exact_mean, exact_sum, exact_var

GROUPS = ["a", "b", "c"]


def _partitions(seed: int, sizes: list[int]) -> list[pd.DataFrame]:
    gen = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        parts.append(
            pd.DataFrame(
                {
                    "g": gen.choice(GROUPS, n).astype(object),
                    "x": gen.normal(50.0, 15.0, n),
                    "k": gen.integers(-1000, 1000, n, dtype=np.int64),
                }
            )
        )
    return parts


SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=tuple(GROUPS)),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("k", fed.ColumnType.INTEGER),
    ),
)


@pytest.fixture(scope="module")
def three() -> Iterator[tuple[fed.Client, pd.DataFrame]]:
    parts = _partitions(7, [300, 200, 250])
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}) as client:
        yield client, pd.concat(parts, ignore_index=True)


def test_grouped_statistics_equal_the_pooled_exact_answer(
    three: tuple[fed.Client, pd.DataFrame],
) -> None:
    client, pooled = three
    result = client.query(
        "SELECT g, COUNT(*) AS n, SUM(x) AS s, AVG(x) AS m, VAR_SAMP(x) AS v, "
        "VAR_POP(x) AS vp, STDDEV_SAMP(x) AS sd, SUM(k) AS sk FROM t GROUP BY g"
    )
    assert result.node_count == 3
    assert result.selected_nodes == 3
    assert result.protocol == "secagg"
    assert result.columns == ("g", "n", "s", "m", "v", "vp", "sd", "sk")
    rows = {r[0]: r for r in result.rows}
    assert sorted(rows) == sorted(set(pooled.g))
    for g, sub in pooled.groupby("g"):
        _, n, s, m, v, vp, sd, sk = rows[g]
        assert n == len(sub)
        assert sk == int(sub.k.sum())  # integers are exact
        assert close(s, exact_sum(sub.x))
        assert close(m, exact_mean(sub.x))
        assert close(v, exact_var(sub.x, 1))
        assert close(vp, exact_var(sub.x, 0))
        assert math.isclose(sd, math.sqrt(float(exact_var(sub.x, 1))), rel_tol=1e-12)
        # and pandas on the pooled data agrees to 12 significant digits
        assert math.isclose(v, sub.x.var(ddof=1), rel_tol=1e-12)


def test_where_filters_before_aggregation(three: tuple[fed.Client, pd.DataFrame]) -> None:
    client, pooled = three
    r = client.query("SELECT COUNT(*), AVG(x) FROM t WHERE k > 100 AND g IN ('a', 'c')")
    sub = pooled[(pooled.k > 100) & pooled.g.isin(["a", "c"])]
    [(n, m)] = r.rows
    assert n == len(sub)
    assert close(m, exact_mean(sub.x))
    frame = r.to_pandas()
    assert list(frame.columns) == list(r.columns)
    assert int(frame.iloc[0, 0]) == len(sub)


def test_numerically_hard_data_keeps_every_digit() -> None:
    gen = np.random.default_rng(3)
    parts = [pd.DataFrame({"x": 1e7 + 0.1 * gen.random(n)}) for n in (4000, 3000, 5000)]
    pooled = pd.concat(parts).x
    with fed.simulate({"hard": parts}) as client:
        [(n, m, v, sd)] = client.query(
            "SELECT COUNT(*), AVG(x), VAR_SAMP(x), STDDEV_POP(x) FROM hard"
        ).rows
    assert n == len(pooled)
    exact_v = exact_var(pooled, 1)
    assert close(m, exact_mean(pooled))
    assert close(v, exact_v)
    assert math.isclose(sd, math.sqrt(float(exact_var(pooled, 0))), rel_tol=1e-12)
    # the naive one-pass formula in float64 does not get 12 digits here
    xs = pooled.to_numpy()
    naive = (np.sum(xs * xs) - np.sum(xs) ** 2 / len(xs)) / (len(xs) - 1)
    assert not close(float(naive), exact_v, rel=1e-6)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=60), min_size=3, max_size=5),
    values=st.data(),
)
def test_random_data_federated_equals_pooled(sizes: list[int], values: st.DataObject) -> None:
    parts = []
    for n in sizes:
        xs = values.draw(
            st.lists(
                st.one_of(
                    st.none(),
                    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
                    st.sampled_from([0.0, 1e7 + 0.1, -3.5e8]),
                ),
                min_size=n,
                max_size=n,
            )
        )
        gs = values.draw(st.lists(st.sampled_from([*GROUPS, None]), min_size=n, max_size=n))
        parts.append(
            pd.DataFrame({"g": pd.Series(gs, dtype=object), "x": pd.Series(xs, dtype="float64")})
        )
    pooled = pd.concat(parts, ignore_index=True)
    schema = fed.DatasetSchema("r", SCHEMA.columns[:2])
    with fed.simulate({"r": parts}, schemas={"r": schema}) as client:
        result = client.query(
            "SELECT g, COUNT(*), COUNT(x), SUM(x), AVG(x), VAR_SAMP(x) FROM r GROUP BY g"
        )
    resolution = Fraction(1, 2**52) * max(len(pooled), 1)
    expected_groups = {None if pd.isna(g) else g for g in pooled.g} | set(GROUPS)
    got = {r[0]: r for r in result.rows}
    assert set(got) == expected_groups  # every declared group (zero cells), NULL if present
    for g in expected_groups:
        sub = pooled[pooled.g.isna()] if g is None else pooled[pooled.g == g]
        _, n, nx, s, m, v = got[g]
        assert (n, nx) == (len(sub), int(sub.x.notna().sum()))
        assert close(s, exact_sum(sub.x), abs_=float(resolution))
        assert close(m, exact_mean(sub.x), abs_=float(resolution))
        ev = exact_var(sub.x, 1)
        assert close(v, ev, rel=1e-12, abs_=float(resolution) * 1e10)


def test_ten_nodes() -> None:
    parts = _partitions(11, [120] * 10)
    pooled = pd.concat(parts, ignore_index=True)
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}) as client:
        r = client.query("SELECT COUNT(*), SUM(k), VAR_POP(x) FROM t")
    assert r.node_count == 10
    [(n, sk, vp)] = r.rows
    assert (n, sk) == (len(pooled), int(pooled.k.sum()))
    assert close(vp, exact_var(pooled.x, 0))


def test_vectors_beyond_the_message_limit_are_streamed_in_chunks() -> None:
    from federation.transport.options import MAX_MESSAGE_BYTES

    labels = tuple(f"v{i:03d}" for i in range(800))
    schema = fed.DatasetSchema(
        "wide",
        (
            fed.Column("a", fed.ColumnType.CATEGORICAL, domain=labels),
            fed.Column("b", fed.ColumnType.CATEGORICAL, domain=labels),
            fed.Column("k", fed.ColumnType.INTEGER),
        ),
    )
    gen = np.random.default_rng(2)
    parts = [
        pd.DataFrame(
            {
                "a": gen.choice(labels, 500).astype(object),
                "b": gen.choice(labels, 500).astype(object),
                "k": gen.integers(0, 100, 500, dtype=np.int64),
            }
        )
        for _ in range(3)
    ]
    pooled = pd.concat(parts, ignore_index=True)
    with fed.simulate({"wide": parts}, schemas={"wide": schema}) as client:
        sql = "SELECT a, b, COUNT(*) AS n, SUM(k) AS s FROM wide GROUP BY a, b"
        from federation.query import bind_query, parse_query

        length = bind_query(parse_query(sql), schema).vector_length
        assert length * 8 > 2 * MAX_MESSAGE_BYTES  # really larger than one message
        result = client.query(sql)
    expected = pooled.groupby(["a", "b"]).k.agg(["count", "sum"])
    got = {(r[0], r[1]): (r[2], r[3]) for r in result.rows}
    assert len(got) == len(labels) ** 2  # every cell of the cross-tabulation
    assert sum(1 for n, _ in got.values() if n) == len(expected)
    for (a, b), row in expected.iterrows():
        assert got[(a, b)] == (row["count"], row["sum"])
