"""Logistic regression by Newton's method (IRLS), one secure aggregation per round.

Each round sends the current coefficients ``β`` as literals in SQL the nodes check:
with ``p = 1 / (1 + EXP(-(β0 + β1·x1 + ...)))`` evaluated per row in DOUBLE, the
gradient ``Σ x_j (y - p)`` and the Hessian ``Σ p(1-p) x_j x_k`` are ``SUM(expr)``
aggregates, summed exactly in fixed point (each released as an exact integer). The
SDK solves the Newton step exactly in rationals and stops when the step is below
``tol`` relative to the coefficients; the result is that last iterate plus its step.

Accuracy and limits: the fixed point of the iteration is where the aggregated gradient
vanishes, so the coefficients match the pooled maximum-likelihood fit up to the
per-row DOUBLE evaluation of ``p`` (relative error ~1e-16 per row) amplified by the
conditioning of the Hessian: about 12 or more significant digits on well-conditioned
designs, fewer on nearly separable or nearly collinear ones. Predictors are numeric
columns; ``y`` is a numeric 0/1 column (checked through ``Σy² = Σy``). Per-row values
must stay below 2**41 in magnitude. Every round reveals the gradient and Hessian at
the current coefficients, nothing per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from federation.encoding import DOUBLE_FRACTION_BITS
from federation.errors import DataError, QueryTypeError, UnsupportedQueryError
from federation.query.finalize import sqrt_ratio
from federation.schema import DatasetSchema
from federation.sdk.exact import SingularMatrixError, solve_exact
from federation.sdk.moments import Runner, quote_identifier

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LogisticRegressionResult", "logistic_regression"]

_SCALE = 1 << DOUBLE_FRACTION_BITS


@dataclass(frozen=True)
class LogisticRegressionResult:
    """A logistic regression fit (maximum likelihood).

    Attributes:
        dependent: The 0/1 response column.
        terms: ``intercept`` (when fitted) then the predictors.
        exact_coefficients: The final iterate plus its exact Newton step.
        exact_covariance_diagonal: ``(X'WX)⁻¹_jj`` at the last round.
        n: Rows used (every variable present).
        iterations: Newton rounds (jobs) run.
        converged: True when the last step was below the tolerance.
    """

    dependent: str
    terms: tuple[str, ...]
    exact_coefficients: tuple[Fraction, ...]
    exact_covariance_diagonal: tuple[Fraction, ...]
    n: int
    iterations: int
    converged: bool

    @property
    def coefficients(self) -> pd.Series:
        """The coefficients, indexed by term."""
        import pandas as pd

        values = [float(b) for b in self.exact_coefficients]
        return pd.Series(values, index=list(self.terms), name="coef", dtype="float64")

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors ``sqrt((X'WX)⁻¹_jj)``."""
        import pandas as pd

        values = [sqrt_ratio(d.numerator, d.denominator) for d in self.exact_covariance_diagonal]
        return pd.Series(values, index=list(self.terms), name="std_err", dtype="float64")

    @property
    def z_values(self) -> pd.Series:
        """Wald statistics ``b_j / se_j``."""
        return (self.coefficients / self.std_errors).rename("z")

    def summary(self) -> pd.DataFrame:
        """``coef``, ``std_err`` and ``z`` per term."""
        import pandas as pd

        return pd.DataFrame(
            {"coef": self.coefficients, "std_err": self.std_errors, "z": self.z_values}
        )

    def __str__(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        head = (
            f"Logit  {self.dependent} ~ {' + '.join(self.terms)}\n"
            f"n = {self.n}   {self.iterations} Newton rounds ({state})"
        )
        return f"{head}\n{self.summary().to_string(float_format=lambda v: f'{v:.10g}')}"


def _literal(value: float) -> str:
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


def logistic_regression(  # noqa: PLR0912, PLR0915 - one Newton loop with its checks
    run: Runner,
    schema: DatasetSchema,
    *,
    y: str,
    x: Sequence[str],
    where: str | None = None,
    intercept: bool = True,
    max_iterations: int = 25,
    tol: float = 1e-10,
) -> LogisticRegressionResult:
    """Fit ``P(y = 1) = 1 / (1 + exp(-(x'β)))`` by maximum likelihood.

    Raises:
        UnknownColumnError: A column does not exist.
        QueryTypeError: ``y`` or a predictor is not numeric.
        UnsupportedQueryError: No terms, or a column named twice.
        DataError: ``y`` is not 0/1, fewer rows than terms, a singular design, or no
            convergence within ``max_iterations`` (e.g. perfectly separated data).
    """
    ycol = schema.column(y)
    if not ycol.is_numeric:
        raise QueryTypeError(
            f"the response {ycol.name!r} must be a numeric 0/1 column, it is {ycol.type.value}"
        )
    names: list[str] = []
    for name in [x] if isinstance(x, str) else x:
        col = schema.column(name)
        if not col.is_numeric:
            raise QueryTypeError(
                f"predictor {col.name!r} is {col.type.value}; logistic_regression takes numeric "
                "predictors (encode categories as 0/1 columns)"
            )
        if col.name in names or col.name == ycol.name:
            raise UnsupportedQueryError(f"column {col.name!r} is named twice in the model")
        names.append(col.name)
    terms = (["intercept"] if intercept else []) + names
    q = len(terms)
    if q == 0:
        raise UnsupportedQueryError("the model has no terms: give predictors or an intercept")
    quoted = [quote_identifier(c) for c in names]
    yq = quote_identifier(ycol.name)
    conditions = [f"{c} IS NOT NULL" for c in (*quoted, yq)]
    if where is not None:
        conditions.append(f"({where})")
    tail = f" FROM {quote_identifier(schema.name)} WHERE {' AND '.join(conditions)}"
    factors = (["1"] if intercept else []) + quoted
    beta: list[Fraction] = [Fraction(0)] * q
    n = 0
    inverse: list[list[Fraction]] = []
    for iteration in range(1, max_iterations + 1):
        floats = [float(b) for b in beta]
        eta = " + ".join(
            (f"{_literal(b)} * {f}" if f != "1" else _literal(b))
            for b, f in zip(floats, factors, strict=True)
        )
        p = f"(1 / (1 + EXP(-({eta}))))"
        items = ['COUNT(*) AS "l__n"', f'{_SCALE} * SUM({yq}) AS "l__y"']
        items.append(f'{_SCALE * _SCALE} * SUM({yq} * {yq}) AS "l__yy"')
        for j, f in enumerate(factors):
            items.append(f'{_SCALE} * SUM({f} * ({yq} - {p})) AS "l__g{j}"')
        for j, fj in enumerate(factors):
            for k in range(j, q):
                items.append(
                    f'{_SCALE} * SUM({fj} * {factors[k]} * {p} * (1 - {p})) AS "l__h{j}_{k}"'
                )
        row = run(f"SELECT {', '.join(items)}{tail}").rows[0]
        values = [0 if v is None else int(v) for v in row]
        n = values[0]
        if iteration == 1:
            sy, syy = Fraction(values[1], _SCALE), Fraction(values[2], _SCALE * _SCALE)
            if syy != sy or not 0 <= sy <= n:
                raise DataError(
                    f"the response {ycol.name!r} must hold only 0 and 1 on the rows used"
                )
            if n < q:
                raise DataError(
                    f"the model has {q} terms but only {n} complete rows; it needs more rows"
                )
        gradient = [Fraction(v, _SCALE) for v in values[3 : 3 + q]]
        hessian = [[Fraction(0)] * q for _ in range(q)]
        pos = 3 + q
        for j in range(q):
            for k in range(j, q):
                hessian[j][k] = hessian[k][j] = Fraction(values[pos], _SCALE)
                pos += 1
        identity = [[Fraction(int(i == j)) for j in range(q)] for i in range(q)]
        try:
            solution = solve_exact(hessian, [[gradient[i], *identity[i]] for i in range(q)])
        except SingularMatrixError as exc:
            raise DataError(
                f"the design is singular: term {terms[exc.column]!r} is a linear combination of "
                "the preceding terms (or every fitted probability is 0 or 1)"
            ) from None
        step = [row_[0] for row_ in solution]
        inverse = [row_[1:] for row_ in solution]
        current = [Fraction(b) for b in floats]
        beta = [b + s for b, s in zip(current, step, strict=True)]
        size = max(
            (abs(float(s)) / max(abs(float(b)), 1.0) for s, b in zip(step, beta, strict=True)),
            default=0.0,
        )
        if not math.isfinite(size):
            break
        if size <= tol:
            return LogisticRegressionResult(
                dependent=ycol.name,
                terms=tuple(terms),
                exact_coefficients=tuple(beta),
                exact_covariance_diagonal=tuple(inverse[j][j] for j in range(q)),
                n=n,
                iterations=iteration,
                converged=True,
            )
    raise DataError(
        f"logistic regression did not converge in {max_iterations} Newton rounds; the data "
        "may be perfectly separated (a predictor determines y) or the design ill-posed"
    )
