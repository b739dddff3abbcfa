"""Logistic regression (Newton/IRLS over secure sums) against a 50-digit pooled MLE."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from federation.errors import DataError, QueryTypeError
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk.logistic import logistic_regression
from federation.table import ResultTable
from tests.reference import logistic_mle, significant_digits
from tests.unit.query.conftest import run_federated

SCHEMA = DatasetSchema(
    "t",
    (
        Column("x1", ColumnType.DOUBLE),
        Column("x2", ColumnType.DOUBLE),
        Column("y", ColumnType.INTEGER),
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b")),
    ),
)


def _parts(seed: int, sizes: tuple[int, ...] = (120, 80, 100)) -> list[dict[str, list[Any]]]:
    gen = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        x1 = 5 + gen.standard_normal(n)
        x2 = gen.standard_normal(n)
        p = 1 / (1 + np.exp(-(-2.0 + 0.4 * x1 - 0.7 * x2)))
        y = (gen.random(n) < p).astype(int)
        parts.append({"x1": x1.tolist(), "x2": x2.tolist(), "y": y.tolist()})
    return parts


def _run(parts: list[dict[str, list[Any]]], log: list[str] | None = None):  # type: ignore[no-untyped-def]
    def run(sql: str) -> ResultTable:
        if log is not None:
            log.append(sql)
        return run_federated(sql, SCHEMA, parts)[0]

    return run


def test_converges_to_the_pooled_maximum_likelihood_fit() -> None:
    parts = _parts(1)
    log: list[str] = []
    fit = logistic_regression(_run(parts, log), SCHEMA, y="y", x=["x1", "x2"])
    rows = [[1.0, a, b] for p in parts for a, b in zip(p["x1"], p["x2"], strict=True)]
    ys = [v for p in parts for v in p["y"]]
    expected = logistic_mle(rows, ys)
    assert fit.converged
    assert fit.iterations == len(log)  # one job per Newton round
    assert 3 <= fit.iterations <= 12
    assert fit.n == len(ys)
    for got, want in zip(fit.coefficients, expected, strict=True):
        assert significant_digits(got, want) >= 11
    assert list(fit.std_errors.index) == ["intercept", "x1", "x2"]
    assert all(s > 0 for s in fit.std_errors)
    assert "Newton rounds (converged)" in str(fit)


def test_without_intercept_and_with_where() -> None:
    parts = _parts(2)
    fit = logistic_regression(
        _run(parts), SCHEMA, y="y", x=["x1", "x2"], intercept=False, where="x2 > -1.5"
    )
    rows, ys = [], []
    for p in parts:
        for a, b, v in zip(p["x1"], p["x2"], p["y"], strict=True):
            if b > -1.5:
                rows.append([a, b])
                ys.append(v)
    expected = logistic_mle(rows, ys)
    assert fit.terms == ("x1", "x2")
    for got, want in zip(fit.coefficients, expected, strict=True):
        assert significant_digits(got, want) >= 11


def test_errors() -> None:
    parts = _parts(3)
    with pytest.raises(QueryTypeError, match="numeric"):
        logistic_regression(_run(parts), SCHEMA, y="g", x=["x1"])
    with pytest.raises(QueryTypeError, match="categorical"):
        logistic_regression(_run(parts), SCHEMA, y="y", x=["g"])
    not_binary = [{"x1": [1.0, 2.0, 3.0], "x2": [0.0, 1.0, 0.5], "y": [0, 2, 1]}]
    with pytest.raises(DataError, match="only 0 and 1"):
        logistic_regression(_run(not_binary), SCHEMA, y="y", x=["x1"])
    separated = [{"x1": [1.0, 2.0, 3.0, 4.0], "x2": [0.0] * 4, "y": [0, 0, 1, 1]}]
    with pytest.raises(DataError, match="did not converge"):
        logistic_regression(_run(separated), SCHEMA, y="y", x=["x1"], max_iterations=8)
    few = [{"x1": [1.0], "x2": [0.0], "y": [1]}]
    with pytest.raises(DataError, match="only 1 complete rows"):
        logistic_regression(_run(few), SCHEMA, y="y", x=["x1"])
