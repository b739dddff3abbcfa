"""Models end to end: describe, linear and logistic regression through a simulated
federation over real gRPC, matching exact pooled references."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import federation as fed
from tests.reference import exact_ols, logistic_mle, significant_digits

SCHEMA = fed.DatasetSchema(
    "m",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("z", fed.ColumnType.DOUBLE),
        fed.Column("y", fed.ColumnType.DOUBLE),
        fed.Column("hit", fed.ColumnType.INTEGER, bounds=(0, 1)),
    ),
)


def _partitions() -> list[pd.DataFrame]:
    gen = np.random.default_rng(11)
    parts = []
    for n in (60, 45, 70):
        x = 1e7 + gen.integers(0, 2**20, n) / 2**10  # large offset, exact in the fixed point
        z = x + gen.integers(-8, 8, n) / 2**20  # nearly collinear with x
        g = gen.choice(["a", "b"], n)
        y = 2 * (x - 1e7) - (z - 1e7) + np.where(g == "b", 3.0, 0.0) + gen.integers(0, 64, n) / 64
        p = 1 / (1 + np.exp(-((x - 1e7) / 300 - 1.5)))
        hit = (gen.random(n) < p).astype(np.int64)
        parts.append(pd.DataFrame({"g": g.astype(object), "x": x, "z": z, "y": y, "hit": hit}))
    return parts


@pytest.mark.parametrize("protocol", ["secagg", "paillier"])
def test_models_through_the_federation(protocol: str) -> None:
    parts = _partitions()
    pooled = pd.concat(parts, ignore_index=True)
    with fed.simulate({"m": parts}, schemas={"m": SCHEMA}) as client:
        fit = client.linear_regression("m", y="y", x=["x", "z", "g"], protocol=protocol)
        # quartiles take histogram rounds: checked under secagg, skipped under paillier (slow)
        quartiles = (0.25, 0.5, 0.75) if protocol == "secagg" else ()
        summary = client.describe("m", protocol=protocol, quantiles=quartiles)
        logit = (
            client.logistic_regression("m", y="hit", x=["y"], protocol=protocol)
            if protocol == "secagg"
            else None
        )
    rows = [
        [1, float(x), float(z), int(g == "b")]
        for x, z, g in zip(pooled.x, pooled.z, pooled.g, strict=True)
    ]
    beta, rss, _ = exact_ols(rows, [float(v) for v in pooled.y])
    assert fit.terms == ("intercept", "x", "z", "g[b]")
    assert list(fit.exact_coefficients) == beta
    assert fit.rss == rss
    assert fit.n == len(pooled)
    assert summary.rows == len(pooled)
    xs = [Fraction(float(v)) for v in pooled.x]
    assert summary.numeric.loc["mean", "x"] == float(sum(xs, Fraction(0)) / len(xs))
    assert summary.categorical["g"]["a"] == int((pooled.g == "a").sum())
    if logit is not None:
        expected = logistic_mle([[1.0, float(v)] for v in pooled.y], [int(v) for v in pooled.hit])
        for got, want in zip(logit.coefficients, expected, strict=True):
            assert significant_digits(got, want) >= 9
