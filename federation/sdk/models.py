"""Regression models fitted on a federated dataset from exact secure aggregates.

Linear regression (:func:`linear_regression`) is one job: the nodes compute the exact
moments ``n``, ``X'X``, ``X'y``, ``y'y`` (:mod:`federation.sdk.moments`), secure
aggregation sums them, and the SDK solves the normal equations *exactly* in rational
arithmetic (:mod:`federation.sdk.exact`), then rounds each reported number once.

Accuracy: the result is the exact least-squares fit of the encoded data, correctly
rounded: coefficients, residual variance, R² exactly, standard errors and t statistics
as correctly rounded square roots of exact rationals. Values are encoded exactly when
they are integers (``|x| <= 2**62 - 1``) or doubles that are multiples of 2**-52
(every double with ``|x| >= 1``), so on such data the fit equals the pooled exact fit
to the last bit, whatever the conditioning (nearly collinear predictors, polynomial
terms, large offsets), where a float64 normal-equations solve or even a QR/SVD
``lstsq`` on the pooled data loses most digits. The limits: double values must satisfy
``|x| < 2**41`` (e.g. polynomial terms of ``x ≈ 1e3`` up to degree 4 as doubles; as
integer columns up to ``|x| <= 2**62 - 1``); doubles with bits below 2**-52 (tiny
values) are first rounded to that grid (at most 2**-53 absolute), and such a
perturbation is amplified by the design's condition number like any data error.
Polynomial and interaction terms are columns of the dataset (computed by the data
holders); categorical predictors are one-hot encoded from their declared domains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from federation.errors import DataError, QueryTypeError, UnsupportedQueryError
from federation.query.finalize import sqrt_ratio
from federation.schema import ColumnType, DatasetSchema
from federation.sdk.exact import SingularMatrixError, solve_exact
from federation.sdk.moments import Runner, Term, grouped_moments

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LinearRegressionResult", "linear_regression"]


def _sqrt(value: Fraction) -> float:
    """The correctly rounded square root of a non-negative rational."""
    return sqrt_ratio(value.numerator, value.denominator)


def _signed_sqrt_ratio(num: Fraction, den: Fraction) -> float:
    """``num / sqrt(den)`` correctly rounded (``den > 0``)."""
    root = _sqrt(num * num / den)
    return root if num >= 0 else -root


def _series(values: Sequence[float], names: Sequence[str], label: str) -> pd.Series:
    import pandas as pd

    return pd.Series(list(values), index=list(names), name=label, dtype="float64")


@dataclass(frozen=True)
class LinearRegressionResult:
    """An ordinary least-squares fit.

    Attributes:
        dependent: The response column.
        terms: The design's term names (``intercept`` first when fitted, then the
            predictors; a categorical predictor ``g`` as ``g[level]`` indicators).
        exact_coefficients: The exact rational least-squares solution.
        n: Rows used (those with every variable present).
        df_resid: Residual degrees of freedom ``n - len(terms)``.
        rss: Exact residual sum of squares.
        tss: Exact total sum of squares (centered with an intercept, else ``Σy²``).
        dropped_levels: Levels of categorical predictors that no row has (left out).
    """

    dependent: str
    terms: tuple[str, ...]
    exact_coefficients: tuple[Fraction, ...]
    exact_inverse_diagonal: tuple[Fraction, ...]
    n: int
    df_resid: int
    rss: Fraction
    tss: Fraction
    intercept: bool
    dropped_levels: tuple[str, ...] = ()

    @property
    def coefficients(self) -> pd.Series:
        """The coefficients, correctly rounded, indexed by term."""
        return _series([float(b) for b in self.exact_coefficients], self.terms, "coef")

    @property
    def sigma2(self) -> Fraction | None:
        """Exact residual variance ``RSS / (n - p)`` (None without residual df)."""
        return self.rss / self.df_resid if self.df_resid > 0 else None

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors ``sqrt(σ² (X'X)⁻¹_jj)``, correctly rounded (NaN if ``n = p``)."""
        s2 = self.sigma2
        values = [math.nan if s2 is None else _sqrt(s2 * d) for d in self.exact_inverse_diagonal]
        return _series(values, self.terms, "std_err")

    @property
    def t_values(self) -> pd.Series:
        """t statistics ``b_j / se_j`` (NaN when the standard error is 0 or undefined)."""
        s2 = self.sigma2
        values = []
        for b, d in zip(self.exact_coefficients, self.exact_inverse_diagonal, strict=True):
            values.append(math.nan if not s2 else _signed_sqrt_ratio(b, s2 * d))
        return _series(values, self.terms, "t")

    @property
    def residual_std(self) -> float:
        """Residual standard deviation ``sqrt(RSS / (n - p))`` (NaN if ``n = p``)."""
        s2 = self.sigma2
        return math.nan if s2 is None else _sqrt(s2)

    @property
    def r_squared(self) -> float:
        """``1 - RSS/TSS`` (uncentered without an intercept, as statsmodels does)."""
        return math.nan if self.tss == 0 else float(1 - self.rss / self.tss)

    @property
    def adj_r_squared(self) -> float:
        """R² adjusted for the number of terms."""
        if self.tss == 0 or self.df_resid <= 0:
            return math.nan
        centered = 1 if self.intercept else 0
        return float(1 - self.rss / self.tss * Fraction(self.n - centered, self.df_resid))

    def summary(self) -> pd.DataFrame:
        """The coefficient table: ``coef``, ``std_err``, ``t`` per term."""
        import pandas as pd

        return pd.DataFrame(
            {"coef": self.coefficients, "std_err": self.std_errors, "t": self.t_values}
        )

    def __str__(self) -> str:
        head = (
            f"OLS  {self.dependent} ~ {' + '.join(self.terms)}\n"
            f"n = {self.n}   R² = {self.r_squared:.6g}   adj. R² = {self.adj_r_squared:.6g}   "
            f"residual std = {self.residual_std:.6g} (df {self.df_resid})"
        )
        table = self.summary().to_string(float_format=lambda v: f"{v:.10g}")
        note = (
            f"\nno rows for (dropped): {', '.join(self.dropped_levels)}"
            if self.dropped_levels
            else ""
        )
        return f"{head}\n{table}{note}"


def _split_predictors(schema: DatasetSchema, x: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(x, str):
        x = [x]
    numeric, categorical = [], []
    for name in x:
        col = schema.column(name) if isinstance(name, str) else None
        if col is None:
            raise QueryTypeError(f"predictors must be column names, got {type(name).__name__}")
        if col.type is ColumnType.CATEGORICAL:
            categorical.append(col.name)
        elif col.is_numeric:
            numeric.append(col.name)
        else:
            raise QueryTypeError(
                f"predictor {col.name!r} is free text; predictors must be numeric or categorical"
            )
    return numeric, categorical


def _design_terms(
    schema: DatasetSchema,
    x: Sequence[str],
    categorical: list[str],
    level_count: dict[tuple[str, str], int],
    intercept: bool,
) -> tuple[list[Term], list[str]]:
    """Terms in the analyst's order; a categorical predictor's first observed level is
    the reference (with an intercept, or for every categorical predictor but the first)."""
    terms = [Term(None)] if intercept else []
    dropped: list[str] = []
    full_first = not intercept
    for name in [x] if isinstance(x, str) else x:
        col = schema.column(name)
        if col.name not in categorical:
            terms.append(Term(col.name))
            continue
        observed = [v for v in col.domain if level_count.get((col.name, v), 0) > 0]
        dropped += [f"{col.name}[{v}]" for v in col.domain if v not in observed]
        keep = observed if full_first else observed[1:]
        full_first = False
        terms += [Term(col.name, v) for v in keep]
    return terms, dropped


def linear_regression(
    run: Runner,
    schema: DatasetSchema,
    *,
    y: str,
    x: Sequence[str],
    where: str | None = None,
    intercept: bool = True,
) -> LinearRegressionResult:
    """Fit ``y ~ x`` by ordinary least squares over the rows where all are present.

    ``run`` executes one aggregate SQL query as a job (``Client.linear_regression``
    passes its protocol and timeout).

    Raises:
        UnknownColumnError: ``y`` or a predictor is not a column.
        QueryTypeError: ``y`` is not numeric, or a predictor is free text.
        UnsupportedQueryError: No predictor and no intercept, or a column named twice.
        DataError: Fewer rows than terms, or a singular design (names the term that
            is a linear combination of the preceding ones).
    """
    ycol = schema.column(y)
    if not ycol.is_numeric:
        hint = " (for a binary outcome use logistic_regression)" if ycol.domain else ""
        raise QueryTypeError(f"the response {ycol.name!r} must be numeric{hint}")
    numeric, categorical = _split_predictors(schema, x)
    if ycol.name in numeric or ycol.name in categorical:
        raise UnsupportedQueryError(f"{ycol.name!r} is both the response and a predictor")
    if not numeric and not categorical and not intercept:
        raise UnsupportedQueryError("the model has no terms: give predictors or an intercept")
    moments = grouped_moments(
        run, schema, numeric=[*numeric, ycol.name], categorical=categorical, where=where
    )
    counts = {
        (c.name, v): moments.level_count(k, v)
        for k, c in enumerate(moments.categorical)
        for v in c.domain
    }
    terms, dropped = _design_terms(schema, x, categorical, counts, intercept)
    q = len(terms)
    n = moments.n
    if n < q:
        raise DataError(
            f"the regression has {q} terms but only {n} complete rows; it needs at least "
            f"{q} rows (more for standard errors): add data or drop predictors"
        )
    cross = moments.cross([*terms, Term(ycol.name)])
    xtx = [row[:q] for row in cross[:q]]
    xty = [[row[q]] for row in cross[:q]]
    identity = [[Fraction(int(i == j)) for j in range(q)] for i in range(q)]
    try:
        solution = solve_exact(xtx, [xty[i] + identity[i] for i in range(q)])
    except SingularMatrixError as exc:
        bad = terms[exc.column].name
        before = ", ".join(t.name for t in terms[: exc.column]) or "nothing"
        raise DataError(
            f"the design is singular: term {bad!r} is an exact linear combination of the "
            f"preceding terms ({before}) on the {n} rows used; drop it or a collinear term"
        ) from None
    beta = [row[0] for row in solution]
    inverse_diagonal = [solution[j][1 + j] for j in range(q)]
    yy = cross[q][q]
    rss = yy - sum((b * v[0] for b, v in zip(beta, xty, strict=True)), Fraction(0))
    if intercept:
        sy = cross[0][q]  # the intercept term is first: Σ 1·y
        tss = yy - sy * sy / n
    else:
        tss = yy
    return LinearRegressionResult(
        dependent=ycol.name,
        terms=tuple(t.name for t in terms),
        exact_coefficients=tuple(beta),
        exact_inverse_diagonal=tuple(inverse_diagonal),
        n=n,
        df_resid=n - q,
        rss=rss,
        tss=tss,
        intercept=intercept,
        dropped_levels=tuple(dropped),
    )
