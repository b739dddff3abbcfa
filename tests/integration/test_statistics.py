"""Analyst statistics end to end: nodes over real gRPC, secure aggregation, exact answers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

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
