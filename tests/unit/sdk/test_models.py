"""Linear regression and describe against exact rational references on the pooled rows.

The nodes run in-process (DuckDB per partition, vectors summed mod 2**64, finalized),
so these tests exercise the real SQL the SDK sends, without the network.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from federation.errors import DataError, QueryTypeError, UnknownColumnError, UnsupportedQueryError
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk.describe import describe
from federation.sdk.exact import SingularMatrixError, solve_exact
from federation.sdk.models import LinearRegressionResult, linear_regression
from federation.sdk.moments import Runner
from federation.table import ResultTable
from tests.reference import exact_mean, exact_ols, exact_var, significant_digits
from tests.unit.query.conftest import run_federated

Partition = dict[str, list[Any]]


def runner(
    schema: DatasetSchema, parts: Sequence[Partition], log: list[str] | None = None
) -> Runner:
    def run(sql: str) -> ResultTable:
        if log is not None:
            log.append(sql)
        return run_federated(sql, schema, parts)[0]

    return run


def _schema(**types: ColumnType) -> DatasetSchema:
    return DatasetSchema("t", tuple(Column(n, t) for n, t in types.items()))


def _split(data: dict[str, np.ndarray], pieces: int = 3) -> list[Partition]:
    n = len(next(iter(data.values())))
    cuts = np.linspace(0, n, pieces + 1).astype(int)
    return [
        {
            k: [None if isinstance(v, float) and np.isnan(v) else v for v in col[a:b].tolist()]
            for k, col in data.items()
        }
        for a, b in itertools.pairwise(cuts)
    ]


def _reference(data: dict[str, np.ndarray], y: str, x: list[str], intercept: bool = True):  # type: ignore[no-untyped-def]
    n = len(data[y])
    rows = [([1] if intercept else []) + [data[c][i].item() for c in x] for i in range(n)]
    return exact_ols(rows, [data[y][i].item() for i in range(n)])


def _assert_matches(
    fit: LinearRegressionResult,
    data: dict[str, np.ndarray],
    y: str,
    x: list[str],
    intercept: bool = True,
) -> None:
    beta, rss, inv = _reference(data, y, x, intercept)
    assert list(fit.exact_coefficients) == beta  # the exact pooled solution
    assert list(fit.coefficients) == [float(b) for b in beta]  # rounded once
    assert fit.rss == rss
    df = fit.n - len(beta)
    for se, d in zip(fit.std_errors, inv, strict=True):
        expected_se2 = rss / df * d
        assert significant_digits(se * se, expected_se2) > 14
    assert significant_digits(fit.residual_std**2, rss / df) > 14


# ----------------------------------------------------------------- ill-conditioned designs


def _collinear() -> dict[str, np.ndarray]:
    gen = np.random.default_rng(3)
    n = 300
    x1 = 1 + gen.random(n)  # in [1, 2): exact in the fixed point
    # x1 + ~1e-7 noise, rounded to multiples of 2**-52 (as every double >= 1 is)
    x2 = x1 + np.round(gen.standard_normal(n) * 1e-7 * 2**52) / 2**52
    x3 = x1 + np.round(gen.standard_normal(n) * 1e-7 * 2**52) / 2**52
    y = 3 + 2 * x1 - x2 + 100 * gen.standard_normal(n)
    return {"x1": x1, "x2": x2, "x3": x3, "y": y}


def _polynomial() -> dict[str, np.ndarray]:
    gen = np.random.default_rng(4)
    n = 120
    x = gen.integers(990, 1010, n)  # around 1e3, integer column: x**5 ~ 1e15 is exact
    data = {f"x{k}": x**k for k in range(1, 6)}
    data["y"] = (x - 1000) ** 3 + gen.integers(-50, 50, n)
    return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}


def _offset() -> dict[str, np.ndarray]:
    gen = np.random.default_rng(5)
    n = 200
    a = 1e9 + gen.integers(0, 2**20, n) / 2**10  # large offset, spread ~1e3
    b = 1e9 + gen.integers(0, 2**20, n) / 2**10
    y = 1e7 + 0.5 * (a - 1e9) - 0.25 * (b - 1e9) + 100 * gen.standard_normal(n)
    return {"a": a, "b": b, "y": y}


ILL = {
    "collinear": (_collinear, "y", ["x1", "x2", "x3"], ColumnType.DOUBLE),
    "polynomial": (_polynomial, "y", ["x1", "x2", "x3", "x4", "x5"], ColumnType.INTEGER),
    "offset": (_offset, "y", ["a", "b"], ColumnType.DOUBLE),
}


@pytest.mark.parametrize("case", sorted(ILL))
def test_ill_conditioned_designs_give_the_exact_pooled_fit(case: str) -> None:
    make, y, x, kind = ILL[case]
    data = make()
    schema = _schema(**dict.fromkeys(data, kind))
    fit = linear_regression(runner(schema, _split(data)), schema, y=y, x=x)
    _assert_matches(fit, data, y, x)
    beta = _reference(data, y, x)[0]
    # numpy on the *pooled* data misses 9 significant digits where we hit all of them.
    design = np.column_stack([np.ones(len(data[y]))] + [data[c].astype(float) for c in x])
    lstsq = np.linalg.lstsq(design, data[y].astype(float), rcond=None)[0]
    worst_numpy = min(significant_digits(float(v), b) for v, b in zip(lstsq, beta, strict=True))
    ours = min(significant_digits(v, b) for v, b in zip(fit.coefficients, beta, strict=True))
    assert worst_numpy < 9 <= ours
    assert ours >= 15


def test_intercept_false_fits_through_the_origin() -> None:
    data = _offset()
    schema = _schema(a=ColumnType.DOUBLE, b=ColumnType.DOUBLE, y=ColumnType.DOUBLE)
    fit = linear_regression(
        runner(schema, _split(data)), schema, y="y", x=["a", "b"], intercept=False
    )
    assert fit.terms == ("a", "b")
    _assert_matches(fit, data, "y", ["a", "b"], intercept=False)
    ys = [Fraction(v) for v in data["y"].tolist()]
    assert fit.tss == sum((v * v for v in ys), Fraction(0))  # uncentered R²


def test_categorical_predictors_are_one_hot_encoded_from_the_domain() -> None:
    gen = np.random.default_rng(6)
    n = 150
    g = gen.choice(["lo", "mid", "hi"], n)
    x = gen.integers(0, 100, n)
    y = 2.0 * x + np.where(g == "mid", 5.0, 0.0) + np.where(g == "hi", -3.0, 0.0) + gen.random(n)
    schema = DatasetSchema(
        "t",
        (
            Column("g", ColumnType.CATEGORICAL, domain=("lo", "mid", "hi", "never")),
            Column("x", ColumnType.INTEGER),
            Column("y", ColumnType.DOUBLE),
        ),
    )
    parts = _split({"g": g.astype(object), "x": x, "y": y})
    fit = linear_regression(runner(schema, parts), schema, y="y", x=["g", "x"])
    assert fit.terms == ("intercept", "g[mid]", "g[hi]", "x")
    assert fit.dropped_levels == ("g[never]",)
    rows = [[1, int(gv == "mid"), int(gv == "hi"), int(xv)] for gv, xv in zip(g, x, strict=True)]
    beta, rss, _ = exact_ols(rows, y.tolist())
    assert list(fit.exact_coefficients) == beta
    assert fit.rss == rss
    assert list(fit.coefficients.index) == list(fit.terms)
    text = str(fit)
    for piece in ("g[mid]", "R²", "no rows"):
        assert piece in text
    # without an intercept the first categorical keeps every observed level
    fit0 = linear_regression(runner(schema, parts), schema, y="y", x=["g", "x"], intercept=False)
    assert fit0.terms == ("g[lo]", "g[mid]", "g[hi]", "x")


def test_listwise_deletion_and_where() -> None:
    schema = _schema(x=ColumnType.DOUBLE, y=ColumnType.DOUBLE)
    parts: list[Partition] = [
        {"x": [1.0, 2.0, None, 4.0, 5.0], "y": [1.5, None, 3.0, 4.5, 7.0]},
        {"x": [6.0, 7.0, 8.0], "y": [6.5, 8.0, 100.0]},
    ]
    log: list[str] = []
    fit = linear_regression(runner(schema, parts, log), schema, y="y", x=["x"], where="x < 8")
    assert len(log) == 1  # one job
    pairs = [(1.0, 1.5), (4.0, 4.5), (5.0, 7.0), (6.0, 6.5), (7.0, 8.0)]
    beta, rss, _ = exact_ols([[1, a] for a, _ in pairs], [b for _, b in pairs])
    assert fit.n == 5
    assert list(fit.exact_coefficients) == beta
    assert fit.rss == rss


def test_statistics_of_a_simple_fit() -> None:
    schema = _schema(x=ColumnType.INTEGER, y=ColumnType.INTEGER)
    parts: list[Partition] = [{"x": [1, 2, 3], "y": [2, 4, 5]}, {"x": [4, 5], "y": [4, 6]}]
    fit = linear_regression(runner(schema, parts), schema, y="y", x=["x"])
    # y = 1.8 + 0.8 x, RSS = 2.4, TSS = 8.8, se(slope) = sqrt(2.4 / 3 / 10) (by hand)
    assert fit.exact_coefficients == (Fraction(9, 5), Fraction(4, 5))
    assert fit.rss == Fraction(12, 5)
    assert fit.r_squared == float(1 - Fraction(12, 5) / Fraction(44, 5))
    assert fit.df_resid == 3
    assert fit.std_errors["x"] == 0.08**0.5
    assert fit.t_values["x"] == pytest.approx(0.8 / 0.08**0.5, rel=1e-15)
    assert fit.residual_std == 0.8**0.5


# ----------------------------------------------------------------- errors


def test_singular_design_names_the_dependent_term() -> None:
    schema = _schema(a=ColumnType.INTEGER, b=ColumnType.INTEGER, y=ColumnType.DOUBLE)
    parts: list[Partition] = [{"a": [1, 2, 3, 4], "b": [2, 4, 6, 8], "y": [1.0, 2.0, 2.5, 4.0]}]
    with pytest.raises(DataError, match=r"term 'b' is an exact linear combination"):
        linear_regression(runner(schema, parts), schema, y="y", x=["a", "b"])


def test_fewer_rows_than_terms_is_an_error() -> None:
    schema = _schema(a=ColumnType.INTEGER, b=ColumnType.INTEGER, y=ColumnType.DOUBLE)
    parts: list[Partition] = [{"a": [1, 2], "b": [5, 1], "y": [1.0, 2.0]}]
    with pytest.raises(DataError, match="3 terms but only 2 complete rows"):
        linear_regression(runner(schema, parts), schema, y="y", x=["a", "b"])


def test_bad_arguments_are_refused_before_any_job() -> None:
    schema = DatasetSchema(
        "t",
        (
            Column("g", ColumnType.CATEGORICAL, domain=("a", "b")),
            Column("note", ColumnType.TEXT),
            Column("x", ColumnType.DOUBLE),
        ),
    )
    log: list[str] = []
    run = runner(schema, [{"x": [1.0]}], log)
    with pytest.raises(UnknownColumnError):
        linear_regression(run, schema, y="x", x=["nope"])
    with pytest.raises(UnknownColumnError):
        linear_regression(run, schema, y="nope", x=["x"])
    with pytest.raises(QueryTypeError, match="must be numeric"):
        linear_regression(run, schema, y="g", x=["x"])
    with pytest.raises(QueryTypeError, match="free text"):
        linear_regression(run, schema, y="x", x=["note"])
    with pytest.raises(UnsupportedQueryError, match="both the response and a predictor"):
        linear_regression(run, schema, y="x", x=["x"])
    with pytest.raises(UnsupportedQueryError, match="no terms"):
        linear_regression(run, schema, y="x", x=[], intercept=False)
    assert log == []


def test_solver_reports_singularity_and_solves_exactly() -> None:
    with pytest.raises(SingularMatrixError) as info:
        solve_exact([[1, 2, 3], [2, 4, 6], [0, 0, 1]], [[1], [2], [3]])
    assert info.value.column == 1
    a = [[Fraction(1, 3), 2], [5, Fraction(-7, 2)]]
    sol = solve_exact(a, [[1, 0], [0, 1]])
    for i in range(2):
        for j in range(2):
            assert sum(a[i][k] * sol[k][j] for k in range(2)) == int(i == j)


# ----------------------------------------------------------------- describe


def test_describe_matches_exact_statistics_in_one_job() -> None:
    schema = DatasetSchema(
        "t",
        (
            Column("x", ColumnType.DOUBLE),
            Column("i", ColumnType.INTEGER),
            Column("g", ColumnType.CATEGORICAL, domain=("a", "b", "c")),
            Column("note", ColumnType.TEXT),
        ),
    )
    parts: list[Partition] = [
        {
            "x": [1e7 + 0.5, None, 2.25],
            "i": [1, 2, None],
            "g": ["a", None, "b"],
            "note": ["p", "q", "r"],
        },
        {"x": [3.0, 1e-3], "i": [2**40, -5], "g": ["a", "a"], "note": ["s", "t"]},
    ]
    log: list[str] = []
    d = describe(runner(schema, parts, log), schema, quantiles=())
    assert len(log) == 1
    assert d.jobs == 1
    assert d.rows == 5
    xs = [v for p in parts for v in p["x"]]
    is_ = [v for p in parts for v in p["i"]]
    assert list(d.numeric.columns) == ["x", "i"]
    assert list(d.numeric.index) == ["count", "mean", "std"]
    for name, values in (("x", xs), ("i", is_)):
        col = d.numeric[name]
        assert col["count"] == 4
        mean, var = exact_mean(values), exact_var(values, 1)
        assert mean is not None
        assert var is not None
        assert significant_digits(col["mean"], mean) >= 12
        assert significant_digits(col["std"] ** 2, var) >= 12
    assert d.categorical["g"].to_dict() == {"a": 3, "b": 1, "c": 0, None: 1}
    assert "note" not in d.categorical
    assert "NULL: 1" in str(d)
    with pytest.raises(QueryTypeError):
        describe(runner(schema, parts), schema, columns=["note"])


def _order_statistic_quantile(values: Sequence[Any], q: Fraction) -> Fraction | None:
    """QUANTILE_CONT (pandas' and DuckDB's linear interpolation) of the pooled values,
    exactly."""
    data = sorted(Fraction(v) for v in values if v is not None)
    if not data:
        return None
    h = (len(data) - 1) * q
    low, high = int(h), -(-h.numerator // h.denominator)
    return data[low] + (h - low) * (data[high] - data[low])


def test_describe_reports_quartiles_within_their_error_bounds() -> None:
    schema = DatasetSchema(
        "t",
        (
            Column("x", ColumnType.DOUBLE),
            Column("i", ColumnType.INTEGER, bounds=(-(10**6), 10**6)),
            Column("e", ColumnType.DOUBLE, bounds=(0.0, 1.0)),
        ),
    )
    gen = np.random.default_rng(5)
    xs = (1e7 + 1e-3 * gen.standard_normal(40)).tolist()  # a large offset, tiny spread
    xs[:6] = [1e7] * 6  # ties
    is_ = gen.integers(-(10**6), 10**6, 40).tolist()
    parts: list[Partition] = [
        {"x": [*xs[:15], None], "i": [*is_[:15], 7], "e": [None] * 16},
        {"x": xs[15:], "i": is_[15:], "e": [None] * 25},
    ]
    log: list[str] = []
    d = describe(runner(schema, parts, log), schema, quantiles=(0.25, 0.5, 0.75, 0.1))
    assert list(d.numeric.index) == ["count", "mean", "std", "25%", "50%", "75%", "10%"]
    assert d.jobs == len(log) > 1
    assert d.jobs <= 8  # the summary, then one job per round for every column and quartile
    pooled = {name: [v for p in parts for v in p[name]] for name in ("x", "i", "e")}
    for label, q in (("25%", Fraction(1, 4)), ("50%", Fraction(1, 2)), ("75%", Fraction(3, 4))):
        for name in ("x", "i"):
            exact = _order_statistic_quantile(pooled[name], q)
            assert exact is not None
            bound = d.quantile_errors[label][name]
            assert abs(Fraction(d.numeric.loc[label, name]) - exact) <= Fraction(bound) + abs(
                exact
            ) * Fraction(2**-52), (label, name)
        assert bound <= 1e-9 * 1e7 * 2
        assert d.quantile_errors[label]["i"] == 0.0  # integer order statistics are exact
        assert np.isnan(d.numeric.loc[label, "e"])  # no values
        assert "e" not in d.quantile_errors[label]
    assert d.numeric.loc["50%", "i"] == float(
        _order_statistic_quantile(pooled["i"], Fraction(1, 2))
    )  # type: ignore[arg-type]
    with pytest.raises(UnsupportedQueryError, match="quantiles"):
        describe(runner(schema, parts), schema, quantiles=(1.5,))
