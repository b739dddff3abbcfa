"""MEDIAN and quantiles through a real federation, against exact pooled order statistics."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import federation as fed

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b", "empty")),
        fed.Column("x", fed.ColumnType.DOUBLE, bounds=(-1e9, 1e9)),
        fed.Column("k", fed.ColumnType.INTEGER),
        fed.Column("p", fed.ColumnType.DOUBLE, classification=fed.Classification.PUBLIC),
    ),
)


def _parts() -> list[pd.DataFrame]:
    gen = np.random.default_rng(11)
    parts = []
    for n in (150, 90, 200):
        x = 1e7 + 1e-3 * gen.standard_normal(n)  # a large offset, tiny spread
        x[gen.random(n) < 0.2] = 1e7  # ties
        frame = pd.DataFrame(
            {
                "g": gen.choice(["a", "b"], n).astype(object),
                "x": x,
                "k": gen.integers(-(10**12), 10**12, n, dtype=np.int64),
                "p": gen.standard_normal(n) * 1e3,
            }
        )
        frame.loc[frame.sample(frac=0.1, random_state=n).index, "x"] = None  # NULLs
        parts.append(frame)
    return parts


def _exact(values: pd.Series, q: Fraction, discrete: bool) -> Fraction | None:
    """DuckDB's definitions, in exact arithmetic on the pooled values."""
    data = sorted(Fraction(float(v)) for v in values.dropna())
    n = len(data)
    if n == 0:
        return None
    if discrete:
        return data[max(math.ceil(q * n) - 1, 0)]
    h = (n - 1) * q
    low, high = math.floor(h), math.ceil(h)
    return data[low] + (h - low) * (data[high] - data[low])


@pytest.fixture(scope="module")
def fed3() -> Iterator[tuple[fed.Client, pd.DataFrame]]:
    parts = _parts()
    with fed.simulate({"t": parts}, schemas={"t": SCHEMA}) as client:
        yield client, pd.concat(parts, ignore_index=True)


SQL = (
    "SELECT g, MEDIAN(x) AS m, QUANTILE_CONT(x, 0.9) AS q9, QUANTILE_DISC(k, 0.3) AS d3, "
    "PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY k) AS k25, COUNT(*) AS n "
    "FROM t WHERE k > -900000000000 GROUP BY g"
)


@pytest.mark.parametrize("tolerance", [0.0, 1e-6])
def test_grouped_quantiles_are_within_their_stated_error(
    fed3: tuple[fed.Client, pd.DataFrame], tolerance: float
) -> None:
    client, pooled = fed3
    result = client.query(SQL, quantile_tolerance=tolerance)
    assert result.columns == ("g", "m", "q9", "d3", "k25", "n")
    assert len(result.jobs) > 1
    bounds = result.error_bounds
    assert bounds["d3"] == 0.0  # integers end exactly
    kept = pooled[pooled.k > -900_000_000_000]
    for g, m, q9, d3, k25, n in result.rows:
        sub = kept[kept.g == g]
        assert n == len(sub)
        if g == "empty":
            assert (m, q9, d3, k25) == (None, None, None, None)
            continue
        assert d3 == _exact(sub.k, Fraction(3, 10), True)
        assert isinstance(d3, int)
        exact_k25 = _exact(sub.k, Fraction(1, 4), False)
        assert exact_k25 is not None
        assert k25 == float(exact_k25)  # exact order statistics, rounded once
        for got, q, name in ((m, Fraction(1, 2), "m"), (q9, Fraction(9, 10), "q9")):
            exact = _exact(sub.x, q, False)
            assert exact is not None
            assert isinstance(got, float)
            assert (
                abs(Fraction(got) - exact)
                <= Fraction(bounds[name]) + Fraction(abs(float(exact))) * Fraction(2) ** -52
            )
            assert bounds[name] <= max(tolerance, 2**-52) * 1e7 * 1.01
    if tolerance == 0.0:
        assert bounds["m"] <= 2**-52 * 1e7


def test_quantiles_under_a_homomorphic_protocol(fed3: tuple[fed.Client, pd.DataFrame]) -> None:
    client, pooled = fed3
    result = client.query("SELECT MEDIAN(k) AS mk, COUNT(k) FROM t", protocol="ckks")
    exact = _exact(pooled.k, Fraction(1, 2), False)
    assert exact is not None
    assert result.rows == [(float(exact), len(pooled))]
    assert result.error_bounds == {"mk": 0.0}
    assert result.protocol == "ckks"


def test_quantile_errors_are_clear(fed3: tuple[fed.Client, pd.DataFrame]) -> None:
    client, _ = fed3
    with pytest.raises(fed.QueryError, match=r"\[0, 1\]"):
        client.query("SELECT QUANTILE_CONT(x, 2) FROM t")
    with pytest.raises(fed.QueryError, match="numeric"):
        client.query("SELECT MEDIAN(g) FROM t")
    with pytest.raises(fed.QueryError, match="select its group column"):
        client.query("SELECT MEDIAN(x) FROM t GROUP BY g")
    with pytest.raises(fed.QueryError, match="no column"):
        client.query("SELECT MEDIAN(nope) FROM t")


def test_min_and_max_only_on_public_columns_and_exact(
    fed3: tuple[fed.Client, pd.DataFrame],
) -> None:
    client, pooled = fed3
    result = client.query("SELECT g, MIN(p), MAX(p) AS top FROM t GROUP BY g")
    assert result.error_bounds == {"min(p)": 0.0, "top": 0.0}
    for g, low, high in result.rows:
        sub = pooled[pooled.g == g]
        if sub.empty:
            assert (low, high) == (None, None)
        else:
            assert (low, high) == (float(sub.p.min()), float(sub.p.max()))
    with pytest.raises(fed.PolicyViolationError, match="classified public"):
        client.query("SELECT MAX(x) FROM t")


def test_describe_quartiles_take_a_job_per_round() -> None:
    gen = np.random.default_rng(3)
    parts = []
    for n in (3000, 2500, 3500):
        frame = pd.DataFrame(
            {
                "a": gen.normal(50.0, 10.0, n),
                "b": gen.normal(-3.0, 0.01, n),
                "i": gen.integers(-1000, 1000, n, dtype=np.int64),
            }
        )
        frame.loc[frame.sample(frac=0.05, random_state=n).index, "a"] = None
        parts.append(frame)
    pooled = pd.concat(parts, ignore_index=True)
    with fed.simulate({"d": parts}) as client:
        summary = client.describe("d")
    # the summary job, then one job per refinement round (every column's quartiles at once)
    assert summary.jobs <= 5
    expected = pooled.describe()
    for label, q in (("25%", Fraction(1, 4)), ("50%", Fraction(1, 2)), ("75%", Fraction(3, 4))):
        for name in ("a", "b", "i"):
            exact = _exact(pooled[name], q, False)
            assert exact is not None
            got = summary.numeric.loc[label, name]
            bound = summary.quantile_errors[label][name]
            assert abs(Fraction(got) - exact) <= Fraction(bound) + abs(exact) * Fraction(2) ** -52
            assert bound <= 1e-9 * max(1.0, abs(float(exact))) * 2
            assert got == pytest.approx(expected.loc[label, name], rel=1e-9, abs=1e-9)
        assert summary.quantile_errors[label]["i"] == 0.0


def test_several_columns_share_each_rounds_job(fed3: tuple[fed.Client, pd.DataFrame]) -> None:
    client, pooled = fed3
    result = client.query(
        "SELECT MEDIAN(k) AS mk, QUANTILE_CONT(x, 0.9) AS x9, QUANTILE_DISC(p, 0.1) AS p1, "
        "COUNT(*) AS n FROM t",
        protocol="ckks",
    )
    assert result.protocol == "ckks"
    ((mk, x9, p1, n),) = result.rows
    assert n == len(pooled)
    assert mk == float(_exact(pooled.k, Fraction(1, 2), False))  # type: ignore[arg-type]
    assert result.error_bounds["mk"] == 0.0
    for got, exact, name in (
        (x9, _exact(pooled.x, Fraction(9, 10), False), "x9"),
        (p1, _exact(pooled.p, Fraction(1, 10), True), "p1"),
    ):
        assert exact is not None
        assert isinstance(got, float)
        slack = Fraction(result.error_bounds[name]) + abs(exact) * Fraction(2) ** -52
        assert abs(Fraction(got) - exact) <= slack
    # the base job, then one job per round for the three columns together
    assert len(result.jobs) <= 1 + 12
