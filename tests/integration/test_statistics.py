"""Analyst statistics end to end: nodes over real gRPC, secure aggregation, exact answers."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import duckdb
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import federation as fed
from tests.reference import exact_bivariate, signed_sqrt

SCHEMA = fed.DatasetSchema(
    "s",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("h", fed.ColumnType.CATEGORICAL, domain=("u", "v", "w")),
        fed.Column("age", fed.ColumnType.INTEGER, bounds=(0, 119)),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("y", fed.ColumnType.DOUBLE),
    ),
)


def _partitions() -> list[pd.DataFrame]:
    gen = np.random.default_rng(7)
    parts = []
    for n in (40, 25, 60):
        x = 1e7 + gen.integers(0, 2**20, n) / 2**10  # large offset, exact in the fixed point
        y = 3 * x + gen.integers(-4, 5, n) / 2**20  # nearly collinear
        parts.append(
            pd.DataFrame(
                {
                    "g": gen.choice(["a", "b"], n).astype(object),
                    "h": gen.choice(["u", "v"], n).astype(object),  # "w" never occurs
                    "age": gen.integers(0, 90, n),
                    "x": x,
                    "y": y,
                }
            )
        )
    return parts


def test_regression_cross_tab_and_histogram_through_the_federation() -> None:
    parts = _partitions()
    pooled = pd.concat(parts, ignore_index=True)
    with fed.simulate({"s": parts}, schemas={"s": SCHEMA}) as client:
        stats = client.query(
            "SELECT g, COUNT(*) AS n, CORR(y, x) AS r, REGR_SLOPE(y, x) AS b, "
            "REGR_INTERCEPT(y, x) AS a, COVAR_SAMP(y, x) AS c, SUM(y) / COUNT(*) AS m "
            "FROM s GROUP BY g HAVING n > 1 ORDER BY g"
        )
        cross = client.query("SELECT g, h, COUNT(*) FROM s GROUP BY g, h")
        hist = client.query(
            "SELECT FLOOR(age / 30) AS decade, COUNT(*) AS n FROM s GROUP BY decade"
        )
    for g, n, r, b, a, c, m in stats.rows:
        sub = pooled[pooled.g == g]
        ys, xs = [float(v) for v in sub.y], [float(v) for v in sub.x]
        assert n == len(sub)
        assert r == signed_sqrt(exact_bivariate("CORR", ys, xs))  # type: ignore[arg-type]
        assert b == float(exact_bivariate("REGR_SLOPE", ys, xs))  # type: ignore[arg-type]
        assert a == float(exact_bivariate("REGR_INTERCEPT", ys, xs))  # type: ignore[arg-type]
        assert c == float(exact_bivariate("COVAR_SAMP", ys, xs))  # type: ignore[arg-type]
        assert m == float(sum(Fraction(v) for v in ys) / len(ys))
    cells = {(row[0], row[1]): row[2] for row in cross.rows}
    assert len(cells) == 6  # 2 x 3 combinations, the never-seen "w" included with 0
    for (g, h), count in cells.items():
        assert count == int(((pooled.g == g) & (pooled.h == h)).sum())
    expected_hist = [(float(d), int((pooled.age // 30 == d).sum())) for d in range(4)]
    assert list(hist.rows) == expected_hist


# ----------------------------------------------------------------- GROUPING SETS

GS_SCHEMA = fed.DatasetSchema(
    "gs",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        fed.Column("h", fed.ColumnType.CATEGORICAL, domain=("u", "v")),
        fed.Column("age", fed.ColumnType.INTEGER, bounds=(0, 119)),
        fed.Column("x", fed.ColumnType.DOUBLE),
    ),
)

_ROW = st.tuples(
    st.sampled_from(["a", "b", "c", None]),
    st.sampled_from(["u", "v", None]),
    st.one_of(st.none(), st.integers(0, 119)),
    st.one_of(st.none(), st.integers(-9 * 1024, 9 * 1024).map(lambda k: k / 1024)),
)
_KEYS = ("g", "h", "b", "d")


@st.composite
def _grouping_query(draw: st.DrawFn) -> tuple[str, str]:
    """Our SQL and DuckDB's (WIDTH_BUCKET written as its CASE) for random sets."""
    sets = draw(
        st.lists(st.lists(st.sampled_from(_KEYS), unique=True, max_size=3), min_size=2, max_size=4)
    )
    used = sorted({k for s in sets for k in s}, key=_KEYS.index)
    count = draw(st.sampled_from([1, 2, 4, 8]))
    width = draw(st.sampled_from([0.5, 1.0, 2.0]))
    lo = draw(st.integers(-8, 4)) * width
    hi = lo + count * width
    ours = {
        "g": "g",
        "h": "h",
        "b": f"WIDTH_BUCKET(x, {lo}, {hi}, {count})",
        "d": "FLOOR(age / 30)",
    }
    theirs = dict(ours)
    theirs["b"] = (
        f"CASE WHEN x IS NULL THEN NULL WHEN x < {lo} THEN 0 WHEN x >= {hi} THEN {count + 1} "
        f"ELSE CAST(floor({count} * (x - {lo}) / ({hi - lo})) AS BIGINT) + 1 END"
    )
    spec = ", ".join("(" + ", ".join(s) + ")" for s in sets)
    grouping = f"GROUPING({', '.join(used)}) AS gid, " if used else ""

    def text(exprs: dict[str, str]) -> str:
        keys = "".join(f"{exprs[k]} AS {k}, " for k in used)
        return (
            f"SELECT {keys}{grouping}COUNT(*) AS n, COUNT(x) AS nx, SUM(age) AS s, "
            f"SUM(x) AS sx FROM gs GROUP BY GROUPING SETS ({spec})"
        )

    return text(ours), text(theirs)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    nodes=st.lists(st.lists(_ROW, min_size=1, max_size=25), min_size=3, max_size=3),
    queries=st.lists(_grouping_query(), min_size=1, max_size=3),
)
def test_grouping_sets_equal_duckdbs_on_the_pooled_rows(
    nodes: list[list[tuple[object, ...]]], queries: list[tuple[str, str]]
) -> None:
    parts = [pd.DataFrame(rows, columns=["g", "h", "age", "x"]) for rows in nodes]
    for part in parts:
        part["age"] = part["age"].astype("Int64")
        part["x"] = part["x"].astype("float64")
    pooled = duckdb.connect()
    pooled.register("gs", pd.concat(parts, ignore_index=True))
    with fed.simulate({"gs": parts}, schemas={"gs": GS_SCHEMA}) as client:
        for ours, theirs in queries:
            table = client.query(ours).table
            n = table.columns.index("n")
            released = [r for r in table.rows if r[n]]  # the others are zero cells
            assert Counter(released) == Counter(pooled.execute(theirs).fetchall()), ours
            assert all(r[n] == 0 for r in table.rows if r not in released)
