"""GROUP BY GROUPING SETS through a simulated federation (real gRPC): every protocol,
minimum cell size per slot, differential privacy per slot."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

import federation as fed
from federation.policy import Policy

SCHEMA = fed.DatasetSchema(
    "s",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        fed.Column("h", fed.ColumnType.CATEGORICAL, domain=("u", "v")),
        fed.Column("age", fed.ColumnType.INTEGER, bounds=(0, 99)),
        fed.Column("x", fed.ColumnType.DOUBLE, bounds=(-10.0, 10.0)),
    ),
)
SQL = (
    "SELECT g, h, GROUPING(g, h) AS gid, COUNT(*) AS n, SUM(age) AS s "
    "FROM s GROUP BY GROUPING SETS ((g), (h), ())"
)


def _parts() -> list[pd.DataFrame]:
    gen = np.random.default_rng(5)
    parts = []
    for n in (80, 60, 70):
        parts.append(
            pd.DataFrame(
                {
                    "g": gen.choice(["a", "b", "c"], n, p=[0.8, 0.17, 0.03]).astype(object),
                    "h": gen.choice(["u", "v"], n).astype(object),
                    "age": gen.integers(0, 100, n, dtype=np.int64),
                    "x": gen.uniform(-10.0, 10.0, n),
                }
            )
        )
    return parts


PARTS = _parts()
POOLED = pd.concat(PARTS, ignore_index=True)


def _expected() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for g in ("a", "b", "c"):
        sub = POOLED[POOLED.g == g]
        rows.append((g, None, 1, len(sub), int(sub.age.sum())))
    for h in ("u", "v"):
        sub = POOLED[POOLED.h == h]
        rows.append((None, h, 2, len(sub), int(sub.age.sum())))
    rows.append((None, None, 3, len(POOLED), int(POOLED.age.sum())))
    return rows


@pytest.fixture(scope="module")
def client() -> Iterator[fed.Client]:
    with fed.simulate(
        {"s": PARTS, "k": PARTS},
        schemas={"s": SCHEMA, "k": fed.DatasetSchema("k", SCHEMA.columns)},
        policies={"s": Policy(dp_epsilon=1000.0), "k": Policy(min_cell_size=10)},
    ) as c:
        yield c


@pytest.mark.parametrize("protocol", ["secagg", "paillier", "ckks"])
def test_every_protocol_releases_every_sets_rows(client: fed.Client, protocol: str) -> None:
    result = client.query(SQL, protocol=protocol)
    assert result.protocol == protocol
    assert list(result.rows) == _expected()


def test_small_cells_are_suppressed_slot_by_slot(client: fed.Client) -> None:
    small = int((POOLED.g == "c").sum())
    assert 0 < small < 10
    result = client.query(SQL.replace("FROM s", "FROM k"))
    expected = [
        (g, h, gid, None, None) if g == "c" else (g, h, gid, n, s)
        for g, h, gid, n, s in _expected()
    ]
    assert list(result.rows) == expected


def test_dp_noises_every_slot_and_pays_for_every_set(client: fed.Client) -> None:
    one = client.query("SELECT g, COUNT(*) AS n FROM s GROUP BY g", epsilon=1.0)
    sets = client.query(
        "SELECT g, COUNT(*) AS n FROM s GROUP BY GROUPING SETS ((g), ())", epsilon=1.0
    )
    assert one.privacy is not None
    assert sets.privacy is not None
    # a, b, c, g's NULL group when its noisy count is not 0, then the grand total
    assert [r[0] for r in sets.rows[:3]] == ["a", "b", "c"]
    assert sets.rows[-1][0] is None
    # a row is in a slot of each of the two sets: the same epsilon needs more noise
    assert sets.privacy.sigma("n") > 1.3 * one.privacy.sigma("n")
    total = sets.rows[-1][1]
    assert isinstance(total, int)
    assert abs(total - len(POOLED)) < 6 * sets.privacy.sigma("n")


@pytest.mark.parametrize(
    ("sql", "error", "needle"),
    [
        (
            "SELECT COUNT(*) FROM s GROUP BY GROUPING SETS ((g), (nope))",
            fed.UnknownColumnError,
            "nope",
        ),
        (
            "SELECT COUNT(*) FROM s GROUP BY GROUPING SETS ((g), (age))",
            fed.UnsupportedQueryError,
            "age",
        ),
        (
            "SELECT COUNT(*) FROM s GROUP BY GROUPING SETS ((WIDTH_BUCKET(x, 0, 1, 600000)), "
            "(WIDTH_BUCKET(x, 1, 2, 600000)))",
            fed.UnsupportedQueryError,
            "groups in all",
        ),
    ],
)
def test_a_bad_grouping_set_is_a_clear_error(
    client: fed.Client, sql: str, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        client.query(sql)
