"""Independent reference computations on pooled data, in exact rational arithmetic.

Used by tests only: the federated answer must equal what these compute from the
pooled rows. Nothing here shares code with the library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def _vals(values: Iterable[object]) -> list[Fraction]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(Fraction(v))  # type: ignore[arg-type]
    return out


def exact_sum(values: Iterable[object]) -> Fraction | None:
    xs = _vals(values)
    return sum(xs, Fraction(0)) if xs else None


def exact_mean(values: Iterable[object]) -> Fraction | None:
    xs = _vals(values)
    return sum(xs, Fraction(0)) / len(xs) if xs else None


def exact_var(values: Iterable[object], ddof: int) -> Fraction | None:
    xs = _vals(values)
    if len(xs) <= ddof:
        return None
    mean = sum(xs, Fraction(0)) / len(xs)
    return sum(((x - mean) ** 2 for x in xs), Fraction(0)) / (len(xs) - ddof)


def close(
    actual: object, expected: Fraction | None, *, rel: float = 1e-12, abs_: float = 0.0
) -> bool:
    """True if ``actual`` agrees with the exact value to ``rel`` (or both are NULL)."""
    if expected is None:
        return actual is None
    if actual is None:
        return False
    err = abs(Fraction(actual) - expected)  # type: ignore[arg-type]
    return err <= Fraction(rel) * abs(expected) + Fraction(abs_)


def _pairs(ys: Iterable[object], xs: Iterable[object]) -> list[tuple[Fraction, Fraction]]:
    out = []
    for y, x in zip(ys, xs, strict=True):
        if y is None or x is None:
            continue
        out.append((Fraction(y), Fraction(x)))  # type: ignore[arg-type]
    return out


def exact_bivariate(func: str, ys: Iterable[object], xs: Iterable[object]) -> Fraction | None:
    """``func(y, x)`` over the pairs where both are non-NULL, from centred sums.

    For CORR the result is the *signed square* ``sign(r)·r²`` (r itself is irrational);
    the other functions give their exact value. NULL follows PostgreSQL.
    """
    pairs = _pairs(ys, xs)
    n = len(pairs)
    if n == 0:
        return None
    my = sum((y for y, _ in pairs), Fraction(0)) / n
    mx = sum((x for _, x in pairs), Fraction(0)) / n
    sxy = sum(((x - mx) * (y - my) for y, x in pairs), Fraction(0))
    sxx = sum(((x - mx) ** 2 for _, x in pairs), Fraction(0))
    syy = sum(((y - my) ** 2 for y, _ in pairs), Fraction(0))
    if func == "COVAR_POP":
        return sxy / n
    if func == "COVAR_SAMP":
        return sxy / (n - 1) if n >= 2 else None
    if func in ("REGR_SLOPE", "REGR_INTERCEPT", "REGR_R2") and sxx == 0:
        return None
    if func == "REGR_SLOPE":
        return sxy / sxx
    if func == "REGR_INTERCEPT":
        return my - sxy / sxx * mx
    if func == "REGR_R2":
        return Fraction(1) if syy == 0 else sxy * sxy / (sxx * syy)
    if func == "CORR":
        if sxx == 0 or syy == 0:
            return None
        r2 = sxy * sxy / (sxx * syy)
        return r2 if sxy >= 0 else -r2
    raise ValueError(func)


def signed_sqrt(value: Fraction) -> float:
    """``sign(v)·sqrt(|v|)`` rounded to a float via 60-digit decimal arithmetic."""
    from decimal import Context

    ctx = Context(prec=60)
    root = ctx.sqrt(ctx.divide(abs(value.numerator), value.denominator))
    return float(root) if value >= 0 else -float(root)


def exact_ols(
    rows: Iterable[Iterable[object]], ys: Iterable[object]
) -> tuple[list[Fraction], Fraction, list[Fraction]]:
    """Exact least squares on pooled rows (the design matrix, one list per row).

    Returns ``(coefficients, RSS, diagonal of (X'X)^-1)``, solving the normal
    equations by Gauss-Jordan elimination in rationals (independent of the library's
    fraction-free solver). Raises ZeroDivisionError on a singular design.
    """
    xs = [[Fraction(v) for v in row] for row in rows]  # type: ignore[arg-type]
    yv = [Fraction(v) for v in ys]  # type: ignore[arg-type]
    q = len(xs[0])
    xtx = [[sum((r[a] * r[b] for r in xs), Fraction(0)) for b in range(q)] for a in range(q)]
    xty = [sum((r[a] * y for r, y in zip(xs, yv, strict=True)), Fraction(0)) for a in range(q)]
    aug = [[*xtx[a], xty[a], *(Fraction(int(a == b)) for b in range(q))] for a in range(q)]
    for col in range(q):
        pivot = next(r for r in range(col, q) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        lead = aug[col][col]
        aug[col] = [v / lead for v in aug[col]]
        for r in range(q):
            if r != col and aug[r][col] != 0:
                factor = aug[r][col]
                aug[r] = [v - factor * p for v, p in zip(aug[r], aug[col], strict=True)]
    beta = [aug[a][q] for a in range(q)]
    fitted = [sum((b * v for b, v in zip(beta, r, strict=True)), Fraction(0)) for r in xs]
    rss = sum(((y - f) ** 2 for y, f in zip(yv, fitted, strict=True)), Fraction(0))
    return beta, rss, [aug[a][q + 1 + a] for a in range(q)]


def significant_digits(actual: float, expected: Fraction) -> float:
    """How many significant decimal digits ``actual`` shares with ``expected``."""
    if expected == 0:
        return math.inf if actual == 0 else 0.0
    err = abs(Fraction(actual) - expected) / abs(expected)
    return math.inf if err == 0 else -math.log10(float(err))


def logistic_mle(rows: list[list[float]], ys: list[int], *, digits: int = 50) -> list[Fraction]:
    """The pooled logistic maximum-likelihood fit by Newton's method in ``digits``-digit
    decimal arithmetic (every input double read exactly), iterated to a 1e-35 step."""
    from decimal import Context, Decimal

    ctx = Context(prec=digits)
    xs = [[Decimal(v) for v in row] for row in rows]
    q = len(xs[0])
    beta = [Decimal(0)] * q
    for _ in range(100):
        grad = [Decimal(0)] * q
        hess = [[Decimal(0)] * q for _ in range(q)]
        for row, y in zip(xs, ys, strict=True):
            eta = sum((ctx.multiply(b, v) for b, v in zip(beta, row, strict=True)), Decimal(0))
            p = ctx.divide(1, ctx.add(1, ctx.exp(ctx.minus(eta))))
            w = ctx.multiply(p, ctx.subtract(1, p))
            for a in range(q):
                grad[a] = ctx.add(grad[a], ctx.multiply(row[a], ctx.subtract(y, p)))
                for b in range(q):
                    hess[a][b] = ctx.add(hess[a][b], ctx.multiply(w, ctx.multiply(row[a], row[b])))
        # Gaussian elimination on [H | g] in decimal arithmetic
        aug = [[*hess[a], grad[a]] for a in range(q)]
        for col in range(q):
            pivot = max(range(col, q), key=lambda r: abs(aug[r][col]))
            aug[col], aug[pivot] = aug[pivot], aug[col]
            for r in range(q):
                if r != col:
                    f = ctx.divide(aug[r][col], aug[col][col])
                    aug[r] = [
                        ctx.subtract(v, ctx.multiply(f, p_))
                        for v, p_ in zip(aug[r], aug[col], strict=True)
                    ]
        step = [ctx.divide(aug[a][q], aug[a][a]) for a in range(q)]
        beta = [ctx.add(b, s) for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < Decimal("1e-35"):
            break
    return [Fraction(b) for b in beta]


def fixed_point_52(value: float) -> Fraction:
    """A double as the federation encodes it: ``round(x·2**52) / 2**52``, ties away from 0."""
    scaled = Fraction(value) * 2**52
    whole = math.floor(abs(scaled) + Fraction(1, 2))
    return Fraction(whole if scaled >= 0 else -whole, 2**52)


def exact_sum_of_products(
    rows: Iterable[tuple[object, object]], *, encode: bool = True
) -> Fraction | None:
    """``Σ a·b`` over the rows where both are present (NULL when there are none); a
    float operand is taken as encoded (:func:`fixed_point_52`) when ``encode``."""

    def value(v: object) -> Fraction:
        if isinstance(v, float) and encode:
            return fixed_point_52(v)
        return Fraction(v)  # type: ignore[arg-type]

    terms = [value(a) * value(b) for a, b in rows if a is not None and b is not None]
    return sum(terms, Fraction(0)) if terms else None
